"""A reduction program that reports what the container contract gives it, for tests.

It reads the manifest, verifies every input's checksum, tries to write where the contract
says it must not, and writes its findings as ``science/probe.json`` under
``WORKFLOW_OUTPUT_DIR`` (plus a log line), exiting 0. Standard library only: it runs under
the system Python inside a minimal sandbox.
"""

import errno
import hashlib
import json
import os
from pathlib import Path


def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


manifest_path = Path(os.environ["WORKFLOW_MANIFEST"])
manifest = json.loads(manifest_path.read_text())
files = [f for p in manifest["inputs"]["raw_data_packages"] for f in p["files"]]
first = Path(files[0]["path"])
out = Path(os.environ["WORKFLOW_OUTPUT_DIR"])
report = {
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "root": sorted(os.listdir("/")),
    "workflow": sorted(os.listdir("/workflow")),
    "checksums_ok": all(
        "sha256:" + hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest() == f["checksum"]
        for f in files),
    "create_in_input": attempt(lambda: (first.parent / "new.dat").write_text("x")),
    "modify_input": attempt(lambda: open(first, "ab").close()),
    "create_in_config": attempt(lambda: (manifest_path.parent / "new.json").write_text("x")),
    "modify_manifest": attempt(lambda: open(manifest_path, "ab").close()),
    "write_logs": attempt(lambda: Path(manifest["logs_dir"], "program.log").write_text("ok\n")),
}
(out / "science").mkdir(parents=True, exist_ok=True)
(out / "science" / "probe.json").write_text(json.dumps(report, indent=1))
