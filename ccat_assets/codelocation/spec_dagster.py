"""The last gate of spec validation: would Dagster load these pipelines?

``spec.py`` checks the rules we know (fields, references, Dagster's cron and name rules); this
builds each pipeline's definitions in memory with the very code the code location loads them
with (:func:`ccat_assets.codelocation.location.assemble`) and reports whatever Dagster refuses as a
problem of that pipeline, at the field it comes from where that is known. So a rule we do not check
explicitly, today's or a future Dagster's, stops ``ccat-wm validate`` and ``apply`` instead
of leaving the pipeline out at load.

It runs on a spec set that passed every other check: building a half-valid pipeline would
only repeat problems already reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ccat_assets.codelocation.location import assemble
from ccat_assets.dagster_face.catalog import PipelineDef, pipeline_def_from_spec
from ccat_assets.settings import get_settings
from ccat_assets.specs.spec import KnownObjects, SpecSet, validate_spec_files
from ccat_assets.specs.specfile import SpecError, SpecProblem


def dagster_problems(spec_set: SpecSet, existing: Sequence[PipelineDef] = ()) -> list[SpecProblem]:
    """What Dagster refuses of ``spec_set``'s pipelines, next to the ``existing`` ones of the
    ops-db (which keep the names they hold: a new pipeline cannot take them over)."""
    names = {p.name for p in spec_set.pipelines}
    catalog = [*(p for p in existing if p.name not in names),
               *(pipeline_def_from_spec(p) for p in spec_set.pipelines)]
    not_loaded = assemble(catalog, get_settings(), snapshot=True).not_loaded
    problems = []
    for item in not_loaded:
        if item.pipeline not in names:
            continue  # already in the ops-db and not part of these specs
        where = f"pipelines[{item.pipeline}]" + (f".{item.field}" if item.field else "")
        problems.append(SpecProblem(spec_set.origin[("pipelines", item.pipeline)], where,
                                    f"Dagster would not load this pipeline: {item.reason}"))
    return problems


def validate_for_dagster(paths: Sequence[Path], known: KnownObjects | None = None,
                         existing: Sequence[PipelineDef] = ()) -> SpecSet:
    """:func:`validate_spec_files`, then :func:`dagster_problems`; raises :class:`SpecError`."""
    spec_set = validate_spec_files(paths, known)
    problems = dagster_problems(spec_set, existing)
    if problems:
        raise SpecError(problems)
    return spec_set
