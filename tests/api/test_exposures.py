"""POST /v1/exposures and GET /v1/rates: ownership, tenancy, receipts, exact rates, and the
sequential test's alert through the normal pipeline."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from api.app import create_app
from tests.api.conftest import PLANTED, Seed, World, copy_world, test_settings

SCOPES = """
scopes:
  - name: all
    monitoring:
      products:
        - product_id: A1
          length: 10
          min_events: 2
          references:
            - {pt: Hepatic failure, per_1000: 4}
            - {pt: Hepatic failure, per_1000: 8, age_band: 65-74, sex: F, source: background}
        - product_id: B1
          length: 10
          references:
            - {pt: Interstitial lung disease, per_1000: 60}
"""


@pytest.fixture
def exposed(seeded: Seed, tmp_path: Path) -> Iterator[World]:
    url = copy_world(seeded, tmp_path / "world.db")
    config = tmp_path / "scopes.yaml"
    config.write_text(SCOPES)
    with TestClient(create_app(test_settings(url, scope_config=config))) as client:
        yield World(client, seeded.keys, url)


def post(world: World, who: str, body: bytes | str, kind: str, **headers: str):
    return world.client.post(
        "/v1/exposures",
        content=body,
        headers={**world.headers(who), "Content-Type": kind, **headers},
    )


def ndjson(*records: dict) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def exposure(exposure_id: str, product: str, patients: int = 1, **extra) -> dict:
    return {
        "exposure_id": exposure_id,
        "product_id": product,
        "institution_id": "H-1",
        "start": "2026-02-01",
        "patients": patients,
        **extra,
    }


def stored(world: World, owner: str, exposure_id: str):
    with world.runtime.pool.store() as store:
        return store.exposure(owner, exposure_id)


def test_a_hospital_submits_ndjson_and_csv_and_reads_its_receipt(exposed: World):
    body = ndjson(exposure("E1", "A1", 100), exposure("E2", "B1", 50, age_years=70, sex="F"))
    answer = post(exposed, "hospital", body, "application/x-ndjson")
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["summary"] == {"new": 2}
    assert [r["exposure_id"] for r in receipt["results"]] == ["E1", "E2"]
    assert {r["owner"] for r in receipt["results"]} == {"H-1"}
    row = stored(exposed, "H-1", "E2")
    assert (row.product, row.patients, row.age_band, row.sex) == ("B1", 50, "65-74", "F")
    text = "exposure_id,product_name,institution_id,start,patients\nE3,alphamab,H-1,2026-03-01,7\n"
    answer = post(exposed, "hospital", text, "text/csv")
    assert answer.json()["summary"] == {"new": 1}
    assert stored(exposed, "H-1", "E3").product == "A1"  # the name resolved through the registry
    again = exposed.get("hospital", f"/v1/receipts/{answer.json()['receipt_id']}")
    assert again.status_code == 200 and again.json()["results"][0]["exposure_id"] == "E3"


def test_bad_records_are_rejected_naming_field_and_value_and_kept(exposed: World):
    answer = post(
        exposed, "hospital", orjson.dumps(exposure("E9", "A1", patients=0)), "application/json"
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "body.patients"
    batch = ndjson(
        exposure("E10", "A1"), {"exposure_id": "E11", "product_id": "A1", "start": "2026-01-01"}
    )
    results = post(exposed, "hospital", batch, "application/x-ndjson").json()["results"]
    assert results[0]["outcome"] == "new"
    assert results[1]["outcome"] == "rejected" and results[1]["field"] == "institution_id"
    with exposed.runtime.pool.store() as store:
        kept = [r for r in store.rejects(limit=1000) if r["field"] == "institution_id"]
    assert kept and "needs institution_id" in kept[-1]["reason"]
    csv_body = "exposure_id,product_id,colour\nE12,A1,red\n"
    refused = post(exposed, "hospital", csv_body, "text/csv")
    assert refused.status_code == 422 and "'colour'" in refused.json()["detail"]
    assert refused.json()["receipt_id"]
    assert post(exposed, "hospital", b"<x/>", "application/xml").status_code == 415


def test_another_organisation_cannot_correct_or_withdraw_an_exposure(exposed: World):
    post(exposed, "hospital", ndjson(exposure("E1", "A1", 100)), "application/x-ndjson")
    before = stored(exposed, "H-1", "E1")
    # H-2 sends a "correction" and a withdrawal of the same id: its own id space, refused.
    correction = exposure("E1", "A1", 5, version=2, institution_id="H-2")
    withdrawal = {"exposure_id": "E1", "version": 3, "withdrawn": True}
    results = post(
        exposed, "hospital2", ndjson(withdrawal, correction), "application/x-ndjson"
    ).json()["results"]
    assert results[0]["outcome"] == "refused" and results[0]["field"] == "exposure_id"
    assert results[1]["outcome"] == "new" and results[1]["owner"] == "H-2"
    assert stored(exposed, "H-1", "E1") == before
    # Naming another organisation as sender is refused, naming the field and the value.
    forged = ndjson({**exposure("E1", "A1", 5, version=4, institution_id="H-2"), "sender": "H-1"})
    result = post(exposed, "hospital2", forged, "application/x-ndjson").json()["results"][0]
    assert (result["outcome"], result["field"]) == ("rejected", "sender")
    assert stored(exposed, "H-1", "E1") == before
    # The owner corrects, then withdraws; a later version is refused.
    post(exposed, "hospital", ndjson(exposure("E1", "A1", 120, version=2)), "application/x-ndjson")
    assert stored(exposed, "H-1", "E1").patients == 120
    done = ndjson(
        {"exposure_id": "E1", "version": 3, "withdrawn": True}, exposure("E1", "A1", 9, version=4)
    )
    results = post(exposed, "hospital", done, "application/x-ndjson").json()["results"]
    assert [r["outcome"] for r in results] == ["withdrawn", "refused"]
    assert stored(exposed, "H-1", "E1").status == "withdrawn"


def test_hospitals_record_their_own_patients_and_mahs_their_own_products(exposed: World):
    """Another's denominators would move its rates: a hospital names no other institution, an
    MAH no product of another MAH's (nor an unregistered one); the rest of the batch lands."""
    batch = ndjson(exposure("E1", "A1", 50, institution_id="H-1"), exposure("E2", "A1", 9))
    results = post(exposed, "hospital2", batch, "application/x-ndjson").json()["results"]
    assert [(r["outcome"], r.get("field")) for r in results] == [
        ("rejected", "institution_id"),
        ("rejected", "institution_id"),
    ]
    assert "'H-1'" in results[0]["reason"] and "H-2" in results[0]["reason"]
    mine, theirs, unknown = (
        exposure("M1", "A1", 20, institution_id="LC-H01"),
        exposure("M2", "B1", 20, institution_id="LC-H01"),
        {
            **exposure("M3", "A1", 20, institution_id="LC-H01"),
            "product_id": None,
            "product_name": "nobody's drug",
        },
    )
    results = post(exposed, "mah_a", ndjson(mine, theirs, unknown), "application/x-ndjson")
    outcomes = [(r["outcome"], r.get("field")) for r in results.json()["results"]]
    assert outcomes == [("new", None), ("rejected", "product_id"), ("rejected", "product_id")]
    assert "'MAH-B'" in results.json()["results"][1]["reason"]
    assert stored(exposed, "MAH-A", "M1").patients == 20
    with exposed.runtime.pool.store() as store:
        assert [e.product for e in store.active_exposures(["B1"])] == []
        kept = [r for r in store.rejects(limit=1000) if r["field"] == "product_id"]
    assert len(kept) == 2


def test_a_regulator_submits_on_behalf_of_the_sender_it_names(exposed: World):
    body = ndjson({**exposure("R1", "A1", 3), "sender": "H-2"})
    result = post(exposed, "regulator", body, "application/x-ndjson").json()["results"][0]
    assert result["owner"] == "H-2"


def test_idempotency_key_replays_the_first_receipt(exposed: World):
    body = ndjson(exposure("K1", "A1", 10))
    first = post(exposed, "hospital", body, "application/x-ndjson", **{"Idempotency-Key": "k-1"})
    second = post(exposed, "hospital", body, "application/x-ndjson", **{"Idempotency-Key": "k-1"})
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.json()["receipt_id"] == first.json()["receipt_id"]
    with exposed.runtime.pool.store() as store:
        assert len(store.active_exposures(["A1"])) == 1


def _garwood(count: int, level: float = 0.95) -> tuple[float, float]:
    """The exact Poisson interval by scipy's chi-square quantiles (Garwood 1936)."""
    tail = (1 - level) / 2
    lower = stats.chi2.ppf(tail, 2 * count) / 2 if count else 0.0
    return lower, stats.chi2.ppf(1 - tail, 2 * count + 2) / 2


def test_rates_are_exact_and_masked_by_role(exposed: World):
    body = ndjson(
        exposure("E1", "A1", 300),
        exposure("E2", "A1", 100, age_years=70, sex="F"),
        exposure("E3", "B1", 80),
    )
    post(exposed, "hospital", body, "application/x-ndjson")
    rows = exposed.get("regulator", "/v1/rates").json()["rates"]
    by = {(r["product_id"], r["pt"]): r for r in rows}
    a1 = by["A1", PLANTED["A1"]]
    with exposed.runtime.pool.store() as store:  # an independent recount of the pair's cases
        counts = store.scope_counts("all")
    cases = int(
        sum(
            a
            for p, e, a in zip(counts.pair_product, counts.pair_event, counts.a, strict=True)
            if p == "A1" and e == PLANTED["A1"]
        )
    )
    assert a1["cases"] == cases and a1["patients"] == 400
    lower, upper = _garwood(cases)
    assert a1["incidence_per_1000"] == pytest.approx(cases / 400 * 1000, rel=1e-12)
    assert a1["incidence_lower"] == pytest.approx(lower / 400 * 1000, rel=1e-9)
    assert a1["incidence_upper"] == pytest.approx(upper / 400 * 1000, rel=1e-9)
    expected = 300 * 4 / 1000 + 100 * 8 / 1000  # the 65-74 F stratum has its own rate
    assert a1["expected"] == pytest.approx(expected) and a1["reference"] == "mixed"
    assert a1["oe_lower"] == pytest.approx(lower / expected, rel=1e-9)
    assert a1["oe_upper"] == pytest.approx(upper / expected, rel=1e-9)
    # An MAH sees its own products only, even when it names another's.
    mine = exposed.get("mah_a", "/v1/rates").json()
    assert {r["product_id"] for r in mine["rates"]} == {"A1"}
    one = exposed.get("regulator", "/v1/rates", params={"pt": PLANTED["A1"]}).json()["rates"]
    assert {(r["product_id"], r["pt"]) for r in one} == {
        ("A1", PLANTED["A1"]),
        ("B1", PLANTED["A1"]),
    }
    theirs = exposed.get("mah_b", "/v1/rates", params={"product_id": "A1"}).json()
    assert theirs["rates"] == []
    assert {r["product_id"] for r in exposed.get("mah_b", "/v1/rates").json()["rates"]} == {"B1"}
    assert exposed.get("hospital", "/v1/rates").status_code == 403
    assert exposed.get("regulator", "/v1/rates", params={"scope": "nowhere"}).status_code == 404
    text = exposed.get("mah_a", "/v1/rates", params={"format": "csv"}).text
    table = list(csv.DictReader(io.StringIO(text)))
    assert {row["product_id"] for row in table} == {"A1"}
    monthly = exposed.get("regulator", "/v1/rates", params={"period": "month", "product_id": "B1"})
    assert {r["period"] for r in monthly.json()["rates"]} >= {"2026-02"}


def test_the_sequential_test_alerts_once_through_the_pipeline_to_its_mah_only(exposed: World):
    post(
        exposed,
        "hospital",
        ndjson(exposure("E1", "A1", 400), exposure("E2", "B1", 400)),
        "application/x-ndjson",
    )
    exposed.settle()
    alerts = exposed.get("regulator", "/v1/alerts", params={"measure": "maxsprt"}).json()["alerts"]
    assert [(a["product_id"], a["pt"], a["transition"]) for a in alerts] == [
        ("A1", PLANTED["A1"], "new")
    ]
    statistics = alerts[0]["statistics"]
    assert statistics["llr"] >= statistics["critical_value"]
    assert statistics["expected"] == pytest.approx(1.6)
    # More exposure later: the test has ended with its signal; no second alert.
    post(exposed, "hospital", ndjson(exposure("E3", "A1", 400)), "application/x-ndjson")
    exposed.settle()
    again = exposed.get("regulator", "/v1/alerts", params={"measure": "maxsprt"}).json()["alerts"]
    assert len(again) == 1
    assert exposed.get("mah_a", "/v1/alerts", params={"measure": "maxsprt"}).json()["alerts"]
    assert not exposed.get("mah_b", "/v1/alerts", params={"measure": "maxsprt"}).json()["alerts"]


def test_each_organisation_lists_its_own_exposure_records(exposed: World):
    """GET /v1/exposures: a hospital reads back its own records (another's never), a
    regulator every one; filters, paging and an audit row per listing."""
    post(exposed, "hospital", ndjson(exposure("E1", "A1", 5), exposure("E2", "B1", 7)),
         "application/x-ndjson")  # fmt: skip
    post(exposed, "hospital", ndjson({"exposure_id": "E2", "version": 2, "withdrawn": True}),
         "application/x-ndjson")  # fmt: skip
    post(exposed, "hospital2", ndjson(exposure("E1", "A1", 9, institution_id="H-2")),
         "application/x-ndjson")  # fmt: skip

    def listed(who: str, **params) -> list[tuple]:
        answer = exposed.get(who, "/v1/exposures", params=params)
        assert answer.status_code == 200, answer.text
        rows = answer.json()["exposures"]
        return [(r["owner"], r["exposure_id"], r["status"], r["patients"]) for r in rows]

    assert listed("hospital") == [("H-1", "E1", "active", 5), ("H-1", "E2", "withdrawn", 7)]
    assert listed("hospital2") == [("H-2", "E1", "active", 9)]
    assert listed("mah_a") == []  # its products' rates, never a hospital's records
    everything = listed("regulator")
    assert everything == listed("hospital") + listed("hospital2")
    assert listed("regulator", status="active", product_id="A1") == [
        ("H-1", "E1", "active", 5),
        ("H-2", "E1", "active", 9),
    ]
    pages, params = [], {"limit": 2}
    while True:
        page = exposed.get("regulator", "/v1/exposures", params=params).json()
        pages += [(r["owner"], r["exposure_id"]) for r in page["exposures"]]
        if page["next_after"] is None:
            break
        following = page["next_after"]
        params = {"limit": 2, "after_owner": following["owner"],
                  "after_exposure_id": following["exposure_id"]}  # fmt: skip
    assert pages == [row[:2] for row in everything]
    assert listed("regulator", after_owner="H-1") == listed("regulator")  # H-1 from its start
    with exposed.runtime.pool.store() as store:
        reads = store.audit_entries(action="exposures.read", limit=1000)
    assert len(reads) >= 8 and {e["after"]["rows"] for e in reads} >= {0, 1, 2}
