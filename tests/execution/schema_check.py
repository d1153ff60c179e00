"""A small JSON Schema (draft 2020-12) validator for the keywords the manifest schema uses.

``jsonschema`` is not installed in this project's environment, so the test validates with
this subset instead: type, const, enum, properties, required, additionalProperties, items,
pattern, minLength, minimum, exclusiveMinimum and local ``$ref``. An unknown keyword is an
error, so the schema cannot silently use something this checker ignores.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs"}
_KNOWN = _ANNOTATIONS | {"type", "const", "enum", "properties", "required",
                         "additionalProperties", "items", "pattern", "minLength", "minimum",
                         "exclusiveMinimum", "$ref"}


def errors(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None,
           where: str = "$") -> list[str]:
    """Every violation of ``schema`` by ``instance``, as ``path: problem`` strings."""
    root = root if root is not None else schema
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"{where}: schema keyword(s) {sorted(unknown)} not supported")
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        found = errors(instance, target, root, where)
        rest = {k: v for k, v in schema.items() if k not in ("$ref", "description")}
        return found + (errors(instance, rest, root, where) if rest else [])
    out: list[str] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[k](instance) for k in kinds):
            return [f"{where}: {type(instance).__name__} is not {'/'.join(kinds)}"]
    if "const" in schema and instance != schema["const"]:
        out.append(f"{where}: {instance!r} != {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        out.append(f"{where}: {instance!r} not in {schema['enum']}")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            out.append(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            out.append(f"{where}: {instance!r} does not match {schema['pattern']}")
    if _TYPES["number"](instance):
        if "minimum" in schema and instance < schema["minimum"]:
            out.append(f"{where}: {instance} < {schema['minimum']}")
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            out.append(f"{where}: {instance} <= {schema['exclusiveMinimum']}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        out += [f"{where}: missing {k!r}" for k in schema.get("required", [])
                if k not in instance]
        for key, value in instance.items():
            if key in props:
                out += errors(value, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{where}: unexpected property {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += errors(value, schema["additionalProperties"], root, f"{where}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            out += errors(item, schema["items"], root, f"{where}[{i}]")
    return out
