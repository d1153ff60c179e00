"""What a person sees in the Dagster UI, checked in a real browser: headless Chromium (Debian's
``chromium`` and ``chromium-driver``, installed by ``scripts/services/install.sh``) driven by
Selenium, against a real ``dagster-webserver`` over a copy of the demo state
(``tests/demokit.py``) to which one failing run has been added.

- The asset group's lineage graph draws chai-archived (the raw data) -> calibrate -> baseline
  -> grid: four node boxes and an arrow from each one's right edge to the next one's left.
- A map's partition page shows the products table of its latest materialization (the metadata
  ``factory.materialize_result`` writes), with the rows of the run's products in the ops-db.
- A failed run's page shows the run as a Failure, with the exit code and the last line the
  program wrote to stderr.
- The same partition page shows the map's quicklook (its PLOT product, embedded as a small
  image a person unfolds) and the raw packages the map was made from.

Screenshots of every page, taken when the page is checked and also when a check fails (then
with the page's HTML beside it), go to ``var/test-artifacts/ui/`` in the checkout, emptied at
the start of each run of this module: outside the test's temporary folder so that CI keeps
them and a person finds them without searching.

Selenium is given chromedriver's path, so Selenium Manager (which would download a driver)
never runs; Chromium gets flags that keep it off the network except for the loopback
webserver (the closed network refuses the rest, and the browser would stall on it).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_service
from tests.demokit import BIN, ROOT, DemoState, copy_demo_state, webserver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "var" / "test-artifacts" / "ui"
PROGRAM = ROOT / "tests" / "programs" / "reduce_copy.py"
BROKEN = "chai_broken"
#: The scan the broken pipeline fails on (its program says so on stderr and exits 3).
FAILING_KEY = "executed_obs_unit=NGC253-CO43-20261101-s001"
MAP_KEY = "source=NGC253__line=CO43"
MAP_PAGE = ("/assets/ccat/chai_standing/grid?view=partitions&partition="
            + urllib.parse.quote(MAP_KEY, safe=""))
WAIT_S = 90  # two shared cores: the UI's first render of a page can take tens of seconds
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1600,1200"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class UI:
    url: str
    browser: Any  # selenium.webdriver.Chrome
    env: dict[str, str]  # of the demo copy the webserver shows
    failed_run_id: str

    def open(self, path: str) -> None:
        self.browser.get(self.url + path)

    def wait(self, what: str, condition: Callable[[], Any]) -> Any:
        """``condition()`` once it is truthy; a failure names ``what`` was awaited. An element
        that went stale while it was read (the page re-rendered it) is read again at the next
        poll, not a failure."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.browser, WAIT_S, poll_frequency=0.5,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda _: condition())
        except Exception as exc:
            raise AssertionError(f"the page never showed {what}") from exc

    def text(self) -> str:
        return self.browser.execute_script("return document.body.innerText")

    def table(self, header: list[str]) -> list[list[str]] | None:
        """The rows under ``header`` of the first table on the page that has it."""
        for table in self.browser.find_elements("css selector", "table"):
            rows = [[c.text for c in r.find_elements("css selector", "th, td")]
                    for r in table.find_elements("css selector", "tr")]
            if rows and rows[0] == header:
                return rows[1:]
        return None

    @contextlib.contextmanager
    def page(self, name: str) -> Iterator[None]:
        """Screenshot ``name``.png after the checks, and with the page's HTML if one fails
        (then a browser too broken to give them does not hide the failure itself)."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                (ARTIFACTS / f"{name}.html").write_text(self.browser.page_source)
            with contextlib.suppress(Exception):
                self.browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
            raise
        self.browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _ccat(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(BIN / "ccat-wm"), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"ccat-wm {args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def _add_a_failed_run(env: dict[str, str], tmp: Path) -> str:
    """A MANUAL pipeline whose program fails on one scan, materialized once in this process
    as a person would from the command line; returns the failed Dagster run's id."""
    spec = yaml.safe_load((ROOT / "examples/chai/pipelines.yaml").read_text())
    spec["pipelines"] = [{
        "name": BROKEN, "description": "Fails on one scan, for the UI test.",
        "grouping": "chai-ngc253-co43", "processing_location": "local-processing",
        "trigger": {"type": "MANUAL"}, "priority": 0, "created_by": "tester",
        "steps": [{"name": "calibrate", "software": "chai-calibration",
                   "group_by": ["executed_obs_unit"], "max_retries": 0,
                   "config": {"name": "broken", "command": [sys.executable, str(PROGRAM)],
                              "parameters": {"fail_sub_group": FAILING_KEY}}}],
    }]
    path = tmp / "broken.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    _ccat(env, "apply", "--no-reload", str(path))
    _ccat(env, "partitions", "sync", BROKEN)
    result = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "ccat_assets.definitions",
         "--select", f"ccat/{BROKEN}/calibrate", "--partition", FAILING_KEY],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0, result.stdout[-2000:]
    runs = json.loads(_ccat(env, "runs", "--pipeline", BROKEN, "--json"))
    assert [(r["status"], r["sub_group_key"]) for r in runs] == [("FAILED", FAILING_KEY)], (
        runs, result.stderr[-3000:])
    return runs[0]["dagster_run_id"]


def _chromium(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options,
                            service=Service(executable_path=str(CHROMEDRIVER)))


@pytest.fixture(scope="module")
def ui(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[UI]:
    """The webserver over a demo copy with a failed run, and a browser; shared by the module's
    tests (one webserver start, one browser). The browser is looked for before the demo state
    is asked for: without one, nothing is built for nothing."""
    require_service(CHROMIUM.is_file() and CHROMEDRIVER.is_file(),
                    f"headless Chromium ({CHROMIUM}, {CHROMEDRIVER}; "
                    "scripts/services/install.sh installs them)")
    demo_state: DemoState = request.getfixturevalue("demo_state")
    tmp = tmp_path_factory.mktemp("ui")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    env = copy_demo_state(demo_state, tmp / "demo")
    failed_run_id = _add_a_failed_run(env, tmp)
    with webserver(env, tmp / "webserver.log") as (port, client), \
            tempfile.TemporaryDirectory(dir=tmp) as profile:
        # What "Skip" on the community pop-up does; it would cover every page otherwise.
        client._execute("mutation { setNuxSeen }")  # noqa: SLF001 - the client's raw query
        browser = _chromium(Path(profile))
        try:
            yield UI(f"http://127.0.0.1:{port}", browser, env, failed_run_id)
        finally:
            browser.quit()


GRAPH_JS = """
const svg = [...document.querySelectorAll('svg')].find(s => s.querySelector('foreignObject'));
if (!svg) return null;
const num = (el, a) => parseFloat(el.getAttribute(a));
return {
  nodes: [...svg.querySelectorAll('foreignObject')].map(el => ({
    text: el.textContent, x: num(el, 'x'), y: num(el, 'y'),
    w: num(el, 'width'), h: num(el, 'height')})),
  edges: [...svg.querySelectorAll('path[marker-end]')].map(p => p.getAttribute('d')),
};
"""


def _arrows(graph: dict[str, Any], names: list[str]) -> set[tuple[str, str]]:
    """The arrows between the named node boxes: an edge starts on the right side of its
    upstream box and ends (at its arrow head) just left of its downstream box."""
    boxes = {}
    for name in names:
        found = [n for n in graph["nodes"] if re.sub(r"\s", "", n["text"]).startswith(name)]
        assert len(found) == 1, (name, [n["text"][:40] for n in graph["nodes"]])
        boxes[name] = found[0]

    def at(point: tuple[float, float], x_of: Callable[[dict], float]) -> str | None:
        for name, b in boxes.items():
            if abs(point[0] - x_of(b)) <= 12 and b["y"] <= point[1] <= b["y"] + b["h"]:
                return name
        return None

    arrows = set()
    for d in graph["edges"]:
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
        start, end = (numbers[0], numbers[1]), (numbers[-2], numbers[-1])
        arrows.add((at(start, lambda b: b["x"] + b["w"]), at(end, lambda b: b["x"])))
    return arrows


def test_lineage_products_and_a_failed_run_as_a_person_sees_them(ui: UI) -> None:
    with ui.page("1-lineage-chai_standing"):
        ui.open("/locations/ccat_assets.definitions/asset-groups/chai_standing")

        def drawn() -> dict[str, Any] | None:
            graph = ui.browser.execute_script(GRAPH_JS)
            done = (graph and len(graph["nodes"]) >= 4 and len(graph["edges"]) >= 3
                    and "Loading..." not in ui.text())
            return graph if done else None

        graph = ui.wait("the lineage graph with its edges", drawn)
        assert _arrows(graph, ["chai-archived", "calibrate", "baseline", "grid"]) == {
            ("chai-archived", "calibrate"), ("calibrate", "baseline"), ("baseline", "grid")}

    with ui.page("2-partition-grid-products"):
        ui.open(MAP_PAGE)
        rows = ui.wait("the products table",
                       lambda: ui.table(["path", "type", "size_bytes", "checksum"]))
        assert ui.text().count(MAP_KEY) >= 2  # selected in the list, and the page's title
        runs = json.loads(_ccat(ui.env, "runs", "--pipeline", "chai_standing", "--step", "grid",
                                "--status", "COMPLETED", "--json"))
        latest = max((r for r in runs if r["sub_group_key"] == MAP_KEY), key=lambda r: r["id"])
        assert len(rows) == latest["products"], rows  # the latest materialization's products
        by_path = {r[0]: r for r in rows}
        assert by_path["output/plots/NGC253_CO43_mom0.png"][1] == "PLOT"
        assert by_path["output/science/NGC253_CO43_cube.fits"][1] == "SCIENCE"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", r[3]) for r in rows), rows
        assert all(int(r[2]) >= 0 for r in rows), rows

    with ui.page("3-failed-run"):
        ui.open(f"/runs/{ui.failed_run_id}")
        failure = (f"calibrate/{FAILING_KEY}: exit code 3\nlast 1 lines of stderr:\n"
                   f"failing sub-group {FAILING_KEY} on request")
        ui.wait("the failure with the program's last stderr lines",
                lambda: failure in ui.text())
        assert "Failure" in ui.text()



#: The raw packages of the demo's map: two scans on each of two nights.
MAP_RAW = {f"chai-NGC253-CO43-{night}-s00{scan}" for night in ("20261101", "20261102")
           for scan in (1, 2)}


def test_a_maps_quicklook_and_raw_inputs(ui: UI) -> None:
    """What the materialization shows a person besides its products: the map's quicklook
    (its PLOT product as an image inline) and the raw packages it was made from."""
    with ui.page("4-partition-grid-quicklook"):
        ui.open(MAP_PAGE)

        def decoded_thumbnails() -> list[Any] | None:
            images = [i for i in ui.browser.find_elements("css selector", "img")
                      if (i.get_attribute("src") or "").startswith("data:image/png;base64,")]
            shown = [i for i in images if ui.browser.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", i)]
            return shown or None

        raw = ui.wait("the raw inputs table", lambda: ui.table(["name", "checksum",
                                                                "archived_at"]))
        assert {r[0] for r in raw} == MAP_RAW, raw
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", r[1]) for r in raw), raw
        # Markdown metadata is folded: a person clicks its "[Show Markdown]" to see it.
        label = "quicklook output/plots/NGC253_CO43_mom0.png"
        row = ui.browser.find_element(
            "xpath", f"//tr[td[1][normalize-space()='{label}']]")
        row.find_element("xpath", ".//a[contains(., 'Show Markdown')]").click()
        ui.wait("the map's quicklook, decoded", decoded_thumbnails)
