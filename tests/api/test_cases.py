"""Case series and scopes over the API world: every filter combination, JSON and CSV, for
every role — an MAH sees only cases counted with its products and only level-2A fields, a
hospital only its own cases, a regulator everything (checked against the store)."""

from __future__ import annotations

import csv
import io
import itertools

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pvsignal.rebuild import rebuild
from pvsignal.scopes import load_scope_config
from pvsignal.store import open_store
from tests.api.conftest import (
    OWNED,
    PLANTED,
    World,
    copy_world,
    report,
    seed_world,
    test_settings,
)
from tests.support.postgres import create_database

RESTRICTED = {
    "case_ref",
    "status",
    "received_month",
    "country",
    "region",
    "reporter_qualification",
    "patient",
    "products",
    "reactions",
}
FILTERS = [
    {},
    {"product_id": "A1"},
    {"product_id": "B1"},
    {"pt": "Hepatic failure"},
    {"product_id": "A1", "pt": "Hepatic failure"},
    {"received_from": "2026-03-01", "received_to": "2026-03-31"},
    {"received_from": "2026-04-01"},
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_world(request):
    """The seeded world on SQLite (the module's world) and, seeded the same way, on PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("world")
        return
    url = create_database(request.getfixturevalue("postgres_server"), "cases_api")
    with open_store(url) as store:
        keys = seed_world(store)
    with TestClient(create_app(test_settings(url))) as client:
        yield World(client, keys, url)


def _all_pages(world, who, params):
    found, cursor = [], None
    while True:
        query = {**params, "limit": 50, **({"cursor": cursor} if cursor else {})}
        response = world.get(who, "/v1/cases", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["cases"]
        cursor = page["next_cursor"]
        if cursor is None:
            return page["level"], found


@pytest.mark.parametrize("params", FILTERS)
def test_mah_sees_only_its_products_cases_and_level_2a_fields(backend_world, params):
    world = backend_world
    level, cases = _all_pages(world, "mah_a", params)
    assert level == "restricted"
    _, everything = _all_pages(world, "regulator", params)
    for case in cases:
        assert set(case) == RESTRICTED
        assert set(case["patient"]) == {"age_group", "sex"}
        for reaction in case["reactions"]:
            assert set(reaction) == {"pt", "pt_code", "serious", "seriousness", "outcome"}
    mine = [c for c in everything if _counted_products(world, c) & OWNED["MAH-A"]]
    assert len(cases) == len(mine)
    response = world.get("mah_a", "/v1/cases", params={**params, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(mine)
    assert set(rows[0] if rows else {}) <= {
        "case_ref",
        "received_month",
        "country",
        "region",
        "reporter_qualification",
        "age_group",
        "sex",
        "products",
        "reactions",
    }
    assert "age_years" not in response.text.splitlines()[0]


def _counted_products(world, case):
    with world.runtime.pool.store() as store:
        stored = store.stored_case(case["owner"], case["case_id"])
    return stored.counted_products()


# What each hospital sends in a world of its own: alphamab x Hepatic failure from both (the
# case "SHARED" under the same id: an id is its sender's), and one case each of its own.
HOSPITAL_CASES = {
    "hospital": {
        "H1-A": ("alphamab", ["Hepatic failure"], "2026-03-05"),
        "H1-B": ("betanib", ["Rash"], "2026-04-02"),
        "SHARED": ("alphamab", ["Hepatic failure", "Nausea"], "2026-03-20"),
    },
    "hospital2": {
        "H2-A": ("alphamab", ["Hepatic failure"], "2026-03-07"),
        "SHARED": ("gammadrug", ["Headache"], "2026-04-11"),
    },
}
ORG = {"hospital": "H-1", "hospital2": "H-2"}
# Filter -> the case ids it selects of each hospital's cases above.
HOSPITAL_FILTERS = [
    ({}, {"hospital": {"H1-A", "H1-B", "SHARED"}, "hospital2": {"H2-A", "SHARED"}}),
    ({"product_id": "A1"}, {"hospital": {"H1-A", "SHARED"}, "hospital2": {"H2-A"}}),
    ({"pt": "Hepatic failure"}, {"hospital": {"H1-A", "SHARED"}, "hospital2": {"H2-A"}}),
    ({"product_id": "A1", "pt": "Nausea"}, {"hospital": {"SHARED"}, "hospital2": set()}),
    ({"received_from": "2026-04-01"}, {"hospital": {"H1-B"}, "hospital2": {"SHARED"}}),
    ({"product_id": "C1"}, {"hospital": set(), "hospital2": {"SHARED"}}),
]


@pytest.fixture
def hospitals(fresh_world):
    """The API world after both hospitals posted their cases (none of the seed's is theirs)."""
    for who, cases in HOSPITAL_CASES.items():
        lines = [
            report(case_id, name, pts, received=received)
            for case_id, (name, pts, received) in cases.items()
        ]
        response = fresh_world.client.post(
            "/v1/reports",
            content=b"\n".join(lines),
            headers={**fresh_world.headers(who), "content-type": "application/x-ndjson"},
        )
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [(r["outcome"], r["owner"]) for r in results] == [("new", ORG[who])] * len(lines)
    return fresh_world


def test_hospital_sees_exactly_its_own_cases(hospitals):
    for (params, expected), who in itertools.product(HOSPITAL_FILTERS, ORG):
        level, cases = _all_pages(hospitals, who, params)
        assert level == "full"
        assert {(c["owner"], c["case_id"]) for c in cases} == {
            (ORG[who], case_id) for case_id in expected[who]
        }, (who, params)
        assert len(cases) == len(expected[who])
        response = hospitals.get(who, "/v1/cases", params={**params, "format": "csv"})
        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert sorted((r["owner"], r["case_id"]) for r in rows) == sorted(
            (ORG[who], case_id) for case_id in expected[who]
        ), (who, params)
    # Each hospital's own rows carry what it sent.
    _, mine = _all_pages(hospitals, "hospital2", {"product_id": "C1"})
    assert [r["pt"] for r in mine[0]["report"]["reactions"]] == ["Headache"]
    assert mine[0]["received"] == "2026-04-11"


def test_a_hospital_reads_its_own_case_and_not_the_others(hospitals):
    for who, other in (("hospital", "hospital2"), ("hospital2", "hospital")):
        for case_id in HOSPITAL_CASES[who]:
            own = hospitals.get(who, f"/v1/cases/{ORG[who]}/{case_id}")
            assert own.status_code == 200
            assert own.json()["case"]["owner"] == ORG[who]
            assert own.json()["case"]["case_id"] == case_id
        for case_id in HOSPITAL_CASES[other]:
            # The same id under its own organisation ("SHARED") is no way into the other's.
            answer = hospitals.get(who, f"/v1/cases/{ORG[other]}/{case_id}")
            assert answer.status_code == 404, (who, case_id)
    # The regulator reads both, and each "SHARED" is its sender's content.
    for who, name in (("hospital", "Nausea"), ("hospital2", "Headache")):
        case = hospitals.get("regulator", f"/v1/cases/{ORG[who]}/SHARED").json()["case"]
        assert name in {r["pt"] for r in case["report"]["reactions"]}
    # The seed's cases are nobody's of these two: they see none of them.
    _, seen = _all_pages(hospitals, "hospital", {})
    _, everything = _all_pages(hospitals, "regulator", {})
    assert len(everything) > len(seen) + len(HOSPITAL_CASES["hospital2"])


def test_regulator_listing_counts_the_pair(backend_world):
    world = backend_world
    _, cases = _all_pages(world, "regulator", {"product_id": "A1", "pt": PLANTED["A1"]})
    detail = world.get("regulator", f"/v1/signals/all/A1/{PLANTED['A1']}").json()
    assert len(cases) == detail["signal"]["a"]


def test_case_detail_masks_and_hides(backend_world):
    world = backend_world
    _, cases = _all_pages(world, "regulator", {"product_id": "B1"})
    case = cases[0]
    path = f"/v1/cases/{case['owner']}/{case['case_id']}"
    full = world.get("regulator", path).json()
    assert full["level"] == "full" and full["case"]["versions"][0]["outcome"] == "new"
    assert world.get("mah_a", path).status_code == 404  # another MAH's product: as absent
    restricted = world.get("mah_b", path).json()["case"]
    assert set(restricted) == RESTRICTED | {"versions"}
    assert world.get("mah_b", "/v1/cases/nobody/none").status_code == 404


def test_scopes_and_unknown_scope(world):
    scopes = world.get("regulator", "/v1/scopes").json()["scopes"]
    assert scopes[0]["name"] == "all" and scopes[0]["reports"] > 0
    mine = world.get("mah_a", "/v1/scopes").json()["scopes"][0]
    assert 0 < mine["pairs"] < scopes[0]["pairs"]
    assert world.get("regulator", "/v1/cases?scope=nowhere").status_code == 404
    assert world.get("regulator", "/v1/signals?scope=nowhere").status_code == 404


def test_trend_tenancy_and_csv(world):
    path = f"/v1/signals/all/A1/{PLANTED['A1']}/trend"
    assert world.get("mah_b", path).status_code == 404
    assert world.get("regulator", "/v1/signals/all/ZZ/Nothing/trend").status_code == 404
    trend = world.get("mah_a", path).json()
    assert trend["points"][-1]["total"]["a"] == sum(p["new"]["a"] for p in trend["points"])
    text = world.get("mah_a", path, params={"format": "csv", "period": "year"}).text
    assert text.splitlines()[0].startswith("period,new_a,")


def test_every_case_level_read_leaves_one_audit_row(world):
    _, cases = _all_pages(world, "regulator", {"product_id": "B1"})
    object_id = f"{cases[0]['owner']}/{cases[0]['case_id']}"

    def reads() -> list[dict]:
        params = {"object_type": "case", "object_id": object_id}
        return world.get("admin", "/v1/audit", params=params).json()["entries"]

    before = len(reads())
    assert world.get("mah_b", f"/v1/cases/{object_id}").status_code == 200
    after = reads()
    assert len(after) == before + 1
    assert after[-1]["action"] == "case.read" and after[-1]["org"] == "MAH-B"


def test_a_configured_scope_without_counts_answers_empty_pages(seeded, tmp_path):
    """A scope in the configuration that no report falls in: empty pages (JSON and CSV) for
    signals and cases, listed with zero sizes; a scope not configured stays 404."""
    config = tmp_path / "scopes.yaml"
    config.write_text(
        "scopes:\n"
        "  - {name: hainan, filter: {regions: [CN-HI]}}\n"
        "  - {name: tibet-pilot, filter: {regions: [CN-XZ]}}\n"
    )
    url = copy_world(seeded, tmp_path / "world.db")
    with open_store(url) as store:
        rebuild(store, load_scope_config(config))
    settings = test_settings(url, scope_config=config)
    with TestClient(create_app(settings)) as client:
        world = World(client, seeded.keys, url)
        sizes = {s["name"]: s for s in world.get("regulator", "/v1/scopes").json()["scopes"]}
        assert list(sizes) == ["all", "hainan", "tibet-pilot"]
        assert (sizes["tibet-pilot"]["reports"], sizes["tibet-pilot"]["pairs"]) == (0, 0)
        assert sizes["hainan"]["reports"] == sizes["all"]["reports"] > 0  # all sent from CN-HI
        for who in ("regulator", "mah_a"):
            signals = world.get(who, "/v1/signals", params={"scope": "tibet-pilot"})
            assert signals.status_code == 200, signals.text
            page = signals.json()
            assert (page["total"], page["signals"], page["next_cursor"]) == (0, [], None)
            text = world.get(
                who, "/v1/signals", params={"scope": "tibet-pilot", "format": "csv"}
            ).text
            assert len(text.splitlines()) == 1 and text.startswith("product,")
        for who in ("regulator", "mah_a", "hospital"):
            for params in ({}, {"product_id": "A1", "pt": PLANTED["A1"]}):
                cases = world.get(who, "/v1/cases", params={"scope": "tibet-pilot", **params})
                assert cases.status_code == 200, cases.text
                assert (cases.json()["cases"], cases.json()["next_cursor"]) == ([], None)
            text = world.get(
                who, "/v1/cases", params={"scope": "tibet-pilot", "format": "csv"}
            ).text
            assert len(text.splitlines()) == 1
        # The scope that counts answers as "all" does: every report was sent from CN-HI.
        hainan = world.get("regulator", "/v1/signals", params={"scope": "hainan"}).json()
        everything = world.get("regulator", "/v1/signals").json()
        assert hainan["total"] == everything["total"] > 0
        for path in ("/v1/signals", "/v1/cases"):
            missing = world.get("regulator", path, params={"scope": "nowhere"})
            assert missing.status_code == 404 and "nowhere" in missing.text
