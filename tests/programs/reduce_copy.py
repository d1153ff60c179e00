"""A tiny reduction program honoring the container contract, for tests.

It reads the manifest, writes one science file per input (raw file or upstream product)
holding a line count and the input's checksum, a sidecar with a quality metric, and a log.
Parameters: ``fail`` (exit with that code), ``write_nothing``, ``partial`` (write then fail),
``fail_sub_group`` (exit 3 for that one sub-group only: a failing member of a batch),
``log_with_products`` (also write a log to ``$WORKFLOW_OUTPUT_DIR/logs/``, as the CHAI
programs do), ``plots`` (file name -> side in pixels: a gradient PNG of that size in
``$WORKFLOW_OUTPUT_DIR/plots/``, written with zlib alone as a program without Pillow would).
"""

import json
import os
import struct
import sys
import zlib
from pathlib import Path


def gradient_png(side: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(v for x in range(side)
                                     for v in (x * 255 // side, y * 255 // side, 128))
                    for y in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


manifest = json.loads(Path(os.environ["WORKFLOW_MANIFEST"]).read_text())
out = Path(os.environ["WORKFLOW_OUTPUT_DIR"])
params = manifest["parameters"]
if params.get("fail_sub_group") == os.environ["WORKFLOW_SUB_GROUP_KEY"]:
    print(f"failing sub-group {params['fail_sub_group']} on request", file=sys.stderr)
    sys.exit(3)
if params.get("write_nothing"):
    sys.exit(0)
(out / "science").mkdir(parents=True, exist_ok=True)
inputs = [f for p in manifest["inputs"]["raw_data_packages"] for f in p["files"]]
inputs += manifest["inputs"]["products"]
if not inputs:
    print("no inputs in the manifest", file=sys.stderr)
    sys.exit(2)
for i, item in enumerate(inputs):
    data = Path(item["path"]).read_bytes()
    target = out / "science" / f"out-{i:04d}.txt"
    target.write_text(f"{len(data)} {item['checksum']} {params.get('tag', '')}\n")
    sidecar = {"metadata": {"source_path": item["relative_path"]},
               "quality_metrics": {"n_bytes": len(data)}}
    Path(str(target) + ".meta.json").write_text(json.dumps(sidecar))
for name, side in params.get("plots", {}).items():
    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "plots" / name).write_bytes(gradient_png(int(side)))
Path(manifest["logs_dir"], "program.log").write_text(f"processed {len(inputs)} inputs\n")
if params.get("log_with_products"):
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "logs" / "reduce-copy.log").write_text(f"read {len(inputs)} inputs\n")
print(f"step {os.environ['WORKFLOW_STEP']} sub-group {os.environ['WORKFLOW_SUB_GROUP_KEY']}")
if params.get("partial") or params.get("fail"):
    sys.exit(int(params.get("fail", 1)))
