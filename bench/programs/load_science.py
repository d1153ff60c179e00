"""The reduction program of the load benchmark, honouring the container contract.

``load_science.py PIPELINE/STEP``: the argument only names the step, so that the benchmark can
count the jobs executing per step from the process table. It reads the manifest, sleeps
between ``parameters.sleep_min_s`` and ``parameters.sleep_max_s`` (chosen from a hash of the
sub-group key: the same work every time the benchmark runs) and writes one product into
``$WORKFLOW_OUTPUT_DIR/science`` naming its inputs (SCIENCE for a final step, INTERMEDIATE
otherwise) and a log.
"""

import hashlib
import json
import os
import time
from pathlib import Path

manifest = json.loads(Path(os.environ["WORKFLOW_MANIFEST"]).read_text())
params = manifest["parameters"]
low, high = float(params.get("sleep_min_s", 0.05)), float(params.get("sleep_max_s", 0.2))
key = os.environ["WORKFLOW_SUB_GROUP_KEY"]
fraction = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
time.sleep(low + (high - low) * fraction)
packages = manifest["inputs"]["raw_data_packages"]
science = Path(os.environ["WORKFLOW_OUTPUT_DIR"]) / "science"
science.mkdir(parents=True, exist_ok=True)
(science / "result.txt").write_text(f"{key}: {len(packages)} raw packages\n")
Path(manifest["logs_dir"], "program.log").write_text(f"reduced {len(packages)} packages\n")
