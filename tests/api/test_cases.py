"""Case series and scopes over the API world: every filter combination, JSON and CSV, for
every role — an MAH sees only cases counted with its products and only level-2A fields, a
hospital only its own cases, a regulator everything (checked against the store)."""

from __future__ import annotations

import csv
import io
import itertools

import pytest

from tests.api.conftest import OWNED, PLANTED

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
def test_mah_sees_only_its_products_cases_and_level_2a_fields(world, params):
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


@pytest.mark.parametrize(
    ("params", "who"), list(itertools.product(FILTERS[:4], ["hospital", "hospital2"]))
)
def test_hospital_sees_only_its_own_cases(world, params, who):
    level, cases = _all_pages(world, who, params)
    assert level == "full"
    org = {"hospital": "H-1", "hospital2": "H-2"}[who]
    assert all(case["owner"] == org for case in cases)
    response = world.get(who, "/v1/cases", params={**params, "format": "csv"})
    assert all(row["owner"] == org for row in csv.DictReader(io.StringIO(response.text)))


def test_regulator_listing_counts_the_pair(world):
    _, cases = _all_pages(world, "regulator", {"product_id": "A1", "pt": PLANTED["A1"]})
    detail = world.get("regulator", f"/v1/signals/all/A1/{PLANTED['A1']}").json()
    assert len(cases) == detail["signal"]["a"]


def test_case_detail_masks_and_hides(world):
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
