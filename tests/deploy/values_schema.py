"""Validate values against values.schema.json, as ``helm install`` does before rendering.

The ``jsonschema`` package is not a dependency of this project (yet), so this is a small
validator for exactly the draft-07 keywords our schema uses; :data:`KEYWORDS` lists them and
a test fails if the schema starts using another one. When ``jsonschema`` is importable, the
tests run it as well.
"""

from __future__ import annotations

import re
from typing import Any

KEYWORDS = {
    "$schema", "title", "description", "definitions", "$ref", "type", "properties", "required",
    "additionalProperties", "propertyNames", "enum", "const", "not", "items", "minItems",
    "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength", "pattern", "if", "then",
}
TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def keywords_used(schema: Any) -> set[str]:
    if isinstance(schema, list):
        return set().union(*(keywords_used(s) for s in schema)) if schema else set()
    if not isinstance(schema, dict):
        return set()
    used = set(schema)
    for key, sub in schema.items():
        if key in ("properties", "definitions"):
            used |= set().union(*(keywords_used(s) for s in sub.values())) if sub else set()
        elif key not in ("enum", "const", "required"):
            used |= keywords_used(sub)
    return used


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None,
           path: str = "") -> list[str]:
    """Messages naming the path and the problem; empty when ``value`` is valid."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/definitions/")
        return errors(value, root["definitions"][name], root, path)
    where = path or "(root)"
    found: list[str] = []
    kinds = schema.get("type")
    if kinds:
        allowed = tuple(t for k in ([kinds] if isinstance(kinds, str) else kinds) for t in TYPES[k])
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and bool not in allowed):
            return [f"{where}: {value!r} is not of type {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "not" in schema and not errors(value, schema["not"], root, path):
        found.append(f"{where}: {value!r} is not allowed")
    if isinstance(value, str):
        found += _string(value, schema, where)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where}: {value} is less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where}: {value} is more than {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            found.append(f"{where}: {value} must be more than {schema['exclusiveMinimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{where}: fewer than {schema['minItems']} items")
        for i, item in enumerate(value):
            found += errors(item, schema.get("items", {}), root, f"{path}[{i}]")
    if isinstance(value, dict):
        found += _object(value, schema, root, path)
    if "if" in schema and not errors(value, schema["if"], root, path):
        found += errors(value, schema.get("then", {}), root, path)
    return found


def _string(value: str, schema: dict[str, Any], where: str) -> list[str]:
    found = []
    if len(value) < schema.get("minLength", 0):
        found.append(f"{where}: {value!r} is shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        found.append(f"{where}: {value!r} is longer than {schema['maxLength']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"{where}: {value!r} does not match {schema['pattern']}")
    return found


def _object(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any],
            path: str) -> list[str]:
    found = []
    props = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            found.append(f"{path or '(root)'}: {key!r} is required")
    for key, item in value.items():
        sub = f"{path}.{key}" if path else key
        if "propertyNames" in schema:
            found += errors(key, schema["propertyNames"], root, f"{sub} (name)")
        if key in props:
            found += errors(item, props[key], root, sub)
        elif schema.get("additionalProperties") is False:
            found.append(f"{sub}: unknown key")
        elif isinstance(schema.get("additionalProperties"), dict):
            found += errors(item, schema["additionalProperties"], root, sub)
    return found
