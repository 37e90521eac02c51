"""GET /v1/signals: filters, sorting, cursors, the CSV export, one pair's detail; the registry."""

from __future__ import annotations

import io
import math

import pytest

from api.query import SORTABLE, CursorSigner
from detectors.mgps import Hyperparameters
from pvsignal.export import export_table, write_csv
from pvsignal.settings import DEVELOPMENT_SECRET
from pvsignal.signals import scope_statistics
from pvsignal.store import open_store
from tests.api.conftest import PLANTED, World, report


def _all_pages(world: World, who: str, **params) -> list[dict]:
    rows, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = world.get(who, "/v1/signals", params=query).json()
        rows += page["signals"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def _value(row: dict, field: str) -> float:
    value = row[field] if field in row else row["statistics"][field]
    return math.nan if value is None else value


@pytest.mark.parametrize("sort", [s for s in SORTABLE if s != "product"])
def test_pages_follow_the_sort_with_nan_last(world: World, sort: str):
    for direction in ("", "-"):
        rows = _all_pages(world, "regulator", sort=direction + sort, limit=7)
        values = [_value(r, sort) for r in rows]
        finite = [v for v in values if not math.isnan(v)]
        assert values[: len(finite)] == finite, "NaN rows come last"
        assert finite == sorted(finite, reverse=direction == "-")
        keys = [(r["product_id"], r["pt"]) for r in rows]
        assert len(keys) == len(set(keys)) == world.get("regulator", "/v1/signals").json()["total"]


def test_the_default_order_puts_the_strongest_mgps_signals_first(world: World):
    rows = world.get("regulator", "/v1/signals", params={"limit": 5}).json()["signals"]
    assert {(r["product_id"], r["pt"]) for r in rows} & {("A1", PLANTED["A1"])}


def test_filters(world: World):
    def listed(**params):
        return world.get("regulator", "/v1/signals", params={**params, "limit": 1000}).json()

    assert {r["product"]["kind"] for r in listed(kind="device")["signals"]} == {"device"}
    assert {r["product_id"] for r in listed(pathway="lecheng_special_import")["signals"]} == {"A1"}
    assert {r["pt"] for r in listed(pt=["Rash", "Cough"])["signals"]} == {"Rash", "Cough"}
    assert min(r["a"] for r in listed(min_a=5)["signals"]) >= 5
    flagged = listed(measure="ebgm")["signals"]
    assert flagged and all(r["signals"]["ebgm"]["flagged"] for r in flagged)
    opened = listed(measure="prr", status="open")["signals"]
    assert opened and all(r["signals"]["prr"]["status"] != "closed" for r in opened)
    assert listed(since="2999-01-01T00:00:00Z")["total"] == 0
    assert listed(since="2000-01-01T00:00:00Z")["total"] >= listed(status="open")["total"] > 0
    both = listed(product_id=["A1", "B1"], pt=[PLANTED["A1"], PLANTED["B1"]])["signals"]
    pairs = {(r["product_id"], r["pt"]) for r in both}
    assert {("A1", PLANTED["A1"]), ("B1", PLANTED["B1"])} <= pairs
    assert {p for p, _ in pairs} == {"A1", "B1"} and {e for _, e in pairs} <= {
        PLANTED["A1"],
        PLANTED["B1"],
    }


def test_bad_queries_are_422_naming_the_parameter(world: World):
    for params, field in (
        ({"sort": "-product"}, "query.sort"),
        ({"sort": "volume"}, "query.sort"),
        ({"limit": 0}, "query.limit"),
        ({"cursor": "forged.cursor"}, "query.cursor"),
        ({"measure": "xyz"}, "query.measure"),
        ({"since": "yesterday"}, "query.since"),
        ({"pathway": "lecheng"}, "query.pathway"),
        ({"kind": "pill"}, "query.kind"),
    ):
        response = world.get("regulator", "/v1/signals", params=params)
        assert response.status_code == 422, params
        [error] = response.json()["errors"]
        assert error["field"] == field
        assert error["value"] in {str(v) for v in params.values()}


def test_undeclared_and_repeated_query_parameters_are_422(world: World):
    misspelt = world.get("regulator", "/v1/signals", params={"pathways": "innovative"})
    assert misspelt.status_code == 422
    assert misspelt.json()["errors"] == [
        {"field": "query.pathways", "reason": "unknown parameter", "value": "innovative"}
    ]
    twice = world.get("regulator", "/v1/signals", params={"scope": ["all", "nowhere"]})
    assert twice.status_code == 422
    assert twice.json()["errors"][0]["field"] == "query.scope"
    several = world.get("regulator", "/v1/signals", params={"pt": ["Rash", "Cough"]})
    assert several.status_code == 200  # pt takes several values


def test_a_signed_cursor_the_server_never_wrote_is_422(world: World):
    """Signed with the public development secret, so the signature holds; the content is junk."""
    forger = CursorSigner(DEVELOPMENT_SECRET.encode())
    issued = world.get("regulator", "/v1/signals", params={"limit": 2}).json()["next_cursor"]
    genuine = forger.decode(issued)
    assert genuine["s"] == "-eb05", "the test forges with the secret the world runs on"
    for forged in (
        {"s": "-eb05"},
        {**genuine, "k": "A1"},
        {**genuine, "k": [False, "not-a-float", "A1", "x"]},
        {**genuine, "k": [False, "0x1p0", 1, 2]},
        {**genuine, "k": [False, "0x1p0"]},
        {**genuine, "p": -3},
        {**genuine, "p": 10**12},
        {**genuine, "p": "2"},
        {**genuine, "g": "x", "p": None},
        {**genuine, "scope": ["all"]},
    ):
        response = world.get("regulator", "/v1/signals", params={"cursor": forger.encode(forged)})
        assert response.status_code == 422, (forged, response.text)
        assert response.json()["errors"][0]["field"] == "query.cursor"


def test_a_cursor_belongs_to_its_sort(world: World):
    cursor = world.get("regulator", "/v1/signals", params={"limit": 2}).json()["next_cursor"]
    other = world.get("regulator", "/v1/signals", params={"sort": "a", "cursor": cursor})
    assert other.status_code == 422
    assert world.get("regulator", "/v1/signals", params={"scope": "nope"}).status_code == 404


def test_a_cursor_survives_new_counts(fresh_world: World):
    world = fresh_world
    first = world.get("regulator", "/v1/signals", params={"sort": "a", "limit": 10}).json()
    last = first["signals"][-1]
    lines = [report(f"LATE-{i}", "gammadrug", ["Headache"]) for i in range(3)]
    world.client.post(
        "/v1/reports",
        content=b"\n".join(lines),
        headers={**world.headers("hospital"), "content-type": "application/x-ndjson"},
    )
    world.settle()
    rest = _all_pages(world, "regulator", sort="a", limit=50, cursor=first["next_cursor"])
    assert rest, "the listing continues"
    assert all(
        (r["a"], r["product_id"], r["pt"]) > (last["a"], last["product_id"], last["pt"])
        for r in rest
    )


def test_csv_is_the_export_of_pvsignal_analyze(world: World):
    response = world.get("regulator", "/v1/signals", params={"format": "csv", "sort": "product"})
    assert response.headers["content-type"].startswith("text/csv")
    store = open_store(world.url)
    try:
        theta = Hyperparameters(**store.fits("all")[-1]["theta"])
        expected = scope_statistics(store, "all", theta=theta, record_fit=False)
    finally:
        store.close()
    table = export_table(expected.pairs.product, expected.pairs.event, expected.statistics)
    sink = io.BytesIO()
    write_csv(table, sink)
    assert response.content == sink.getvalue()


def test_one_pair_in_detail(world: World):
    detail = world.get("regulator", f"/v1/signals/all/A1/{PLANTED['A1']}").json()
    assert detail["signal"]["a"] >= 8
    assert detail["states"]["ebgm"]["status"] in ("new", "ongoing")
    assert detail["history"] and detail["history"][0]["a"] >= 8
    assert {t["transition"] for t in detail["transitions"]} >= {"new"}
    assert set(detail["theta"]) == {"alpha1", "beta1", "alpha2", "beta2", "p"}


def test_a_product_moved_to_another_mah_moves_its_visibility(fresh_world: World):
    world = fresh_world
    body = {
        "names": ["betanib"],
        "kind": "drug",
        "pathway": "gba_hkmacao_connect",
        "mah_id": "MAH-A",
    }
    assert (
        world.client.put("/v1/products/B1", json=body, headers=world.headers("mah_b")).status_code
        == 403
    )
    moved = world.client.put("/v1/products/B1", json=body, headers=world.headers("regulator"))
    assert moved.status_code == 200 and moved.json()["recounted_cases"] is None
    assert world.get("mah_a", f"/v1/signals/all/B1/{PLANTED['B1']}").status_code == 200
    assert world.get("mah_b", f"/v1/signals/all/B1/{PLANTED['B1']}").status_code == 404
    assert "B1" not in {
        p["product_id"] for p in world.get("mah_b", "/v1/products").json()["products"]
    }


def test_registry_changes_that_change_counts_recount(fresh_world: World):
    world = fresh_world
    body = {"names": ["mysterium"], "kind": "drug", "pathway": "innovative", "mah_id": "MAH-B"}
    created = world.client.put("/v1/products/M1", json=body, headers=world.headers("regulator"))
    assert created.status_code == 200 and created.json()["recounted_cases"] > 0
    world.settle()
    rows = world.get("mah_b", "/v1/signals", params={"product_id": "M1", "limit": 100}).json()
    assert PLANTED["mysterium"] in {r["pt"] for r in rows["signals"]}
    clash = {"names": ["alphamab"], "kind": "drug", "pathway": "innovative", "mah_id": "MAH-B"}
    conflict = world.client.put("/v1/products/M2", json=clash, headers=world.headers("regulator"))
    assert conflict.status_code == 409


def test_the_registry_refuses_hidden_characters_and_look_alikes(fresh_world: World):
    body = {"names": ["gamma\u200bdrug"], "kind": "drug", "pathway": "innovative"}
    hidden = fresh_world.client.put(
        "/v1/products/Z1",
        json={**body, "mah_id": "MAH-B"},
        headers=fresh_world.headers("regulator"),
    )
    assert hidden.status_code == 422
    [error] = hidden.json()["errors"]
    assert error["field"] == "body.names.0" and error["value"] == "gamma\u200bdrug"
    assert "U+200B" in error["reason"]
    look_alike = fresh_world.client.put(
        "/v1/products/Z1",
        json={**body, "names": ["аlphamab"], "mah_id": "MAH-B"},  # Cyrillic а; A1 is MAH-A's
        headers=fresh_world.headers("regulator"),
    )
    assert look_alike.status_code == 409
    assert "names: 'аlphamab' looks like 'alphamab'" in look_alike.json()["detail"]
    assert fresh_world.get("regulator", "/v1/products/Z1").status_code == 404
