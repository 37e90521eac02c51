"""The place counts behind the dashboard's overview (migration 14), on SQLite and PostgreSQL:
kept by every batch (a follow-up moves its case to its new place, a nullification takes it out),
backfilled by the migration on a store made before it, and left equal by `pvsignal rebuild`;
each time equal to a count made here straight from the cases table."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter

import orjson
import pytest

from pvsignal.case_access import CaseAccess, Level, case_breakdown
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

_names = itertools.count()
_lines = itertools.count()


def _report(case_id: str, version: int, **fields) -> bytes:
    return orjson.dumps(
        {
            "case_id": case_id,
            "report_id": f"{case_id}-{version}",
            "version": version,
            "received": "2025-05-03",
            "products": [{"name": "moved-x"}, {"name": "moved-y"}],
            "reactions": [{"pt": "Rash"}],
            **fields,
        }
    )


# A case reported by H1 from Hainan, then followed up by H1 (spaces around its id, which
# validation drops) from Guangdong: one case, at its latest place; one nullified
# after it counted; one stating no place.
HAINAN = {"region": "CN-46", "sender": {"type": "hospital", "institution_id": "H1"}}
GUANGDONG = {"region": "CN-44", "sender": {"type": "hospital", "institution_id": " H1 "}}
BATCHES = (
    [_report("MOVED", 1, **HAINAN), _report("GONE", 1, **HAINAN), _report("NOWHERE", 1)],
    [_report("MOVED", 2, **GUANGDONG), _report("GONE", 2, nullified=True, **HAINAN)],
)


@pytest.fixture(scope="module")
def simulation():
    config = SimulationConfig(
        reports=3000, seed=5, start=dt.date(2024, 1, 1), end=dt.date(2025, 6, 30)
    )
    return simulate(config)


def _url(kind: str, request, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/store-{next(_names)}.db"
    server = request.getfixturevalue("postgres_server")
    return create_database(server, f"places_{next(_names)}")


def _ingest(store: SqlStore, lines: list[bytes]) -> None:
    ingestor = Ingestor(store, ScopeConfig())
    ingestor.apply([RawRecord(f"t:{next(_lines)}", line) for line in lines])


def _stored(store: SqlStore) -> Counter:
    rows = store._query(
        "SELECT scope, period, region, institution, products, n FROM place_counts WHERE n <> 0"
    )
    return Counter({tuple(row[:-1]): int(row[-1]) for row in rows})


def _recounted(store: SqlStore) -> Counter:
    """Per scope, month, province, institution and counted products: the active cases, read
    from the cases table (stored report and contribution) without the engine's code."""
    found: Counter = Counter()
    rows = store._query(
        "SELECT contribution, report FROM cases WHERE status = 'active' "
        "AND contribution IS NOT NULL"
    )
    for contribution, report in rows:
        counted, document = orjson.loads(contribution), orjson.loads(report)
        region = "-".join(document["region"].split("-")[:2]) if document.get("region") else ""
        institution = ((document.get("sender") or {}).get("institution_id") or "").strip()
        for scope, products, _ in counted["c"]:
            key = (scope, counted["p"], region, institution, orjson.dumps(sorted(products)))
            found[(*key[:4], key[4].decode())] += 1
    return found


def _roll_back_to_version_13(store: SqlStore) -> None:
    """Undo migration 14 on a store the engine wrote, as if it was made before it."""
    with store.write_transaction() as cursor:
        store._execute(cursor, "DROP TABLE place_counts")
        drop_contribution_fields(store, cursor, "r", "i")  # stored since migration 14
        store._execute(cursor, "DELETE FROM schema_version WHERE version >= 14")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_batches_keep_the_place_counts_migration_14_backfills_them(
    kind, simulation, tmp_path, request
):
    url = _url(kind, request, tmp_path)
    with open_store(url) as store:
        store.save_products(simulation.products)
        lines = list(simulation.lines())
        for start in range(0, len(lines), 1000):
            _ingest(store, lines[start : start + 1000])
        for batch in BATCHES:
            _ingest(store, batch)
        fresh = _stored(store)
        assert fresh == _recounted(store)
        moved = [(k, n) for k, n in fresh.items() if k[3] == "H1"]
        assert moved == [
            (
                (
                    "all",
                    "2025-05",
                    "CN-44",
                    "H1",
                    '["unregistered:moved-x","unregistered:moved-y"]',
                ),
                1,
            )
        ]  # MOVED at its new place only, counted once with both its products; GONE withdrawn
        assert (
            fresh["all", "2025-05", "", "", '["unregistered:moved-x","unregistered:moved-y"]'] == 1
        )
        assert len({k[2] for k in fresh}) > 5 and len({k[3] for k in fresh}) > 5
        _roll_back_to_version_13(store)
    with open_store(url) as store:
        assert (
            store._query("SELECT MAX(version) FROM schema_version")[0][0] == len(MIGRATIONS) == 14
        )
        assert _stored(store) == fresh
    assert main(["rebuild", "--store", url]) == 0
    with open_store(url) as store:
        assert _stored(store) == fresh


def test_the_breakdown_shows_each_reader_its_listing(tmp_path):
    """A regulator: every case, by institution too. An MAH: the cases counted with one of its
    products, under its own products' pathways, and no institution. A hospital: refused."""
    with open_store(f"sqlite:///{tmp_path}/store.db") as store:
        _ingest(store, [*BATCHES[0], _report("OTHER", 1, products=[{"name": "moved-y"}])])
        pathway_of = {"unregistered:moved-x": "lecheng_special_import"}
        everyone = case_breakdown(store, CaseAccess(Level.full, b"k"), "all", pathway_of)
        assert everyone.total == {"2025-05": 4}
        assert everyone.by_pathway == {
            "lecheng_special_import": {"2025-05": 3},
            "unregistered": {"2025-05": 4},
        }
        assert everyone.by_region == {"CN-46": {"2025-05": 2}, "unknown": {"2025-05": 2}}
        assert everyone.by_institution == {"H1": {"2025-05": 2}, "unknown": {"2025-05": 2}}
        mah = CaseAccess(Level.restricted, b"k", products=frozenset({"unregistered:moved-x"}))
        own = case_breakdown(store, mah, "all", pathway_of)
        assert own.total == {"2025-05": 3}
        assert own.by_pathway == {"lecheng_special_import": {"2025-05": 3}}
        assert own.by_region == {"CN-46": {"2025-05": 2}, "unknown": {"2025-05": 1}}
        assert own.by_institution is None
        none = CaseAccess(Level.restricted, b"k", products=frozenset({"P-else"}))
        assert case_breakdown(store, none, "all", pathway_of).total == {}
        with pytest.raises(ValueError, match="not kept per owner"):
            case_breakdown(store, CaseAccess(Level.full, b"k", owner="H1"), "all", pathway_of)
