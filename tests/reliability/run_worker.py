"""A stand-in run worker: ``python tests/reliability/run_worker.py PIPELINE STEP KEY``.

It runs one ``execute_partition`` on the local backend with the settings of its environment,
exactly as an asset's run worker would, so that a test can kill it with SIGKILL at any point.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ccat_assets.execution.execute import PollPolicy, execute_partition  # noqa: E402
from tests.reliability.conftest import local_services  # noqa: E402


def main() -> None:
    pipeline, step, key = sys.argv[1:4]
    outcome = execute_partition(
        local_services(log=lambda line: print(line, flush=True),
                       poll=PollPolicy(min_s=0.05, max_s=0.2)),
        pipeline_name=pipeline, step_name=step, sub_group_key=key,
        dagster_run_id="worker-1")
    print(json.dumps({"run_id": outcome.run_id, "products": len(outcome.products)}))


if __name__ == "__main__":
    main()
