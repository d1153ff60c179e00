"""The GraphQL documents the Dagster UI sends, read from the installed webapp bundle.

The UI's pages are measured with the very queries the browser sends, not hand-written look-
alikes: the bundle of ``dagster_webserver`` holds every operation and fragment as text (Apollo
sends an operation with the fragments it spreads), so a Dagster upgrade brings its own
queries to the benchmark. Which operations a page issues was read off a headless browser
loading the pages of this Dagster version; :data:`PAGES` lists them.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import resources
from typing import Any

_DEFINITION = re.compile(r"(query|fragment|mutation) ([A-Za-z0-9_]+)")
_SPREAD = re.compile(r"\.\.\.([A-Za-z_][A-Za-z0-9_]*)")


@cache
def definitions() -> dict[str, str]:
    """Every operation and fragment in the webapp bundle, by name (first occurrence)."""
    root = resources.files("dagster_webserver") / "webapp" / "build" / "_next" / "static"
    found: dict[str, str] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                stack.append(entry)
            elif entry.name.endswith(".js"):
                _collect(entry.read_text(encoding="utf-8", errors="replace"), found)
    return found


def _collect(text: str, found: dict[str, str]) -> None:
    for match in _DEFINITION.finditer(text):
        brace = text.find("{", match.end())
        head = text[match.start():brace]
        if brace < 0 or len(head) > 600 or any(c in head for c in "\"`;"):
            continue
        depth, end = 0, brace
        while end < len(text):
            char = text[end]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    break
            elif char in "\"`":
                break
            end += 1
        if depth == 0:
            found.setdefault(match.group(2), text[match.start():end + 1].replace("\\n", "\n"))


def document(operation: str) -> str:
    """The operation and every fragment it spreads, transitively, as the UI sends it."""
    known = definitions()
    if operation not in known:
        raise KeyError(f"{operation} is not in this dagster-webserver's bundle")
    parts, seen, todo = [], set(), [operation]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts.append(known[name])
        todo += [n for n in _SPREAD.findall(known[name]) if n in known and n not in seen]
    return "\n".join(parts)


#: The operations each page issues when it opens, in the order a headless browser sent them
#: (Dagster 1.13's UI; queries every page sends whatever it shows, such as permissions and
#: code-location status, are left out). ``{key}`` is the page's asset, ``{keys}`` every
#: asset of the location, ``{near}`` the asset with its upstream and downstream neighbours
#: (the lineage strip of the asset page), ``{partition}`` a partition of the asset. The
#: ``partition`` page is the operation behind the detail of a partition picked on the
#: Partitions tab (taken from the bundle; that click was not replayed in the browser).
PAGES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "catalog": [
        ("AssetRecordsQuery", {"limit": 1000}),
        ("LocationWorkspaceAssetsQuery", {"name": "{location}"}),
        ("AssetStaleStatusDataQuery", {"assetKeys": "{keys}"}),
        ("AssetGraphLiveQuery", {"assetKeys": "{keys}"}),
        ("AssetsFreshnessInfoQuery", {"assetKeys": "{keys}"}),
    ],
    "asset": [
        ("AssetRecordsQuery", {"limit": 1000}),
        ("AssetOverviewMetadataEventsQuery", {"assetKey": "{key}"}),
        ("AssetViewDefinitionQuery", {"assetKey": "{key}"}),
        ("AssetStaleStatusDataQuery", {"assetKeys": ["{key}"]}),
        ("AssetGraphLiveQuery", {"assetKeys": ["{key}"]}),
        ("AssetsFreshnessInfoQuery", {"assetKeys": ["{key}"]}),
        ("AssetDefinitionCollisionQuery", {"assetKeys": ["{key}"]}),
        ("AssetStaleStatusDataQuery", {"assetKeys": "{near}"}),
        ("AssetGraphLiveQuery", {"assetKeys": "{near}"}),
        ("AssetsFreshnessInfoQuery", {"assetKeys": "{near}"}),
    ],
    "asset_partitions_tab": [
        ("PartitionHealthQuery", {"assetKey": "{key}"}),
        ("AssetRecordsQuery", {"limit": 1000}),
        ("AssetViewDefinitionQuery", {"assetKey": "{key}"}),
        ("AssetStaleStatusDataQuery", {"assetKeys": ["{key}"]}),
        ("AssetGraphLiveQuery", {"assetKeys": ["{key}"]}),
        ("AssetsFreshnessInfoQuery", {"assetKeys": ["{key}"]}),
    ],
    "partition": [
        ("AssetPartitionDetailQuery", {"assetKey": "{key}", "partitionKey": "{partition}"}),
    ],
}


def variables(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``template`` with each placeholder replaced: asset keys become ``{"path": [...]}``."""
    def fill(value: Any) -> Any:
        if isinstance(value, str) and value in values:
            found = values[value]
            if value in ("{key}",):
                return {"path": found}
            if value in ("{keys}", "{near}"):
                return [{"path": k} for k in found]
            return found
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return {name: fill(v) for name, v in template.items()}


def post(url: str, operation: str, variables: dict[str, Any], timeout_s: float = 600
         ) -> tuple[float, int, dict[str, Any]]:
    """Send one operation to ``url``/graphql; (seconds, response bytes, the JSON answer).
    A GraphQL error is an exception: a page that errors has not answered."""
    body = json.dumps({"operationName": operation, "query": document(operation),
                       "variables": variables}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - ours
        raw = response.read()
    seconds = time.perf_counter() - start
    answer = json.loads(raw)
    if answer.get("errors"):
        raise RuntimeError(f"{operation}: {answer['errors'][0].get('message')}")
    return seconds, len(raw), answer


def page(url: str, queries: list[tuple[str, dict[str, Any]]]) -> float:
    """Seconds until every query of a page answered, sent at once as a browser does."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        for future in [pool.submit(post, url, op, v) for op, v in queries]:
            future.result()
    return time.perf_counter() - start
