"""The API on the production store: PostgreSQL, same SQL as SQLite (keys, receipts,
subscriptions, deliveries, outbox cursor, change token)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import issue_key
from pvsignal.store import open_store
from tests.api.conftest import PLANTED, PRODUCTS, World, report, test_settings
from tests.api.test_webhooks import Receiver, deliveries, subscribe, wait_for
from tests.support.postgres import cluster, create_database


@pytest.fixture(scope="module")
def postgres_url():
    with cluster() as url:
        yield create_database(url, "api_test")


def test_the_whole_flow_on_postgresql(postgres_url: str):
    store = open_store(postgres_url)
    store.save_products(PRODUCTS)
    keys = {
        "hospital": issue_key(store, "hospital", "H-1")[0],
        "mah_a": issue_key(store, "mah", "MAH-A")[0],
        "mah_b": issue_key(store, "mah", "MAH-B")[0],
        "regulator": issue_key(store, "regulator", None)[0],
    }
    store.close()
    receiver = Receiver()
    try:
        with TestClient(create_app(test_settings(postgres_url))) as client:
            world = World(client, keys, postgres_url)
            created = subscribe(world, "mah_a", receiver.url)
            lines = [report(f"PG-{i}", "alphamab", [PLANTED["A1"]]) for i in range(9)]
            lines += [report(f"PGB-{i}", "betanib", ["Rash", "Cough"]) for i in range(30)]
            lines += [report(f"PGC-{i}", "gammadrug", ["Headache"]) for i in range(30)]
            posted = client.post(
                "/v1/reports",
                content=b"\n".join(lines),
                headers={**world.headers("hospital"), "content-type": "application/x-ndjson"},
            )
            assert posted.status_code == 200 and posted.json()["summary"] == {"new": 69}
            world.settle()
            rows = world.get("mah_a", "/v1/signals", params={"limit": 1000}).json()["signals"]
            assert rows and {r["product_id"] for r in rows} == {"A1"}
            assert world.get("mah_b", f"/v1/signals/all/A1/{PLANTED['A1']}").status_code == 404
            wait_for(lambda: receiver.requests)
            wait_for(
                lambda: (
                    deliveries(world, "mah_a", created["subscription_id"])[0]["status"]
                    == "delivered"
                )
            )
            assert {a["product_id"] for a in receiver.alerts()} == {"A1"}
            receipts = world.get("hospital", "/v1/receipts").json()["receipts"]
            assert receipts[0]["receipt_id"] == posted.json()["receipt_id"]
    finally:
        receiver.close()
