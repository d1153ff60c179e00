"""A reduction program that talks and then fails on request, for the run-log tests.

Parameters (from the manifest): ``stdout_lines`` lines ``chatty says <i>`` printed (and
flushed) first; then it waits until ``release_file`` exists (so a test can look at the run's
log while the job is still running); then ``stderr_lines`` lines ``chatty error <i>`` on
stderr; then it exits with ``exit_code`` (default 0; with 0 it writes one science file),
or with 3 when its sub-group is ``fail_sub_group`` (one failing member of a batch).
"""

import json
import os
import sys
import time
from pathlib import Path

manifest = json.loads(Path(os.environ["WORKFLOW_MANIFEST"]).read_text())
params = manifest["parameters"]
key = os.environ["WORKFLOW_SUB_GROUP_KEY"]
for i in range(int(params.get("stdout_lines", 0))):
    print(f"chatty says {i} ({key})", flush=True)
release = params.get("release_file")
deadline = time.monotonic() + 300
while release and not Path(release).exists() and time.monotonic() < deadline:
    time.sleep(0.1)
failing = params.get("fail_sub_group") in (None, key)
for i in range(int(params.get("stderr_lines", 0)) if failing else 0):
    print(f"chatty error {i} ({key})", file=sys.stderr, flush=True)
exit_code = int(params.get("exit_code", 0))
if params.get("fail_sub_group") == key:
    exit_code = 3
if exit_code == 0:
    science = Path(os.environ["WORKFLOW_OUTPUT_DIR"]) / "science"
    science.mkdir(parents=True, exist_ok=True)
    (science / "said.txt").write_text("done\n")
sys.exit(exit_code)
