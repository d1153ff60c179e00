"""A tiny reduction program for the overhead benchmark, honouring the container contract.

It stands for a step whose real work takes ``parameters.sleep_s`` seconds (default 0.2): it
reads the manifest, sleeps, and writes one SCIENCE product per raw input file (so a final step
is valid) plus a log, so that what the benchmark times beside the program is orchestration.
"""

import json
import os
import time
from pathlib import Path

manifest = json.loads(Path(os.environ["WORKFLOW_MANIFEST"]).read_text())
time.sleep(float(manifest["parameters"].get("sleep_s", 0.2)))
science = Path(os.environ["WORKFLOW_OUTPUT_DIR"]) / "science"
science.mkdir(parents=True, exist_ok=True)
files = [f for p in manifest["inputs"]["raw_data_packages"] for f in p["files"]]
for i, item in enumerate(files):
    (science / f"reduced-{i:03d}.txt").write_text(f"{item['checksum']} {item['size_bytes']}\n")
Path(manifest["logs_dir"], "program.log").write_text(f"reduced {len(files)} files\n")
