"""POST /v1/reports: JSON, NDJSON and E2B(R3) XML, answered record by record, with receipts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import World, copy_world, report, test_settings

E2B_DATA = Path(__file__).resolve().parents[1] / "pvsignal" / "readers" / "data"
NDJSON = {"content-type": "application/x-ndjson"}


def post(world: World, body: bytes, content_type: str, who: str = "hospital"):
    return world.client.post(
        "/v1/reports",
        content=body,
        headers={**world.headers(who), "content-type": content_type},
    )


def test_a_batch_is_answered_per_record_with_case_semantics(fresh_world: World):
    lines = [
        report("C-1", "alphamab", ["Headache"]),  # new
        report("C-1", "alphamab", ["Headache", "Nausea"], version=2),  # follow-up
        report("C-1", "alphamab", ["Headache"], version=1),  # stale
        report("C-1", "alphamab", ["Headache", "Nausea"], version=2),  # resent
        report("C-2", "betanib", ["Rash"]),
        orjson.dumps({"case_id": "C-2", "report_id": "N", "version": 2, "nullified": True}),
        report("C-2", "betanib", ["Rash"], version=3),  # refused: nullified for good
        b'{"case_id": "C-3", "report_id": "R", "products": [{"name": "x"}], '
        b'"reactions": [{"pt": "Rash"}], "patient": {"age_years": 200}}',
        b"{not json",
    ]
    response = post(fresh_world, b"\n".join(lines) + b"\n\n", "application/x-ndjson")
    assert response.status_code == 200
    receipt = response.json()
    outcomes = [r["outcome"] for r in receipt["results"]]
    assert outcomes == [
        "new",
        "follow_up",
        "stale",
        "resent",
        "new",
        "nullified",
        "refused",
        "rejected",
        "rejected",
    ]
    assert receipt["summary"] == {
        "new": 2,
        "follow_up": 1,
        "stale": 1,
        "resent": 1,
        "nullified": 1,
        "refused": 1,
        "rejected": 2,
    }
    age = receipt["results"][7]
    assert age["field"] == "patient.age_years" and "less than or equal to 130" in age["reason"]
    assert receipt["results"][6]["field"] == "case_id"
    assert receipt["results"][0]["location"] == f"{receipt['receipt_id']}:1"
    # The receipt can be read back, in full.
    again = fresh_world.get("hospital", f"/v1/receipts/{receipt['receipt_id']}").json()
    assert again["results"] == receipt["results"]


def test_a_single_json_report(fresh_world: World):
    ok = post(fresh_world, report("J-1", "alphamab", ["Headache"]), "application/json")
    assert ok.status_code == 200 and ok.json()["results"][0]["outcome"] == "new"
    bad = post(
        fresh_world,
        b'{"case_id": "J-2", "report_id": "R", "products": [{"name": "x", "role": "primary"}],'
        b' "reactions": [{"pt": "Rash"}]}',
        "application/json",
    )
    assert bad.status_code == 422
    problem = bad.json()
    assert bad.headers["content-type"] == "application/problem+json"
    assert problem["errors"][0]["field"] == "body.products.0.role"
    assert problem["receipt_id"].startswith("r-")


def test_e2b_xml_batches_are_read_and_applied(fresh_world: World):
    # The batch holds messages of two senders: a regulator submits on behalf of each.
    body = (E2B_DATA / "e2b_batch.xml").read_bytes()
    response = post(fresh_world, body, "application/xml", who="regulator")
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) >= 2
    assert all(r["location"].startswith(response.json()["receipt_id"]) for r in results)
    assert {r["outcome"] for r in results} <= {"new", "follow_up", "nullified", "refused"}
    assert any(r["outcome"] == "new" for r in results)
    assert {r["owner"] for r in results} == {
        "Boao Lecheng Designated Hospital 01",
        "Example Pharma (Hainan) Co., Ltd.",
    }


def test_a_hospital_submits_only_as_itself(fresh_world: World):
    body = (E2B_DATA / "e2b_batch.xml").read_bytes()
    results = post(fresh_world, body, "application/xml", who="hospital").json()["results"]
    assert {r["outcome"] for r in results} == {"rejected"}
    assert {r["field"] for r in results} == {"sender.institution_id"}
    assert all(
        "names another organisation than the submitter 'H-1'" in r["reason"] for r in results
    )


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml"])
def test_xml_with_entities_is_refused_unexpanded(fresh_world: World, name: str):
    response = post(fresh_world, (E2B_DATA / name).read_bytes(), "text/xml")
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert result["outcome"] == "rejected" and "DTD" in result["reason"]


def test_unsupported_content_type_is_415(world: World):
    response = post(world, b"a,b\n1,2\n", "text/csv")
    assert response.status_code == 415
    assert "application/x-ndjson" in response.json()["detail"]


def test_limits_are_413(seeded, tmp_path):
    url = copy_world(seeded, tmp_path / "limits.db")
    settings = test_settings(url, max_report_body_bytes=2_000, max_batch_records=3)
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {seeded.keys['hospital']}", **NDJSON}
        too_big = client.post("/v1/reports", content=b"x" * 3_000, headers=headers)
        assert too_big.status_code == 413
        assert too_big.json()["type"].endswith("content-too-large")
        lines = b"\n".join(report(f"L-{i}", "alphamab", ["Rash"]) for i in range(4))
        too_many = client.post("/v1/reports", content=lines, headers=headers)
        assert too_many.status_code == 413 and "at most 3" in too_many.json()["detail"]


def test_accepted_reports_reach_signals_after_detection(fresh_world: World):
    before = fresh_world.get("regulator", "/v1/signals", params={"product_id": "C1"}).json()
    lines = [report(f"NEW-{i}", "gammadrug", ["Pancreatitis"]) for i in range(9)]
    assert post(fresh_world, b"\n".join(lines), "application/x-ndjson").status_code == 200
    fresh_world.settle()
    after = fresh_world.get(
        "regulator", "/v1/signals", params={"product_id": "C1", "pt": "Pancreatitis"}
    ).json()
    [row] = after["signals"]
    assert row["a"] == 9
    assert row["signals"]["ebgm"]["status"] in ("new", "ongoing")
    assert after["total"] < before["total"] + 2
    alerts = fresh_world.get("mah_a", "/v1/alerts", params={"product_id": "C1"}).json()
    assert alerts["alerts"] == []  # MAH-C's product: not MAH-A's business


def test_ingest_metrics_count_outcomes(fresh_world: World):
    lines = [report("M-1", "alphamab", ["Rash"]), b"{broken"]
    post(fresh_world, b"\n".join(lines), "application/x-ndjson")
    metrics = fresh_world.client.get("/metrics").text
    assert 'pvsignal_reports_ingested_total{outcome="new"} 1.0' in metrics
    assert 'pvsignal_reports_rejected_total{reason="invalid"} 1.0' in metrics
    assert "pvsignal_last_report_processed_timestamp_seconds 1." in metrics
