"""The ops-db side of gap evaluation: load a pipeline's state in a few set-based queries.

``load`` builds a :class:`ccat_assets.automation.gaps.PipelineState` for a whole pipeline (each
grain resolved once, the runs of all its steps in three grouped queries, see ``runs``);
``watermark`` tells cheaply whether anything that state depends on may have changed, so a
sensor in steady state does not reload it; ``cache`` keeps the last state per pipeline and
re-reads only the parts that changed.
"""

from ccat_assets.automation.gapstate.cache import StateCache
from ccat_assets.automation.gapstate.load import (
    PipelineInfo,
    load_pipeline_info,
    load_pipeline_state,
)
from ccat_assets.automation.gapstate.watermark import Watermark, read_watermark

__all__ = [
    "PipelineInfo",
    "StateCache",
    "Watermark",
    "load_pipeline_info",
    "load_pipeline_state",
    "read_watermark",
]
