"""Sidecar files (``<product>.meta.json``) of any content: random bytes and random JSON never
crash collection. The product is always kept; a sidecar that is not a valid, storable
``{"metadata": {...}, "quality_metrics": {...}}`` leaves it without metadata and with a
warning; quality metrics that are not finite numbers are dropped with a warning. Checked on
``read_sidecar`` with hypothesis (deterministic) and end to end on both databases, where
what is kept must also be storable by PostgreSQL (no NaN or infinity, no NUL, no lone
surrogate)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from ccat_assets.execution.execute import execute_partition
from ccat_assets.opsdb import DataProduct, RunStatus
from ccat_assets.opsdb.session import session_scope
from ccat_assets.results.collect import read_sidecar
from tests.reliability.conftest import (
    KEY,
    PIPELINE,
    STEP,
    assert_no_live_in_flight_rows,
    local_services,
)

JSON_TEXT = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**400), 10**400), st.floats(),
              st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8)
SIDECAR_DOC = st.one_of(
    JSON_TEXT,
    st.fixed_dictionaries({}, optional={"metadata": JSON_TEXT, "quality_metrics": JSON_TEXT,
                                        "other": JSON_TEXT}),
    st.fixed_dictionaries({"quality_metrics": st.dictionaries(st.text(max_size=8),
                                                              JSON_TEXT, max_size=4)}))


def _storable(value: object) -> bool:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except ValueError:
        return False
    return "\\u0000" not in text


def _check(path: Path) -> None:
    sidecar = read_sidecar(path)  # must not raise
    assert isinstance(sidecar.metadata, dict) and isinstance(sidecar.quality_metrics, dict)
    assert _storable(sidecar.metadata) and _storable(sidecar.quality_metrics)
    assert _storable(sidecar.warning)
    for value in sidecar.quality_metrics.values():
        assert isinstance(value, int | float) and not isinstance(value, bool)
        assert math.isfinite(value)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sidecars") / "x.fits"
    path.write_bytes(b"data")
    return path


@settings(max_examples=150, derandomize=True, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_sidecar_never_raises(product: Path, data: bytes) -> None:
    Path(f"{product}.meta.json").write_bytes(data)
    _check(product)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(doc=SIDECAR_DOC, ensure_ascii=st.booleans())
def test_random_json_sidecar_never_raises(product: Path, doc, ensure_ascii: bool) -> None:
    try:
        text = json.dumps(doc, ensure_ascii=ensure_ascii)
    except ValueError:  # an integer too long to print: write it by hand
        text = '{"quality_metrics": {"q": ' + "9" * 5000 + "}}"
    Path(f"{product}.meta.json").write_bytes(text.encode("utf-8", "surrogatepass"))
    _check(product)


OK = {"ok": 1}
#: (sidecar bytes, metadata kept, quality metrics kept, warned)
CASES = [
    (b'{"metadata": {"k": "v"}, "quality_metrics": {"q": 1.5}}', {"k": "v"}, {"q": 1.5}, False),
    (b'{"metadata": {"deep": ' + b"[" * 200 + b"]" * 200 + b"}}", None, {}, False),
    (b"\xff\xfe\x00 not text", {}, {}, True),
    (b"", {}, {}, True),
    (b"null", {}, {}, True),
    (b"[1, 2]", {}, {}, True),
    (b'{"metadata": 5}', {}, {}, True),
    (b'{"quality_metrics": {"q": NaN, "ok": 1}}', {}, {}, True),
    (b'{"quality_metrics": {"q": 1e999, "ok": 1}}', {}, OK, True),
    (b'{"quality_metrics": {"q": 1' + b"0" * 400 + b', "ok": 1}}', {}, OK, True),
    (b'{"metadata": {"big": 1e999}}', {}, {}, True),
    (b'{"metadata": {"nul": "a\\u0000b"}}', {}, {}, True),
    (b'{"metadata": {"\\u0000": 1}}', {}, {}, True),
    (b'{"metadata": {"surrogate": "\\ud800"}}', {}, {}, True),
    (b"[" * 5000, {}, {}, True),
]


def test_hostile_sidecars_keep_every_product_end_to_end(make_pipeline) -> None:
    make_pipeline({"sidecars_hex": [raw.hex() for raw, *_ in CASES]})
    outcome = execute_partition(local_services(), pipeline_name=PIPELINE, step_name=STEP,
                                sub_group_key=KEY, dagster_run_id="d-1")
    assert outcome.status == RunStatus.COMPLETED
    with session_scope() as session:
        products = {p.name: p for p in session.scalars(sa.select(DataProduct).filter_by(
            executed_reduction_step_id=outcome.run_id))}
        for i, (raw, metadata, metrics, warned) in enumerate(CASES):
            product = products[f"part-{i:05d}.txt"]  # kept, whatever its sidecar said
            if metadata is not None:
                assert product.meta == metadata, raw[:60]
            assert product.quality_metrics == metrics, raw[:60]
            assert bool(product.warnings) == warned, (raw[:60], product.warnings)
    warned = sum(w for *_, w in CASES)
    assert sum(".meta.json" in w for w in outcome.warnings) == warned, outcome.warnings
    assert_no_live_in_flight_rows()


def test_odd_output_file_names_are_products_or_warnings(make_pipeline) -> None:
    """Names with spaces, quotes or newlines are products; undecodable bytes are a warning."""
    names = [b"tab\there 'q' \"dq\".txt", b"new\nline.txt", b"\xff\xfe.txt", "日本.txt".encode()]
    make_pipeline({"names_hex": [n.hex() for n in names]})
    outcome = execute_partition(local_services(), pipeline_name=PIPELINE, step_name=STEP,
                                sub_group_key=KEY, dagster_run_id="d-1")
    assert outcome.status == RunStatus.COMPLETED
    paths = {p["path"] for p in outcome.products}
    for name in (names[0], names[1], names[3]):
        assert f"output/science/{name.decode()}" in paths
    assert not any("\udcff" in p for p in paths)
    assert any("not valid UTF-8" in w for w in outcome.warnings), outcome.warnings
    assert_no_live_in_flight_rows()
