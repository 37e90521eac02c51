"""GET /v1/signals answers byte for byte what it answered before the columnar snapshot and the
partial-selection sort orders: JSON pages (rows, totals, cursors) and CSV, for many filters,
sorts, page sizes, principals, and cursors carried into a newer snapshot. The reference is a
frozen copy of the previous code (tests/api/legacy)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import sqlite3
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from api.auth import Principal, Role
from api.query import SORTABLE, CursorSigner
from api.routes.signals import list_signals
from api.snapshots import build_snapshot
from api.tenancy import RegistrySnapshot
from benchmarks.api import synthetic_store
from pvsignal.detection import Detector
from pvsignal.products import Kind, Pathway, Registry
from pvsignal.scopes import ScopeConfig
from pvsignal.scoring import ScoringConfig
from pvsignal.store import open_store
from tests.api.legacy import query as old_query
from tests.api.legacy import snapshots as old_snapshots

SORTS = [*SORTABLE, *(f"-{name}" for name in SORTABLE if name != "product")]
REGULATOR = Principal(Role.regulator, None, "test")
MAH = Principal(Role.mah, "MAH-007", "test")
HOSPITAL = Principal(Role.hospital, "H-1", "test")
FILTERS = [
    {},
    {"measure": "ebgm"},
    {"measure": "prr", "status": "open"},
    {"status": "new"},
    {"min_a": 3},
    {"pathway": "lecheng_special_import", "kind": "drug"},
    {"mah_id": "MAH-003"},
    {"product_id": ["P-000001", "P-000007", "ZERO-1"], "pt": ["PT-00000", "PT-00003"]},
    {"since": dt.datetime(2000, 1, 1)},
    {"since": dt.datetime(2999, 1, 1)},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """~3,000 pairs over registered products, with ties, NaN and inf statistics (products whose
    every report names the pair: b = 0), and signal states from a detector run."""
    url = f"sqlite:///{tmp_path_factory.mktemp('equality')}/store.db"
    synthetic_store(url, 3_000, seed=5)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        for i, (a, pt) in enumerate([(4, "PT-00000"), (1, "PT-00003"), (7, "PT-00001")]):
            product = f"ZERO-{i}"
            connection.execute(
                "INSERT INTO pair_counts VALUES ('all', ?, ?, ?, 0)", (product, pt, a)
            )
            connection.execute(
                "INSERT INTO product_counts VALUES ('all', 'unknown|U|unknown', ?, ?, 0)",
                (product, a),
            )
            connection.execute(
                "UPDATE event_counts SET n = n + ? WHERE scope = 'all' AND event = ?", (a, pt)
            )
            connection.execute("UPDATE scope_totals SET n = n + ? WHERE scope = 'all'", (a,))
    opened = open_store(url)
    Detector(opened, ScopeConfig()).update(["all"])
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def registry(store):
    products = store.load_products()
    return RegistrySnapshot(
        store.products_digest(), Registry(products), {p.product_id: p.mah_id for p in products}
    )


def _new(store, generation):
    token = store.change_token()
    return build_snapshot(
        store, "all", token=token, stratify=True, scoring=ScoringConfig(), generation=generation
    )


def _old(store, generation):
    token = store.change_token()
    return old_snapshots.build_snapshot(
        store, "all", token=token, stratify=True, scoring=ScoringConfig(), generation=generation
    )


SIGNER = CursorSigner(b"equality")


def _new_answer(snapshot, principal, registry, params, *, format="json"):
    # The filters name exact labels: the store's term lookup (TermStore.named_event) keeps them.
    terms = SimpleNamespace(named_event=lambda text: text)
    runtime = SimpleNamespace(
        signals=SimpleNamespace(get=lambda scope: snapshot),
        cursors=SIGNER,
        scopes=ScopeConfig(),
        pool=SimpleNamespace(store=lambda: contextlib.nullcontext(terms)),
    )
    params = dict(params)
    if "pathway" in params:
        params["pathway"] = Pathway(params["pathway"])
    if "kind" in params:
        params["kind"] = Kind(params["kind"])
    response = list_signals(
        principal=principal,
        runtime=runtime,
        registry=registry,
        **{"sort": "-eb05", "limit": 100, "cursor": None, **params},
        format=format,
    )
    if format == "json":
        return response.body

    async def collect():
        return b"".join([chunk async for chunk in response.body_iterator])

    # In a thread of its own: a session's Playwright (tests/ui) may hold this thread's loop.
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, collect()).result()


def _filter(params):
    return old_query.SignalFilter(
        product_ids=tuple(params.get("product_id", ())),
        mah_id=params.get("mah_id"),
        pathway=params.get("pathway"),
        kind=params.get("kind"),
        pts=tuple(params.get("pt", ())),
        measure=params.get("measure"),
        status=params.get("status"),
        min_a=params.get("min_a"),
        since=params.get("since"),
    )


def _old_answer(snapshot, principal, registry, params, *, format="json"):
    """The previous list_signals, composed from the frozen code."""
    sort, limit = params.get("sort", "-eb05"), params.get("limit", 100)
    mask = old_query.selection(snapshot, principal, registry, _filter(params))
    order = old_query.order_of(snapshot, sort)
    if format == "csv":
        return _old_csv(snapshot, order.permutation[mask[order.permutation]])
    cursor = params.get("cursor")
    decoded = SIGNER.decode(cursor) if cursor is not None else None
    start = old_query.start_position(snapshot, order, sort, decoded)
    found = old_query.page(mask, order, start, limit)
    return orjson.dumps(
        {
            "scope": "all",
            "level": "pt",  # added since (pvsignal.terminology): every scope here counts PTs
            "total": found.total,
            "signals": old_query.rows(snapshot, found.rows, registry),
            "next_cursor": old_query.next_cursor(SIGNER, snapshot, order, sort, found),
            "theta": snapshot.theta._asdict(),
            "fitted_at": snapshot.fit.get("fitted_at"),
        }
    )


def _old_csv(snapshot, indices):
    import io

    import pyarrow.csv as pa_csv

    from pvsignal.export import export_table, write_csv

    out = io.BytesIO()
    for start in range(0, max(indices.size, 1), 100_000):
        part = indices[start : start + 100_000]
        table = export_table(
            snapshot.products[snapshot.product_code[part]],
            snapshot.events[snapshot.event_code[part]],
            {name: snapshot.statistics[name][part] for name in old_snapshots.STATISTICS},
        )
        if start == 0:
            write_csv(table, out)
        else:
            pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=False))
    return out.getvalue()


def test_the_store_has_ties_nan_and_inf(store):
    snapshot = _old(store, 1)
    assert np.isnan(snapshot.statistics["ror_lower"]).any()
    assert np.isinf(snapshot.statistics["ror"]).any()
    assert (snapshot.statistics["a"] == 1).sum() > 100


@pytest.mark.parametrize("sort", SORTS)
def test_pages_and_cursors_are_byte_identical(store, registry, sort):
    old, new = _old(store, 1), _new(store, 1)
    for principal in (REGULATOR, MAH, HOSPITAL):
        for filters in FILTERS:
            for limit in (1, 7, 250):
                params = {**filters, "sort": sort, "limit": limit}
                for _ in range(4):  # the first pages, each through the previous cursor
                    expected = _old_answer(old, principal, registry, params)
                    assert _new_answer(new, principal, registry, params) == expected, params
                    cursor = orjson.loads(expected)["next_cursor"]
                    if cursor is None:
                        break
                    params = {**params, "cursor": cursor}


@pytest.mark.parametrize("sort", ["-eb05", "a", "-ror", "prr_lower", "product"])
def test_every_page_to_the_end_is_byte_identical(store, registry, sort):
    old, new = _old(store, 1), _new(store, 1)
    params = {"sort": sort, "limit": 500}
    while True:
        expected = _old_answer(old, REGULATOR, registry, params)
        assert _new_answer(new, REGULATOR, registry, params) == expected
        cursor = orjson.loads(expected)["next_cursor"]
        if cursor is None:
            return
        params = {**params, "cursor": cursor}


@pytest.mark.parametrize("sort", ["-eb05", "a", "-ror_lower", "product"])
def test_cursors_carried_into_a_newer_snapshot_are_byte_identical(store, registry, sort):
    """A cursor of generation 1 read by generation 2 finds its place by key."""
    old1, old2, new2 = _old(store, 1), _old(store, 2), _new(store, 2)
    for filters in FILTERS[:6]:
        params = {**filters, "sort": sort, "limit": 7}
        for _ in range(3):
            cursor = orjson.loads(_old_answer(old1, REGULATOR, registry, params))["next_cursor"]
            if cursor is None:
                break
            params = {**params, "cursor": cursor}
            expected = _old_answer(old2, REGULATOR, registry, params)
            assert _new_answer(new2, REGULATOR, registry, params) == expected


@pytest.mark.parametrize("sort", ["-eb05", "a", "product"])
@pytest.mark.parametrize("principal", [REGULATOR, MAH])
def test_csv_is_byte_identical(store, registry, sort, principal):
    old, new = _old(store, 1), _new(store, 1)
    for filters in FILTERS:
        params = {**filters, "sort": sort}
        expected = _old_answer(old, principal, registry, params, format="csv")
        assert _new_answer(new, principal, registry, params, format="csv") == expected


@pytest.mark.parametrize("chunk", [7, 500])
def test_csv_written_in_many_chunks_is_byte_identical(store, registry, monkeypatch, chunk):
    from api.routes import signals as route

    monkeypatch.setattr(route, "EXPORT_CHUNK", chunk)
    old, new = _old(store, 1), _new(store, 1)
    for filters in FILTERS[:5]:
        params = {**filters, "sort": "-ror"}
        expected = _old_answer(old, REGULATOR, registry, params, format="csv")
        assert _new_answer(new, REGULATOR, registry, params, format="csv") == expected
