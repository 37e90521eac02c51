"""Migration 8 on a store made before it, on SQLite and PostgreSQL: the period counts it
backfills from the stored reports equal those a fresh ingest of the same stream keeps, and
`pvsignal rebuild` afterwards leaves them equal too.

The old store is made by the real engine: a simulated stream (follow-ups, nullifications,
duplicates, re-sends, out-of-order versions) and a few reports without a received date are
ingested into a current store, whose period counts are the reference; then everything
migrations 8 and 9 added is rolled back (their tables, the ``received`` column, the month in
each stored contribution, their schema_version rows), and the store is opened again.
"""

from __future__ import annotations

import datetime as dt
import itertools

import orjson
import pytest

from pvsignal.cli import main
from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.store import open_store
from pvsignal.store.schema import MIGRATIONS
from pvsignal.store.sql import SqlStore
from tests.support.contributions import drop_contribution_fields
from tests.support.postgres import create_database

PERIOD_TABLES = {
    "pair_period_counts": "scope, product, event, period, a",
    "product_period_counts": "scope, product, stratum, period, n",
    "event_period_counts": "scope, event, stratum, period, n",
    "total_period_counts": "scope, stratum, period, n",
}
# Dropped in reverse order of creation: what migrations 8 and later made (rolled back with
# them, and made again when the store is opened).
ADDED_BY_8_AND_9 = (
    "sequential_tests",  # active monitoring's migration
    "exposures",
    "event_labels",  # terminology's migration
    "meddra_releases",
    "audit_head",
    "audit_log",
    "reviews",
    "case_versions",
    *PERIOD_TABLES,
)
UNDATED = [
    {"case_id": f"U-{i}", "report_id": f"U-{i}-1", "products": [{"name": "undated-x"}]}
    | {"reactions": [{"pt": pt} for pt in pts]}
    for i, pts in enumerate([["Rash"], ["Rash", "Headache"], ["Headache"]])
]
_names = itertools.count()


@pytest.fixture(scope="module")
def simulation():
    config = SimulationConfig(
        reports=4000, seed=3, start=dt.date(2024, 1, 1), end=dt.date(2025, 6, 30)
    )
    return simulate(config)


def _url(kind: str, postgres_server: str | None, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/store-{next(_names)}.db"
    return create_database(postgres_server, f"backfill_{next(_names)}")


def _ingest(store: SqlStore, simulation) -> None:
    store.save_products(simulation.products)
    ingestor = Ingestor(store, ScopeConfig())
    lines = [*simulation.lines(), *(orjson.dumps(u) for u in UNDATED)]
    for start in range(0, len(lines), 1000):
        chunk = enumerate(lines[start : start + 1000], start)
        ingestor.apply([RawRecord(f"sim:{i}", line) for i, line in chunk])


def _period_counts(store: SqlStore) -> dict[str, set[tuple]]:
    """Every non-zero row of the four period tables."""
    found = {}
    for table, columns in PERIOD_TABLES.items():
        count = columns.rsplit(", ", 1)[1]
        rows = store._query(f"SELECT {columns} FROM {table} WHERE {count} <> 0")
        found[table] = {(*row[:-1], int(row[-1])) for row in rows}
    return found


def _undo_migration_12(store: SqlStore, cursor) -> None:
    store._execute(cursor, "DROP TABLE detection_leases")
    for table in ("pair_counts", "product_counts", "event_counts", "scope_totals"):
        if table != "scope_totals":
            store._execute(cursor, f"DROP INDEX {table}_seq")
        store._execute(cursor, f"ALTER TABLE {table} DROP COLUMN seq")


def _undo_migration_13(store: SqlStore, cursor) -> None:
    store._execute(cursor, "DROP TABLE ended_sessions")
    store._execute(cursor, "DROP INDEX alerts_product")


def _roll_back_to_version_7(store: SqlStore) -> None:
    """Undo migrations 14 down to 8 on a store the engine wrote, as if it was made before them
    (migration 14 rewrites every contribution again when the store is opened)."""
    with store.write_transaction() as cursor:
        store._execute(cursor, "DROP TABLE place_counts")
        _undo_migration_13(store, cursor)
        _undo_migration_12(store, cursor)
        for table in ADDED_BY_8_AND_9:
            store._execute(cursor, f"DROP TABLE {table}")
        store._execute(cursor, "ALTER TABLE cases DROP COLUMN received")
        drop_contribution_fields(store, cursor, "p")  # stored since migration 8
        store._execute(cursor, "DELETE FROM schema_version WHERE version >= 8")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_8_backfills_the_counts_a_fresh_ingest_keeps(kind, simulation, tmp_path, request):
    postgres = request.getfixturevalue("postgres_server") if kind == "postgresql" else None
    url = _url(kind, postgres, tmp_path)
    with open_store(url) as store:
        _ingest(store, simulation)
        fresh = _period_counts(store)
        received = dict(
            ((o, c), r) for o, c, r in store._query("SELECT owner, case_id, received FROM cases")
        )
        nullified = store._query("SELECT COUNT(*) FROM cases WHERE status <> 'active'")[0][0]
        _roll_back_to_version_7(store)
    # The stream withdraws cases, and months are many: the comparison has something to find.
    assert nullified > 0
    assert len({row[3] for row in fresh["pair_period_counts"]}) == 18 + 1  # 18 months, unknown
    assert ("all", "unregistered:undated-x", "Rash", "unknown", 2) in fresh["pair_period_counts"]

    with open_store(url) as store:
        assert store._query("SELECT MAX(version) FROM schema_version")[0][0] == len(MIGRATIONS)
        assert _period_counts(store) == fresh
        backfilled = store._query("SELECT owner, case_id, received FROM cases")
        assert {(o, c): r for o, c, r in backfilled} == received
        assert store.case_versions(*next(iter(received))) == []  # history starts at 8
    assert main(["rebuild", "--store", url]) == 0
    with open_store(url) as store:
        assert _period_counts(store) == fresh
