"""A reduction program that misbehaves on request, for the reliability tests.

It honours the container contract (manifest, ``WORKFLOW_OUTPUT_DIR``, ``WORKFLOW_LOGS_DIR``)
and takes its behaviour from the manifest's parameters:

``sleep_s``        sleep first (a window in which the job is RUNNING)
``n_files``        how many science files to write (default 1)
``fill_bytes``     also write a file of that size (to run out of space)
``write_nothing``  write no output at all
``exit_code``      exit with this code after writing (default 0)
``sidecars_hex``   sidecar contents (hex of any bytes), one per science file, in order
``names_hex``      extra science files named by these bytes (hex), e.g. not UTF-8

It always writes ``logs/program.log`` first, and ``science/echo.json`` holding the parameters
and every ``HOSTILE*`` environment variable exactly as it received them.
"""

import json
import os
import sys
import time
from pathlib import Path

manifest = json.loads(Path(os.environ["WORKFLOW_MANIFEST"]).read_text())
params = manifest["parameters"]
out = Path(os.environ["WORKFLOW_OUTPUT_DIR"])
Path(os.environ["WORKFLOW_LOGS_DIR"], "program.log").write_text(
    f"started with {len(params)} parameters\n")
print("fault program started", flush=True)
time.sleep(float(params.get("sleep_s", 0)))
exit_code = int(params.get("exit_code", 0))
if params.get("write_nothing"):
    sys.exit(exit_code)
science = out / "science"
science.mkdir(parents=True, exist_ok=True)
(science / "echo.json").write_text(json.dumps({
    "parameters": params,
    "env": {k: v for k, v in os.environ.items() if k.startswith("HOSTILE")},
}))
sidecars = [bytes.fromhex(h) for h in params.get("sidecars_hex", [])]
for i in range(max(int(params.get("n_files", 1)), len(sidecars))):
    (science / f"part-{i:05d}.txt").write_text(f"{i}\n")
    if i < len(sidecars):
        (science / f"part-{i:05d}.txt.meta.json").write_bytes(sidecars[i])
for name in params.get("names_hex", []):
    with open(os.path.join(bytes(science), bytes.fromhex(name)), "wb") as handle:
        handle.write(b"odd name\n")
if params.get("fill_bytes"):
    with open(science / "big.bin", "wb") as handle:
        for _ in range(0, int(params["fill_bytes"]), 1 << 16):
            handle.write(b"\0" * (1 << 16))
sys.exit(exit_code)
