"""Write ``bench/results/REPORT.md`` from every ``bench/results/*.json``; runs nothing itself.

Figures mean little without the machine, so the report names it first; then, per benchmark,
each target and whether it holds, and its key figures. It reads only the ``targets`` and
``figures`` lists every benchmark prints (shape in ``bench/targets.py``), so a benchmark's own
layout can change without touching this file; a JSON without them gets its top-level values.

    python bench/report.py [--results bench/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from bench.machine import describe
from bench.targets import NO_TARGET

RESULTS = Path(__file__).resolve().parent / "results"
HOLDS = {True: "yes", False: "**no**", None: "not measured"}


def cell(value: Any) -> str:
    if value is None:
        return "-"
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def machine_section(machine: dict[str, Any], now: dt.datetime) -> list[str]:
    rows = [["CPU", f"{machine['cpu_model']}, {machine['cpus']} cores ({machine['architecture']})"],
            ["memory", f"{machine['memory_gib']} GiB"],
            ["OS", f"{machine['os']}, kernel {machine['kernel']}"],
            ["Python", machine["python"]], ["Dagster", machine["dagster"]],
            ["report written", now.strftime("%Y-%m-%d %H:%M UTC")]]
    return ["## Machine", "", *table(["what", "value"], rows), ""]


def fallback_figures(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level scalar values of a JSON that has no ``figures`` list."""
    return [{"name": k, "value": v, "unit": ""} for k, v in data.items()
            if isinstance(v, int | float | str | bool) and k != "benchmark"]


def busy_machine(data: dict[str, Any]) -> list[str]:
    """A warning when a result was measured while other work loaded the machine."""
    theirs = data.get("machine")
    if not isinstance(theirs, dict):
        return []
    load, cpus = theirs.get("load_average_1min_at_start"), theirs.get("cpus") or 1
    if load is None or load <= cpus / 2:
        return []
    return [f"**Warning:** started at a 1-minute load average of {load:g} on {cpus} cores: "
            "other work shared the machine, so times overstate the cost.", ""]


def other_machine(data: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    """A warning when a result was measured on a machine other than the report's."""
    theirs = data.get("machine")
    if not isinstance(theirs, dict) or not theirs.get("cpu_model"):
        return []
    if (theirs.get("cpu_model"), theirs.get("cpus")) == (machine["cpu_model"], machine["cpus"]):
        return []
    return [f"Measured on another machine: {theirs.get('cpu_model')}, "
            f"{theirs.get('cpus')} cores.", ""]


def load(path: Path) -> dict[str, Any] | str:
    """The benchmark's JSON, or why it could not be read (a failed run leaves a partial file)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"`{path.name}` could not be read ({exc}): rerun it."
    return data if isinstance(data, dict) else f"`{path.name}` is not a JSON object."


def summary_section(loaded: dict[Path, dict[str, Any] | str]) -> list[str]:
    """Every target of every benchmark in one table, so a reader sees at once what holds."""
    rows = [[path.stem, t["name"], t["target"], t["value"], HOLDS[t["holds"]]]
            for path, data in loaded.items() if isinstance(data, dict)
            for t in data.get("targets") or []]
    untargeted = [path.stem for path, data in loaded.items()
                  if isinstance(data, dict) and not data.get("targets")]
    lines = ["## Targets", ""]
    if rows:
        lines += table(["benchmark", "target", "wanted", "value", "holds"], rows)
    if untargeted:
        lines += ["", f"{NO_TARGET.capitalize()} for: {', '.join(untargeted)}."]
    return [*lines, ""]


def benchmark_section(path: Path, data: dict[str, Any] | str,
                      machine: dict[str, Any]) -> list[str]:
    if isinstance(data, str):
        return [f"## {path.stem}", "", data, ""]
    stamp = data.get("generated_at") or dt.datetime.fromtimestamp(
        path.stat().st_mtime, dt.UTC).isoformat(timespec="seconds")
    lines = [f"## {path.stem}", "", f"`{path.name}` ({data.get('benchmark', path.stem)}), "
             f"written {stamp}.", "", *other_machine(data, machine), *busy_machine(data),
             *[f"**Warning:** {w}." for w in data.get("warnings") or []],
             *([""] if data.get("warnings") else []), "### Targets", ""]
    targets = data.get("targets") or []
    if targets:
        lines += table(["target", "wanted", "value", "holds"],
                       [[t["name"], t["target"], t["value"], HOLDS[t["holds"]]]
                        for t in targets])
    else:
        lines.append(f"{NO_TARGET.capitalize()} (none in docs/; a benchmark lists its targets "
                     "in its JSON's `targets`).")
    figures = data.get("figures") or fallback_figures(data)
    lines += ["", "### Key figures", "",
              *table(["figure", "value", "unit"],
                     [[f["name"], f["value"], f.get("unit", "")] for f in figures]), ""]
    return lines


def render(results: Path, now: dt.datetime) -> str:
    machine = describe()
    lines = ["# Benchmark report", "",
             "Generated by `bench/report.py` from the JSON files in this folder (`make bench` "
             "runs every benchmark, then it); do not edit by hand. The figures come from the "
             "machine below.", "", *machine_section(machine, now)]
    loaded = {path: load(path) for path in sorted(results.glob("*.json"))}
    if not loaded:
        lines.append("No results yet: run `make bench`.")
    else:
        lines += summary_section(loaded)
    for path, data in loaded.items():
        lines += benchmark_section(path, data, machine)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = args.results / "REPORT.md"
    report.write_text(render(args.results, dt.datetime.now(dt.UTC)))
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
