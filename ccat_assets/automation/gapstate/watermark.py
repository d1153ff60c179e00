"""A cheap fingerprint of everything a pipeline's gap state depends on.

Reloading a pipeline's state resolves its grouping and reads all its runs: work that grows
with the data. Most sensor ticks change nothing, so a tick first reads this watermark (a few
indexed lookups whose cost does not grow with history) and reloads only when it moved:

- raw packages: newest ``updated_at`` and highest id (new and changed packages);
- runs: highest run id (new runs) and the id and status of every in-flight run (a run only
  changes status while in flight; FAILED -> PENDING makes it in flight again);
- definitions: the pipeline's spec hash and the update times of its steps, grouping and the
  versions of its software (a new latest version, a new pin, a new config).

What it cannot see (a deleted package, edited observation metadata) is picked up by the
periodic full reload of :class:`ccat_assets.automation.gapstate.StateCache`.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ccat_assets.opsdb import (
    IN_FLIGHT_STATUSES,
    DataGrouping,
    ExecutedReductionStep,
    Pipeline,
    RawDataPackage,
    ReductionSoftwareVersion,
    ReductionStep,
)


@dataclass(frozen=True)
class Watermark:
    packages: tuple[object, ...]
    runs: tuple[object, ...]
    definitions: tuple[object, ...]


def read_watermark(session: Session, pipeline_id: int) -> Watermark:
    packages = session.execute(
        sa.select(sa.func.max(RawDataPackage.updated_at), sa.func.max(RawDataPackage.id))
    ).one()
    ers = ExecutedReductionStep
    newest_run = session.scalar(sa.select(sa.func.max(ers.id)))
    in_flight = session.execute(
        sa.select(ers.id, ers.status).where(ers.status.in_(sorted(IN_FLIGHT_STATUSES)))
        .order_by(ers.id)
    ).all()
    steps = sa.select(ReductionStep.reduction_software_id).where(
        ReductionStep.pipeline_id == pipeline_id)
    definitions = session.execute(
        sa.select(
            Pipeline.spec_hash, Pipeline.enabled, Pipeline.updated_at, DataGrouping.updated_at,
            sa.select(sa.func.max(ReductionStep.updated_at))
            .where(ReductionStep.pipeline_id == pipeline_id).scalar_subquery(),
            sa.select(sa.func.max(ReductionSoftwareVersion.updated_at))
            .where(ReductionSoftwareVersion.reduction_software_id.in_(steps)).scalar_subquery(),
        )
        .join(DataGrouping, DataGrouping.id == Pipeline.data_grouping_id)
        .where(Pipeline.id == pipeline_id)
    ).one_or_none()
    return Watermark(packages=tuple(packages), runs=(newest_run, tuple(in_flight)),
                     definitions=tuple(definitions or ()))
