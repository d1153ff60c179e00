"""Grouping presets: named templates with ``{placeholders}``, shipped as YAML data.

A preset such as ``source_line_instrument`` turns "NGC253, CO43, CHAI" into a full grouping,
so scientists need not write join-level rules for the common cases. Presets are data: the
YAML files in ``ccat_assets/presets/`` are loaded into ``GroupingPreset`` rows, and a new
preset is a new file. A string that is exactly ``"{param}"`` takes the parameter's value
with its type (a number stays a number, a list stays a list); inside longer text the value is
written in; ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccat_assets.grouping.dimensions import validate_group_by
from ccat_assets.grouping.errors import GroupingError, describe, did_you_mean
from ccat_assets.grouping.keys import encode_value
from ccat_assets.grouping.rules import validate_filter_rules
from ccat_assets.opsdb.pipeline import GroupingPreset

PRESET_FIELDS = ("name", "description", "parameters", "group_by", "filter_rules")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_NAME = 128


class PresetLike(Protocol):
    name: str
    filter_rules_template: list[Any]
    group_by: list[str]
    parameters: list[str]


@dataclass(frozen=True)
class PresetTemplate:
    """A preset as read from its YAML file (the same fields as a ``GroupingPreset`` row)."""

    name: str
    description: str | None
    filter_rules_template: list[Any]
    group_by: list[str] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)


def placeholders(template: object) -> set[str]:
    """Every ``{name}`` used anywhere in a template."""
    if isinstance(template, str):
        return {m.group(1) for m in _TOKEN.finditer(template) if m.group(1)}
    if isinstance(template, list):
        return set().union(*(placeholders(item) for item in template))
    if isinstance(template, dict):
        return set().union(*(placeholders(v) for v in template.values()))
    return set()


def _fill(template: object, params: Mapping[str, Any]) -> object:
    if isinstance(template, str):
        whole = _TOKEN.fullmatch(template)
        if whole and whole.group(1):
            return params[whole.group(1)]

        def text(match: re.Match[str]) -> str:
            if match.group(1) is None:
                return match.group(0)[0]
            value = params[match.group(1)]
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise TypeError(match.group(1))
            return str(value)

        return _TOKEN.sub(text, template)
    if isinstance(template, list):
        return [_fill(item, params) for item in template]
    if isinstance(template, dict):
        return {key: _fill(value, params) for key, value in template.items()}
    return template


def _grouping_name(preset: str, parameters: list[str], params: Mapping[str, Any]) -> str:
    name = "-".join([preset, *(encode_value(params[p]) for p in parameters)])
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name[:MAX_NAME - 13].rstrip('-_.')}-{digest}"
    return name


def expand_preset(preset: PresetLike, params: Mapping[str, Any]) -> dict[str, Any]:
    """A grouping spec ``{name, filter_rules, group_by?}`` from a preset and its parameters.

    ``params`` may also hold ``name`` (the grouping's name; by default the preset name and
    the parameter values). Raises :class:`GroupingError` naming every missing or unknown
    parameter, and every problem of the expanded rules.
    """
    declared = list(preset.parameters or [])
    errors: list[str] = []
    given = {k: v for k, v in params.items() if k != "name"}
    for name in declared:
        if name not in given:
            errors.append(f"parameters.{name}: missing; preset {preset.name!r} needs "
                          f"{', '.join(declared)}")
    for name in given:
        if name not in declared:
            hint = did_you_mean(name, declared) or f" (parameters: {', '.join(declared)})"
            errors.append(f"parameters.{name}: unknown parameter of preset "
                          f"{preset.name!r}{hint}")
    for name, value in given.items():
        if not _json_like(value):
            errors.append(f"parameters.{name}: must be a string, number, boolean or list of "
                          f"them, got {describe(value)}")
    if errors:
        raise GroupingError(errors)
    try:
        rules = _fill(list(preset.filter_rules_template or []), given)
    except TypeError as exc:
        raise GroupingError([f"parameters.{exc.args[0]}: is written inside text, so it must "
                             "be a string or a number"]) from None
    errors = validate_filter_rules(rules)
    name = params.get("name") or _grouping_name(preset.name, declared, given)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        errors.append(f"parameters.name: {describe(name)} is not a valid grouping name "
                      "(letters, digits, '.', '_', '-'; at most 128)")
    if errors:
        raise GroupingError(errors)
    spec: dict[str, Any] = {"name": name, "filter_rules": rules}
    if preset.group_by:
        spec["group_by"] = list(preset.group_by)
    return spec


def _json_like(value: object) -> bool:
    if isinstance(value, list):
        return all(_json_like(item) and not isinstance(item, list) for item in value)
    return isinstance(value, str | int | float | bool)


def check_preset(data: object, where: str) -> list[str]:
    """Every problem of one preset document (as read from YAML)."""
    if not isinstance(data, dict):
        return [f"{where}: a preset is a mapping with {', '.join(PRESET_FIELDS)}"]
    errors = [f"{where}.{key}: unknown field{did_you_mean(key, PRESET_FIELDS)}"
              for key in data if key not in PRESET_FIELDS]
    name = data.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        errors.append(f"{where}.name: {describe(name)} is not a valid preset name")
    params = data.get("parameters", [])
    if not isinstance(params, list) or not all(
            isinstance(p, str) and PARAMETER.fullmatch(p) and p != "name" for p in params):
        errors.append(f"{where}.parameters: must be a list of identifiers (not 'name')")
        params = []
    if len(set(params)) != len(params):
        errors.append(f"{where}.parameters: a parameter is listed twice")
    rules = data.get("filter_rules")
    if not isinstance(rules, list):
        errors.append(f"{where}.filter_rules: must be a list of rules")
    else:
        used = placeholders(rules)
        errors += [f"{where}.filter_rules: placeholder {{{p}}} is not a declared parameter"
                   f"{did_you_mean(p, params)}" for p in sorted(used - set(params))]
        errors += [f"{where}.parameters: {p!r} is never used in filter_rules"
                   for p in params if p not in used]
    errors += validate_group_by(data.get("group_by", []), where=f"{where}.group_by")
    return errors


def read_presets() -> list[PresetTemplate]:
    """The shipped presets (``ccat_assets/presets/*.yaml``), checked; sorted by name."""
    folder = resources.files("ccat_assets") / "presets"
    found: list[PresetTemplate] = []
    errors: list[str] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        data = yaml.safe_load(entry.read_text(encoding="utf-8"))
        problems = check_preset(data, f"presets/{entry.name}")
        if problems:
            errors += problems
            continue
        found.append(PresetTemplate(data["name"], data.get("description"), data["filter_rules"],
                                    list(data.get("group_by", [])), list(data["parameters"])))
    names = [p.name for p in found]
    errors += [f"presets: name {n!r} is used twice" for n in sorted(set(names))
               if names.count(n) > 1]
    if errors:
        raise GroupingError(errors)
    return sorted(found, key=lambda p: p.name)


def load_presets(session: Session) -> list[GroupingPreset]:
    """Insert or update the shipped presets as ``GroupingPreset`` rows (flushed, not committed).

    Rows of presets no longer shipped are left alone: groupings may have been made from them.
    """
    templates = read_presets()
    existing = {row.name: row for row in session.scalars(
        select(GroupingPreset).where(GroupingPreset.name.in_([t.name for t in templates])))}
    rows: list[GroupingPreset] = []
    for template in templates:
        row = existing.get(template.name) or GroupingPreset(name=template.name)
        row.description = template.description
        row.filter_rules_template = template.filter_rules_template
        row.group_by = template.group_by
        row.parameters = template.parameters
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def get_preset(session: Session, name: str) -> GroupingPreset:
    """The preset row called ``name``; a GroupingError with a near-miss hint otherwise."""
    row = session.scalars(select(GroupingPreset).where(GroupingPreset.name == name)).first()
    if row is None:
        names = list(session.scalars(select(GroupingPreset.name)))
        hint = did_you_mean(name, names) or f" (presets: {', '.join(sorted(names)) or 'none'})"
        raise GroupingError([f"preset: unknown preset {name!r}{hint}"])
    return row
