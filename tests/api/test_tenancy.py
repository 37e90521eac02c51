"""Isolation, endpoint by endpoint and filter by filter: an MAH never receives a row, an alert,
a history point or a count of another MAH's product (nor of an unregistered one); a hospital
reads no signal."""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any

import pytest

from tests.api.conftest import OWNED, PLANTED, UNREGISTERED, World

EVERY_PRODUCT = {"A1", "A2", "B1", "B2", "C1", UNREGISTERED}
MAHS = {"mah_a": "MAH-A", "mah_b": "MAH-B"}


def products_in(document: Any) -> set[str]:
    """Every product id a response mentions, wherever it sits."""
    found: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            if key in ("product_id", "product") and isinstance(value, str):
                found.add(value)
            else:
                found |= products_in(value)
    elif isinstance(document, list):
        for item in document:
            found |= products_in(item)
    return found


def test_the_world_has_signals_for_every_mah_and_the_unregistered_product(world: World):
    rows = world.get("regulator", "/v1/signals", params={"status": "open", "limit": 1000}).json()
    assert {r["product_id"] for r in rows["signals"]} >= {"A1", "A2", "B1", "B2", UNREGISTERED}


SIGNAL_FILTERS = {
    "product_id": [None, "A1", "B1", UNREGISTERED, "C1"],
    "mah_id": [None, "MAH-A", "MAH-B"],
    "pt": [None, PLANTED["A1"], PLANTED["B1"], "Headache"],
    "status": [None, "open", "new"],
    "measure": [None, "ebgm", "prr"],
}


def _combinations(filters: dict[str, list[Any]]):
    names = list(filters)
    for values in itertools.product(*(filters[n] for n in names)):
        yield {n: v for n, v in zip(names, values, strict=True) if v is not None}


@pytest.mark.parametrize("who", sorted(MAHS))
def test_signal_lists_show_only_own_products_under_every_filter(world: World, who: str):
    own = OWNED[MAHS[who]]
    for params in _combinations(SIGNAL_FILTERS):
        response = world.get(who, "/v1/signals", params={**params, "limit": 1000})
        assert response.status_code == 200, (params, response.text)
        document = response.json()
        assert products_in(document["signals"]) <= own, params
        assert document["total"] == len(document["signals"]), params
        if params.get("product_id") not in (None, *own) or params.get("mah_id") not in (
            None,
            MAHS[who],
        ):
            assert document["total"] == 0, params


@pytest.mark.parametrize("who", sorted(MAHS))
def test_counts_match_the_regulators_view_of_the_same_products(world: World, who: str):
    own = OWNED[MAHS[who]]
    mine = world.get(who, "/v1/signals", params={"limit": 1000}).json()
    everything = world.get("regulator", "/v1/signals", params={"limit": 1000}).json()
    theirs = [r for r in everything["signals"] if r["product_id"] in own]
    assert mine["total"] == len(theirs) > 0
    assert mine["signals"] == theirs  # same rows, same order


@pytest.mark.parametrize("sort", ["-eb05", "a", "product", "-prr", "ic025"])
def test_pagination_never_leaks_across_pages(world: World, sort: str):
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "sort": sort, **({"cursor": cursor} if cursor else {})}
        page = world.get("mah_a", "/v1/signals", params=params).json()
        seen += [(r["product_id"], r["pt"]) for r in page["signals"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert {p for p, _ in seen} <= OWNED["MAH-A"]
    assert len(seen) == len(set(seen)) == page["total"]


@pytest.mark.parametrize("who", sorted(MAHS))
def test_csv_exports_only_own_products(world: World, who: str):
    for params in ({}, {"product_id": "B1"}, {"mah_id": "MAH-B"}, {"status": "open"}):
        response = world.get(who, "/v1/signals", params={**params, "format": "csv"})
        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert {r["product"] for r in rows} <= OWNED[MAHS[who]], params


def test_detail_and_history_of_another_tenants_pair_are_404(world: World):
    for product, pt in PLANTED.items():
        product_id = UNREGISTERED if product == "mysterium" else product
        path = f"/v1/signals/all/{product_id}/{pt}"
        regulator = world.get("regulator", path)
        assert regulator.status_code == 200
        assert regulator.json()["history"], "the regulator sees the trend"
        for who, mah in MAHS.items():
            response = world.get(who, path)
            if product_id in OWNED[mah]:
                assert response.status_code == 200
                assert products_in(response.json()) <= OWNED[mah]
            else:
                assert response.status_code == 404, (who, path)
                assert "history" not in response.json()


def test_a_pair_that_does_not_exist_answers_like_a_foreign_one(world: World):
    missing = world.get("mah_a", "/v1/signals/all/B1/Never reported")
    foreign = world.get("mah_a", "/v1/signals/all/B1/Interstitial lung disease")
    assert missing.status_code == foreign.status_code == 404


ALERT_FILTERS = {
    "product_id": [None, "A1", "B1", UNREGISTERED],
    "pt": [None, PLANTED["A1"], PLANTED["B1"]],
    "measure": [None, "prr", "ebgm"],
    "transition": [None, "new", "closed"],
    "since": [None, "2020-01-01T00:00:00Z"],
    "scope": [None, "all"],
}


@pytest.mark.parametrize("who", sorted(MAHS))
def test_alert_lists_show_only_own_products_under_every_filter(world: World, who: str):
    own = OWNED[MAHS[who]]
    assert world.get(who, "/v1/alerts").json()["alerts"], "each MAH has alerts of its own"
    for params in _combinations(ALERT_FILTERS):
        response = world.get(who, "/v1/alerts", params=params)
        assert response.status_code == 200
        alerts = response.json()["alerts"]
        assert products_in(alerts) <= own, params
        assert {a["mah_id"] for a in alerts} <= {MAHS[who]}


def test_alert_pages_skip_other_tenants_without_revealing_them(world: World):
    after, seen = 0, []
    while True:
        page = world.get("mah_b", "/v1/alerts", params={"after": after, "limit": 2}).json()
        seen += page["alerts"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen and products_in(seen) <= OWNED["MAH-B"]


def test_products_are_listed_and_read_per_tenant(world: World):
    for who, mah in MAHS.items():
        listed = world.get(who, "/v1/products").json()["products"]
        assert {p["product_id"] for p in listed} == OWNED[mah]
        for product in EVERY_PRODUCT:
            response = world.get(who, f"/v1/products/{product}")
            assert response.status_code == (200 if product in OWNED[mah] else 404), product
    everything = world.get("regulator", "/v1/products").json()["products"]
    assert {p["product_id"] for p in everything} == EVERY_PRODUCT - {UNREGISTERED}


def test_fits_are_scope_aggregates_that_name_no_product(world: World):
    response = world.get("mah_a", "/v1/fits")
    assert response.status_code == 200
    text = response.text
    for product in EVERY_PRODUCT:
        assert f'"{product}"' not in text
    assert response.json()["fits"][0]["theta"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/signals",
        "/v1/signals?format=csv",
        "/v1/signals/all/A1/Hepatic failure",
        "/v1/alerts",
        "/v1/alerts/stream?max_events=1",
        "/v1/products",
        "/v1/products/A1",
        "/v1/fits",
        "/v1/subscriptions",
        "/v1/keys",
    ],
)
def test_hospitals_read_no_signal(world: World, path: str):
    response = world.get("hospital", path)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


def test_hospitals_read_only_their_own_receipts(world: World):
    line = b'{"case_id": "TEN-1", "report_id": "TEN-1", "products": [{"name": "alphamab"}], '
    line += b'"reactions": [{"pt": "Headache"}]}\n'
    posted = world.client.post(
        "/v1/reports",
        content=line,
        headers={**world.headers("hospital"), "content-type": "application/x-ndjson"},
    ).json()
    mine = world.get("hospital", "/v1/receipts").json()["receipts"]
    assert [r["receipt_id"] for r in mine] == [posted["receipt_id"]]
    assert world.get("hospital2", "/v1/receipts").json()["receipts"] == []
    assert world.get("hospital2", f"/v1/receipts/{posted['receipt_id']}").status_code == 404
    assert world.get("hospital", f"/v1/receipts/{posted['receipt_id']}").status_code == 200
    assert world.get("mah_a", "/v1/receipts").json()["receipts"] == []
    assert len(world.get("regulator", "/v1/receipts").json()["receipts"]) >= 1
