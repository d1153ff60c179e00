"""Reading YAML spec files and turning pydantic errors into messages a person can act on.

Shared by pipeline specs (``spec.py``) and ingest manifests (``ingest.py``): both report every
problem at once as ``FILE: section[object].field: message``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class SpecProblem:
    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}" if self.where else (
            f"{self.file}: {self.message}"
        )


class SpecError(ValueError):
    """One or more problems in spec files; nothing was written."""

    def __init__(self, problems: Sequence[SpecProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def load_yaml(path: Path) -> tuple[Any, SpecProblem | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, SpecProblem(str(path), "", f"cannot read file: {exc.strerror or exc}")
    except UnicodeDecodeError:
        return None, SpecProblem(str(path), "", "file is not UTF-8 text")
    try:
        return yaml.safe_load(text), None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, SpecProblem(str(path), "", f"invalid YAML{at}: {problem}")


def object_label(section: str, index: int, item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"{section}[{name}]" if isinstance(name, str) and name else f"{section}[{index}]"


def _loc_to_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _field_names(model: type[BaseModel], seen: set[type] | None = None) -> set[str]:
    """Every field name of ``model`` and the models nested in it, for "did you mean"."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names = {n for n, f in model.model_fields.items() if not f.exclude}
    for f in model.model_fields.values():
        for arg in _type_args(f.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                names |= _field_names(arg, seen)
    return names


def _type_args(annotation: Any) -> list[Any]:
    args = [annotation]
    for sub in getattr(annotation, "__args__", ()) or ():
        args += _type_args(sub)
    return args


def validate_model(
    model: type[BaseModel], data: Any, file: str, where: str, problems: list[SpecProblem]
) -> Any:
    """Validate ``data`` as ``model``; on failure append one problem per field and return None."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = _loc_to_path(err["loc"])
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                field = str(err["loc"][-1])
                allowed = sorted(_field_names(model))
                message = f"unknown field {field!r}{did_you_mean(field, allowed)}"
            elif err["type"] == "missing":
                message = "required field is missing"
            problems.append(SpecProblem(file, f"{where}{path}", message))
        return None


def read_sections(
    paths: Sequence[Path], sections: Sequence[str], problems: list[SpecProblem]
) -> list[tuple[str, str, int, Any]]:
    """Every ``(file, section, index, item)`` of the given top-level list sections."""
    items: list[tuple[str, str, int, Any]] = []
    for path in paths:
        data, problem = load_yaml(path)
        if problem:
            problems.append(problem)
            continue
        file = str(path)
        if data is None:
            problems.append(SpecProblem(file, "", "file is empty"))
            continue
        if not isinstance(data, dict):
            problems.append(
                SpecProblem(file, "", f"expected a mapping of sections {list(sections)}")
            )
            continue
        for key, value in data.items():
            if key not in sections:
                problems.append(
                    SpecProblem(
                        file, str(key), f"unknown section{did_you_mean(str(key), sections)}"
                        f" (sections: {', '.join(sections)})"
                    )
                )
                continue
            if not isinstance(value, list):
                problems.append(SpecProblem(file, str(key), "expected a list"))
                continue
            items.extend((file, key, i, item) for i, item in enumerate(value))
    return items
