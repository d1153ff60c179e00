"""A reduction program written for the CCAT seed contract, for tests: it never reads the
manifest, only the seed's paths and environment variables.

* Without ``UPSTREAM_STEP`` (a first step) it writes ``calibrated.dat`` to
  ``$WORKFLOW_OUTPUT_DIR``: the step, the sub-group and the sha256 of every raw file it
  finds below ``/workflow/input``.
* With ``UPSTREAM_STEP`` (set in the step config's ``environment``, as a seed program is
  told its upstream) it reads ``/workflow/workspace/$UPSTREAM_STEP/`` the way a seed program
  does, tries to change it, and writes what it found as ``science/seen.json`` to
  ``$WORKFLOW_OUTPUT_DIR``. It exits 2 when the folder is missing or holds no file.

Standard library only: it runs under the system Python inside a minimal sandbox.
"""

import errno
import hashlib
import json
import os
import sys
from pathlib import Path


def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


out = Path(os.environ["WORKFLOW_OUTPUT_DIR"])
step, key = os.environ["WORKFLOW_STEP"], os.environ["WORKFLOW_SUB_GROUP_KEY"]
upstream = os.environ.get("UPSTREAM_STEP")
if not upstream:
    raw = sorted(p for p in Path("/workflow/input").rglob("*") if p.is_file()
                 and "products" not in p.parts)
    lines = [f"{step} {key}"] + [hashlib.sha256(p.read_bytes()).hexdigest() for p in raw]
    (out / "calibrated.dat").write_text("\n".join(lines) + "\n")
    sys.exit(0)

folder = Path("/workflow/workspace") / upstream
if not folder.is_dir():
    print(f"{folder} does not exist", file=sys.stderr)
    sys.exit(2)
files = sorted(p for p in folder.rglob("*") if p.is_file())
if not files:
    print(f"{folder} holds no file", file=sys.stderr)
    sys.exit(2)
first = files[0]
seen = {
    "cwd": os.getcwd(),
    "files": {p.relative_to(folder).as_posix(): p.read_text() for p in files},
    "create_in_upstream": attempt(lambda: (folder / "new.dat").write_text("x")),
    "modify_upstream": attempt(lambda: open(first, "ab").close()),
    "remove_upstream": attempt(lambda: first.unlink()),
    "write_own_workspace": attempt(lambda: Path("scratch.tmp").write_text("x")),
}
(out / "science").mkdir(parents=True, exist_ok=True)
(out / "science" / "seen.json").write_text(json.dumps(seen, indent=1))
Path("scratch.tmp").unlink(missing_ok=True)
