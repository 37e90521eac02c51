"""The audit trail: each write through the API leaves exactly one row (no secrets), every
write operation depends on the audit actor, GET /v1/audit filters and pages, and tampering
with a row (a value changed, a row deleted, the tail cut) is named by ``pvsignal audit
verify`` — on SQLite and PostgreSQL, with concurrent appends that never fork the chain."""

from __future__ import annotations

import importlib
import itertools
import pkgutil
import sqlite3
import threading
from urllib.parse import quote

import orjson
import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute

import api.routes
from api.deps import audit_actor
from api.openapi import _calls
from pvsignal.audit import Actor, audit_read, recorded
from pvsignal.cli import main
from pvsignal.store import open_store
from tests.api.conftest import PLANTED, World, report
from tests.support.postgres import create_database

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_DATABASES = itertools.count()


def rows(world: World) -> list[dict]:
    store = open_store(world.url)
    try:
        return list(store.audit_chain())
    finally:
        store.close()


def test_every_write_operation_depends_on_the_audit_actor():
    modules = [
        importlib.import_module(f"api.routes.{info.name}")
        for info in pkgutil.iter_modules(api.routes.__path__)
    ]
    writes = [
        (method, route.path, set(_calls(route.dependant)))
        for module in modules
        for route in getattr(module, "router", APIRouter()).routes
        if isinstance(route, APIRoute)
        for method in route.methods & WRITES
    ]
    assert len(writes) >= 9  # reports, products, institutions, reviews, duplicates, 2+2
    assert [(m, p) for m, p, calls in writes if audit_actor not in calls] == []


def test_each_write_through_the_api_leaves_exactly_one_row(fresh_world: World):
    world = fresh_world
    regulator, admin = world.headers("regulator"), world.headers("admin")
    start = len(rows(world))

    def one_row(answer, action: str, object_id: str | None = None) -> dict:
        assert answer.status_code < 300, answer.text
        found = rows(world)
        nonlocal start
        assert len(found) == start + 1, [r["action"] for r in found[start:]]
        start += 1
        row = found[-1]
        assert row["action"] == action
        if object_id is not None:
            assert row["object_id"] == object_id
        text = orjson.dumps(row).decode()
        assert "pvs_" not in text and "whsec_" not in text  # never a key or webhook secret
        return row

    ndjson = {"content-type": "application/x-ndjson"}
    posted = world.client.post(
        "/v1/reports",
        content=report("AUD-1", "alphamab", ["Rash"]),
        headers={**world.headers("hospital"), **ndjson},
    )
    row = one_row(posted, "report.submit", posted.json()["receipt_id"])
    assert row["actor"].startswith("hospital:H-1:") and row["org"] == "H-1"
    assert row["after"]["summary"] == {"new": 1}

    product = {"names": ["deltamab"], "kind": "drug", "pathway": "innovative", "mah_id": "MAH-A"}
    row = one_row(
        world.client.put("/v1/products/D1", json=product, headers=regulator), "product.put", "D1"
    )
    assert row["before"] is None and row["after"]["names"] == ["deltamab"]
    product["names"] = ["deltamab", "deltamab-x"]
    row = one_row(
        world.client.put("/v1/products/D1", json=product, headers=regulator), "product.put", "D1"
    )
    assert row["before"]["names"] == ["deltamab"] and row["after"]["names"][1] == "deltamab-x"

    institution = {"names": ["Boao Hospital"], "region": "CN-HI"}
    one_row(
        world.client.put("/v1/institutions/H-9", json=institution, headers=regulator),
        "institution.put",
        "H-9",
    )

    path = f"/v1/signals/all/A1/{quote(PLANTED['A1'])}/review"
    row = one_row(
        world.client.patch(
            path,
            json={"status": "validation"},
            headers={**world.headers("mah_a"), "If-Match": '"0"'},
        ),
        "review.update",
        f"MAH-A/all/A1/{PLANTED['A1']}",
    )
    assert row["before"] is None and row["after"]["status"] == "validation"

    created = world.client.post(
        "/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/hook"},
        headers=world.headers("mah_a"),
    )
    subscription_id = str(created.json()["subscription_id"])
    row = one_row(created, "subscription.create", subscription_id)
    assert "secret" not in row["after"]
    one_row(
        world.client.delete(f"/v1/subscriptions/{subscription_id}", headers=world.headers("mah_a")),
        "subscription.delete",
        subscription_id,
    )

    key = world.client.post("/v1/keys", json={"role": "mah", "org": "MAH-Z"}, headers=admin)
    key_id = key.json()["key_id"]
    row = one_row(key, "key.create", key_id)
    assert row["after"]["org"] == "MAH-Z" and "key" not in row["after"]
    one_row(world.client.delete(f"/v1/keys/{key_id}", headers=admin), "key.revoke", key_id)

    world.client.post(
        "/v1/reports",
        content=report("M-7", "alphamab", ["Rash"]),
        headers={**world.headers("mah_a"), **ndjson},
    )
    world.client.post(
        "/v1/reports",
        content=report("H-7", "alphamab", ["Rash"], duplicate_of_ids=["M-7"]),
        headers={**world.headers("hospital"), **ndjson},
    )
    start += 2
    [suspicion] = world.get("regulator", "/v1/duplicates?status=open").json()["duplicates"]
    sid = str(suspicion["suspicion_id"])
    row = one_row(
        world.client.post(f"/v1/duplicates/{sid}", json={"decision": "dismiss"}, headers=regulator),
        "duplicate.dismiss",
        sid,
    )
    assert row["before"]["status"] == "open" and row["after"]["status"] == "dismissed"

    # Refused writes leave nothing: a 409 move, a 412, a second decision, a 404 key.
    for refused in (
        world.client.patch(
            path, json={"status": "closed"}, headers={**world.headers("mah_a"), "If-Match": '"1"'}
        ),
        world.client.patch(
            path, json={"priority": "low"}, headers={**world.headers("mah_a"), "If-Match": '"0"'}
        ),
        world.client.post(f"/v1/duplicates/{sid}", json={"decision": "confirm"}, headers=regulator),
        world.client.delete("/v1/keys/nope", headers=admin),
    ):
        assert refused.status_code >= 400
    assert len(rows(world)) == start
    store = open_store(world.url)
    assert store.verify_audit() is None
    store.close()

    # GET /v1/audit: regulators and admins; filters; pages.
    assert world.get("mah_a", "/v1/audit").status_code == 403
    listed = world.get("regulator", "/v1/audit", params={"object_type": "product"}).json()
    assert [e["object_id"] for e in listed["entries"]] == ["D1", "D1"]
    page = world.get("admin", "/v1/audit", params={"limit": 2}).json()
    assert len(page["entries"]) == 2 and page["next_after"] == page["entries"][1]["seq"]
    after = world.get("admin", "/v1/audit", params={"after": page["next_after"]}).json()
    assert after["entries"][0]["seq"] == page["next_after"] + 1
    mine = world.get("admin", "/v1/audit", params={"actor": row["actor"]}).json()["entries"]
    assert {e["actor"] for e in mine} == {row["actor"]}
    later = world.get("admin", "/v1/audit", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later["entries"] == []
    # A time is ISO 8601 text: a number (pydantic's Unix time) is refused, naming the field.
    for where, params in [("/v1/audit", {"until": "0.95"}), ("/v1/alerts", {"since": "17"})]:
        refused = world.get("admin", where, params=params)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["field"] == f"query.{next(iter(params))}" and "ISO 8601" in error["reason"]


def _seed_trail(url: str, n: int = 5) -> None:
    store = open_store(url)
    try:
        for i in range(n):
            with recorded(
                store,
                Actor("admin:-:k1", "admin"),
                "thing.put",
                "thing",
                str(i),
                before={"i": i - 1},
            ) as rec:
                rec.after = {"i": i, "secret": "s3cret"}
        audit_read(store, Actor("regulator:-:k2", "regulator"), "case", "H-1/C-1")
    finally:
        store.close()


def _tamper(url: str, statement: str) -> None:
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        connection.execute(statement)
        connection.commit()
        connection.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(statement)


def _verify(url: str, capsys) -> tuple[int, str]:
    code = main(["audit", "verify", "--store", url])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(params=["sqlite", "postgresql"])
def trail_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'trail.db'}"
    server = request.getfixturevalue("postgres_server")
    return create_database(server, f"trail_{next(_DATABASES)}")


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("UPDATE audit_log SET after = '{\"i\":99}' WHERE seq = 3", "row 3 was changed"),
        ("UPDATE audit_log SET actor = 'admin:-:someone' WHERE seq = 1", "row 1 was changed"),
        ("UPDATE audit_log SET at = '2020-01-01' WHERE seq = 6", "row 6 was changed"),
        ("DELETE FROM audit_log WHERE seq = 2", "row(s) 2 missing"),
        ("DELETE FROM audit_log WHERE seq = 6", "row(s) 6..6 missing"),
    ],
)
def test_tampering_is_found_and_named(trail_url, statement, named, capsys):
    _seed_trail(trail_url)
    code, out = _verify(trail_url, capsys)
    assert code == 0 and "6 rows" in out
    store = open_store(trail_url)
    [row] = store.audit_entries(object_id="2")
    assert row["after"] == {"i": 2, "secret": "[redacted]"}
    store.close()
    _tamper(trail_url, statement)
    code, out = _verify(trail_url, capsys)
    assert code == 1 and named in out, out


def test_concurrent_appends_never_fork_the_chain(trail_url):
    _seed_trail(trail_url, n=1)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        store = open_store(trail_url)
        try:
            for i in range(15):
                with recorded(store, Actor(f"admin:-:w{w}", "admin"), "x.put", "x", f"{w}-{i}"):
                    pass
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = open_store(trail_url)
    try:
        assert store.verify_audit() is None
        assert store.audit_head()[0] == 2 + 4 * 15
    finally:
        store.close()
