"""What every step run does before any work, whoever launched it (sensor, schedule, UI,
GraphQL, ``dagster asset materialize``, a backfill).

* Its sub-group keys must be current sub-groups of the step's grain. A run for any other key
  fails here, naming the key and how to list the valid ones: nothing is staged or submitted.
* Its keys must be Dagster partitions. A run launched for a key Dagster does not know yet
  (GraphQL ``launchRun`` accepts one) would otherwise do all the work and then fail on
  recording it ("Nonexistent partition keys"), so the key is registered first.
* The tags that change what the run does are read here: ``ccat/force=true`` reruns a pair
  already COMPLETED for its current inputs; the retry chain tells which queued-run
  placeholders in the ops-db are this run's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
from sqlalchemy.orm import Session

from ccat_assets.automation.inputs import load_step
from ccat_assets.dagster_face.catalog import PipelineDef, StepDef
from ccat_assets.dagster_face.retry_tags import PARENT_RUN_ID_TAG, ROOT_RUN_ID_TAG
from ccat_assets.grouping import resolve_subgroups
from ccat_assets.opsdb.retired import restore

#: Run tag that reruns pairs already COMPLETED for their current inputs.
FORCE_TAG = "ccat/force"
_RETRY_TAGS = (PARENT_RUN_ID_TAG, ROOT_RUN_ID_TAG)


def forced(tags: Mapping[str, str]) -> bool:
    return tags.get(FORCE_TAG, "").strip().lower() == "true"


def trigger_reason(run: dg.DagsterRun) -> str:
    """Why the run was launched: a gap sensor or schedule says (``ccat/reason``), else a
    backfill or a person."""
    if run.tags.get("ccat/reason"):
        return run.tags["ccat/reason"]
    return "backfill" if run.tags.get("dagster/backfill") else "manual"


def launched_by_automation(run: dg.DagsterRun) -> bool:
    """A gap sensor or schedule launched the run (it says why): what it leaves undone for
    a reason that is no failure, automation launches again."""
    return bool(run.tags.get("ccat/reason"))


def retry_chain(run: dg.DagsterRun) -> list[str]:
    """The runs this one retries (parent and root): a placeholder written when one of them
    was queued belongs to this run now."""
    return [run.tags[tag] for tag in _RETRY_TAGS if run.tags.get(tag)]


def unknown_keys(session: Session, pipeline: PipelineDef, step: StepDef,
                 keys: Sequence[str]) -> list[str]:
    """The keys of ``keys`` that are not current sub-groups of ``step``'s grain."""
    row = load_step(session, pipeline.name, step.name)
    grouping = row.pipeline.data_grouping
    found = {sg.key for sg in resolve_subgroups(
        session, filter_rules=grouping.filter_rules, group_by=list(step.group_by),
        instrument_module_id=grouping.instrument_module_id, keys=list(keys))}
    return [key for key in keys if key not in found]


def unknown_keys_message(pipeline: PipelineDef, step: StepDef, unknown: Sequence[str]) -> str:
    shown = ", ".join(repr(k) for k in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    group_by = ",".join(step.group_by)
    listing = (f"ccat-wm grouping preview {pipeline.grouping} --group-by {group_by}"
               if group_by else f"ccat-wm grouping preview {pipeline.grouping}")
    return (f"{pipeline.name}/{step.name}: {shown}{more} is not a current sub-group of "
            f"grouping {pipeline.grouping!r} at grain {step.grain}; nothing was staged or "
            f"submitted. List the valid keys with `{listing}`.")


def require_partitions(context: dg.OpExecutionContext | dg.AssetExecutionContext,
                       session: Session, pipeline: PipelineDef, step: StepDef,
                       keys: Sequence[str]) -> None:
    """Fail unless every key is a current sub-group; register those Dagster lacks and
    forget their retirement."""
    if not step.partitioned:
        return
    unknown = unknown_keys(session, pipeline, step, keys)
    if unknown:
        raise dg.Failure(description=unknown_keys_message(pipeline, step, unknown),
                         metadata={"unknown sub-groups": dg.MetadataValue.json(list(unknown))})
    wanted = list(dict.fromkeys(keys))
    # a run of a retired sub-group brings it back (docs/scale.md): a partition again
    restore(session, step.partitions_name, wanted)
    if len(wanted) > 1:
        # A batch: Dagster adds only the keys it lacks, with one look-up for all of them
        # (a look-up per key costs a database connection each; listing a grain's
        # partitions costs seconds at 100k scans).
        context.instance.add_dynamic_partitions(step.partitions_name, wanted)
        return
    missing = [key for key in wanted
               if not context.instance.has_dynamic_partition(step.partitions_name, key)]
    if missing:
        context.instance.add_dynamic_partitions(step.partitions_name, missing)
        context.log.info(f"registered {len(missing)} sub-group(s) as partitions of "
                         f"{step.partitions_name}: {', '.join(missing[:5])}")
