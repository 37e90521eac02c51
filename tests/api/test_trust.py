"""Two hospitals, two MAHs and a regulator share one server: nobody writes another's case.

Each cross-organisation write that once changed another organisation's case (a nullification,
a follow-up, a duplicate link, a version probe) is tried against the real app and store, on
SQLite and PostgreSQL; the other organisation's case is then read back unchanged through its
own follow-up and through the counts. A link across owners waits for a regulator's decision.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import issue_key
from pvsignal.cases import CaseKey, Status
from pvsignal.store import open_store
from pvsignal.store.schema import migrations
from tests.api.conftest import PRODUCTS, World, copy_world, report, test_settings
from tests.api.test_reports import E2B_DATA
from tests.support.postgres import create_database
from tests.support.server import serve

ORGS = {"h1": ("hospital", "H-1"), "h2": ("hospital", "H-2"), "m1": ("mah", "MAH-A")}
ORGS |= {"m2": ("mah", "MAH-B"), "regulator": ("regulator", None)}


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request, tmp_path, postgres_server) -> Iterator[World]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/shared.db"
    else:
        url = create_database(postgres_server, f"trust_{tmp_path.name[-20:].lower()}")
    store = open_store(url)
    store.save_products(PRODUCTS)
    keys = {who: issue_key(store, role, org)[0] for who, (role, org) in ORGS.items()}
    store.close()
    with TestClient(create_app(test_settings(url))) as client:
        yield World(client, keys, url)


def post(world: World, who: str, *lines: bytes, **headers: str) -> dict[str, Any]:
    response = world.client.post(
        "/v1/reports",
        content=b"\n".join(lines),
        headers={**world.headers(who), "content-type": "application/x-ndjson", **headers},
    )
    assert response.status_code == 200, response.text
    return response.json()


def outcomes(receipt: dict[str, Any]) -> list[str]:
    return [r["outcome"] for r in receipt["results"]]


def pair_count(world: World, product: str, pt: str) -> int:
    with open_store(world.url) as store:
        counts = store.scope_counts("all")
    hits = (counts.pair_product == product) & (counts.pair_event == pt)
    return int(counts.a[hits].sum())


def case(world: World, owner: str, case_id: str):
    with open_store(world.url) as store:
        return store.case(case_id, owner)


def test_no_write_of_one_organisation_changes_anothers_case(shared: World):
    world = shared
    assert outcomes(post(world, "h2", report("C-1", "alphamab", ["Hepatic failure"]))) == ["new"]
    # A version probe tells H-1 nothing: its own case C-1 is new, whatever H-2 holds.
    assert outcomes(post(world, "h1", report("C-1", "alphamab", ["Rash"], version=0))) == ["new"]
    # H-1's nullification and follow-up of "C-1" are its own case's, not H-2's.
    assert outcomes(post(world, "h1", report("C-1", "betanib", ["Cough"], 2))) == ["follow_up"]
    assert outcomes(post(world, "h1", report("C-1", "x", ["x"], 3, nullified=True))) == [
        "nullified"
    ]
    # MAHs submit too, and their case ids are their own.
    assert outcomes(post(world, "m1", report("C-1", "alphamab", ["Nausea"]))) == ["new"]
    assert case(world, "H-2", "C-1").status is Status.active
    assert pair_count(world, "A1", "Hepatic failure") == 1
    # H-2's follow-up still applies to its case: nothing withdrew it.
    follow_up = post(world, "h2", report("C-1", "alphamab", ["Hepatic failure", "Rash"], 2))
    assert outcomes(follow_up) == ["follow_up"]
    assert follow_up["results"][0]["owner"] == "H-2"


def test_a_record_naming_another_sender_is_rejected(shared: World):
    line = report("C-9", "alphamab", ["Rash"], sender={"type": "hospital", "institution_id": "H-2"})
    [result] = post(shared, "h1", line)["results"]
    assert result["outcome"] == "rejected" and result["field"] == "sender.institution_id"
    assert "'H-2'" in result["reason"] and "'H-1'" in result["reason"]
    assert case(shared, "H-2", "C-9") is None and case(shared, "H-1", "C-9") is None
    # A regulator submits on behalf of the organisation its record names.
    [result] = post(shared, "regulator", line)["results"]
    assert (result["outcome"], result["owner"]) == ("new", "H-2")


def test_a_duplicate_link_across_owners_waits_for_the_regulator(shared: World):
    world = shared
    post(world, "m1", report("M-7", "alphamab", ["Hepatic failure"]))
    linking = report("H-7", "alphamab", ["Hepatic failure"], duplicate_of_ids=["M-7"])
    assert outcomes(post(world, "h1", linking)) == ["new"]
    assert case(world, "MAH-A", "M-7").status is Status.active
    assert pair_count(world, "A1", "Hepatic failure") == 2
    # Only a regulator sees the suspicion.
    assert world.get("h1", "/v1/duplicates").status_code == 403
    assert world.get("m1", "/v1/duplicates").status_code == 403
    [suspicion] = world.get("regulator", "/v1/duplicates?status=open").json()["duplicates"]
    assert suspicion["survivor"] == {"owner": "H-1", "case_id": "H-7"}
    assert suspicion["suspect"] == {"owner": "MAH-A", "case_id": "M-7"}
    decided = world.client.post(
        f"/v1/duplicates/{suspicion['suspicion_id']}",
        json={"decision": "confirm", "note": "same patient, same event"},
        headers=world.headers("regulator"),
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "confirmed"
    assert decided.json()["decided_by"].startswith("regulator:")
    withdrawn = case(world, "MAH-A", "M-7")
    assert (withdrawn.status, withdrawn.duplicate_of) == (Status.duplicate, "H-7")
    assert withdrawn.duplicate_of_owner == "H-1"
    assert pair_count(world, "A1", "Hepatic failure") == 1
    # Decided once; its later versions are refused, kept with their reason.
    again = world.client.post(
        f"/v1/duplicates/{suspicion['suspicion_id']}",
        json={"decision": "dismiss"},
        headers=world.headers("regulator"),
    )
    assert again.status_code == 409
    [result] = post(world, "m1", report("M-7", "alphamab", ["Rash"], 2))["results"]
    assert result["outcome"] == "refused"


def test_a_dismissed_suspicion_withdraws_nothing(shared: World):
    world = shared
    # The link arrives first; the other organisation's case after it: still a suspicion.
    post(world, "h1", report("H-8", "betanib", ["Cough"], duplicate_of_ids=["M-8"]))
    post(world, "m2", report("M-8", "betanib", ["Cough"]))
    [suspicion] = world.get("regulator", "/v1/duplicates").json()["duplicates"]
    assert suspicion["suspect"] == {"owner": "MAH-B", "case_id": "M-8"}
    world.client.post(
        f"/v1/duplicates/{suspicion['suspicion_id']}",
        json={"decision": "dismiss"},
        headers=world.headers("regulator"),
    )
    assert case(world, "MAH-B", "M-8").status is Status.active
    assert pair_count(world, "B1", "Cough") == 2


def test_the_same_idempotency_key_returns_the_first_receipt_and_writes_nothing(shared: World):
    world = shared
    lines = [report(f"I-{i}", "gammadrug", ["Headache"]) for i in range(3)]
    first = post(world, "h1", *lines, **{"idempotency-key": "batch-0001"})

    def again(body: list[bytes]):
        return world.client.post(
            "/v1/reports",
            content=b"\n".join(body),
            headers={
                **world.headers("h1"),
                "content-type": "application/x-ndjson",
                "idempotency-key": "batch-0001",
            },
        )

    replayed = again(lines)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == first
    # Another body under a used key is the client's mistake: refused, nothing written.
    other_body = again([report(f"I-{i}", "gammadrug", ["Headache"], 2) for i in range(3)])
    assert other_body.status_code == 409 and first["receipt_id"] in other_body.json()["detail"]
    assert case(world, "H-1", "I-0").version == 1
    # The key is the caller's: another organisation's same key is another submission.
    other = post(world, "h2", *lines, **{"idempotency-key": "batch-0001"})
    assert other["receipt_id"] != first["receipt_id"] and outcomes(other) == ["new"] * 3
    with open_store(world.url) as store:
        assert len(store.receipts(org="H-1")) == 1


def test_an_e2b_submission_can_be_acknowledged_in_e2b(shared: World):
    body = (E2B_DATA / "e2b_batch.xml").read_bytes()
    response = shared.client.post(
        "/v1/reports",
        content=body,
        headers={
            **shared.headers("h1"),
            "content-type": "application/xml",
            "accept": "application/xml",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    ack = response.content.decode()
    assert ack.startswith("<?xml") and "MCCI_IN200101UV01" in ack
    # H-1 is neither sender of the batch: each ICSR is rejected (CR), the batch needs action.
    assert ack.count('typeCode="CR"') == 2 and 'typeCode="AE"' in ack
    assert "names another organisation" in ack


def test_a_store_of_unowned_cases_migrates(tmp_path):
    """A store made before ownership: each case goes to its report's sender organisation."""
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    for version, statements in enumerate(
        migrations("INTEGER PRIMARY KEY AUTOINCREMENT", "WITHOUT ROWID")[:5], start=1
    ):
        connection.executescript(statements + ";")
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
        connection.execute("INSERT INTO schema_version VALUES (?)", (version,))
    sent = {"case_id": "A", "sender": {"type": "mah", "institution_id": " MAH-A "}}
    rows = [
        ("A", "active", 1, orjson.dumps(sent).decode(), None),
        ("B", "active", 1, orjson.dumps({"case_id": "B"}).decode(), None),
        ("P", "duplicate", None, None, "A"),  # a placeholder A named before it arrived
    ]
    connection.executemany(
        "INSERT INTO cases (case_id, status, version, report, duplicate_of, updated_at) "
        "VALUES (?, ?, ?, ?, ?, 'then')",
        rows,
    )
    connection.commit()
    connection.close()
    with open_store(f"sqlite:///{path}") as store:
        states = store.load_cases(["A", "B", "P"])
    assert set(states) == {
        CaseKey("MAH-A", "A"),
        CaseKey("unattributed", "B"),
        CaseKey("MAH-A", "P"),
    }
    assert states[CaseKey("MAH-A", "P")].duplicate_of_owner is None


def test_kill_9_during_a_post_leaves_all_of_it_or_nothing_and_the_key_finds_it(seeded, tmp_path):
    """The server is killed while it applies a 20,000-line POST (at a moment drawn from the
    time the ingest takes): the store holds all of the POST with its receipt, or none of it.
    Sent again with the same Idempotency-Key, the POST lands exactly once."""
    url = copy_world(seeded, tmp_path / "killed.db")
    lines = [report(f"K-{i}", "gammadrug", ["Headache"]) for i in range(20_000)]
    body = b"\n".join(lines)
    headers = {"content-type": "application/x-ndjson", "idempotency-key": "kill-9-batch"}

    def send(base: str, answers: list) -> None:
        try:
            answers.append(
                httpx.post(
                    f"{base}/v1/reports",
                    content=body,
                    headers={"Authorization": f"Bearer {seeded.keys['hospital']}", **headers},
                    timeout=120,
                )
            )
        except httpx.TransportError as error:
            answers.append(error)

    with serve(url, seeded.keys) as server:
        answers: list = []
        sender = threading.Thread(target=send, args=(server.base, answers))
        sender.start()
        time.sleep(random.uniform(0.2, 2.5))  # upload, read, validate, ingest: a few seconds
        server.process.kill()
        server.process.wait()
        sender.join()
    with open_store(url) as store:
        landed = sum(1 for key in store.load_cases([f"K-{i}" for i in range(20_000)]))
        receipts = store.receipts(org="H-1", limit=500)
    assert landed in (0, 20_000)
    assert (landed == 20_000) == any(r["records"] == 20_000 for r in receipts)
    with serve(url, seeded.keys) as server:
        answers = []
        send(server.base, answers)
    [answer] = answers
    assert answer.status_code == 200
    assert answer.json()["summary"] == {"new": 20_000}
    assert (answer.headers.get("idempotent-replayed") == "true") == (landed == 20_000)
    with open_store(url) as store:
        assert len(store.load_cases([f"K-{i}" for i in range(20_000)])) == 20_000
