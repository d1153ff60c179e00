"""Check rendered objects against the Kubernetes API types of the ``kubernetes`` client.

No API server runs here, so this is the stand-in for ``kubectl apply --dry-run=server``: every
field must exist in the client's generated model of that kind (camelCase, as the API takes it),
every value must have the model's type (a ConfigMap's data values are strings, ports are
integers), required fields must be present (the models' own validation), and names must be
DNS-1123 names.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
    "object": (object,), "datetime": (str,), "date": (str,),
}


def problems(obj: dict[str, Any]) -> list[str]:
    """Everything wrong with ``obj`` as a Kubernetes object; empty when it is valid."""
    found: list[str] = []
    for key in ("apiVersion", "kind", "metadata"):
        if key not in obj:
            found.append(f"missing {key}")
    if found:
        return found
    model = f"V1{obj['kind']}"
    if not hasattr(client, model):
        return [f"unknown kind {obj['kind']}"]
    name = obj["metadata"].get("name", "")
    if not DNS_SUBDOMAIN.match(name):
        found.append(f"metadata.name {name!r} is not a DNS-1123 name")
    for key, value in (obj["metadata"].get("labels") or {}).items():
        if not isinstance(value, str) or not LABEL_VALUE.match(value):
            found.append(f"label {key}={value!r} is not a valid label value")
    _walk(obj, model, obj["kind"], found)
    if not found:
        try:  # the models raise ValueError for missing required fields
            client.ApiClient()._ApiClient__deserialize(obj, model)
        except ValueError as exc:
            found.append(str(exc))
    return found


def _walk(value: Any, type_name: str, path: str, found: list[str]) -> None:
    if value is None:
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            found.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _walk(item, type_name[5:-1], f"{path}[{i}]", found)
    elif type_name.startswith(("dict(", "dict[")):  # "dict(str, str)" or "dict[str, str]"
        if not isinstance(value, dict):
            found.append(f"{path}: expected a map, got {type(value).__name__}")
            return
        inner = type_name[5:-1].split(", ", 1)[1]
        for key, item in value.items():
            _walk(item, inner, f"{path}.{key}", found)
    elif type_name in PRIMITIVES:
        kinds = PRIMITIVES[type_name]
        if not isinstance(value, kinds) or (type_name == "int" and isinstance(value, bool)):
            found.append(f"{path}: expected {type_name}, got {value!r}")
    else:
        model = getattr(client, type_name)
        if not isinstance(value, dict):
            found.append(f"{path}: expected a {type_name} map, got {value!r}")
            return
        by_json = {v: k for k, v in model.attribute_map.items()}
        for key, item in value.items():
            if key not in by_json:
                found.append(f"{path}.{key}: not a field of {type_name}")
                continue
            _walk(item, model.openapi_types[by_json[key]], f"{path}.{key}", found)
