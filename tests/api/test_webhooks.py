"""Webhooks to a real receiver on 127.0.0.1: signed, retried with backoff, recorded, tenant-safe."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from api.webhooks import verify
from tests.api.conftest import OWNED, World, report


class Receiver:
    """Records every POST; answers the next ``failures`` of them with 503."""

    def __init__(self, failures: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body, time.monotonic()))
                failing = receiver.failures > 0
                receiver.failures -= failing
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alerts(self) -> list[dict]:
        return [orjson.loads(body)["alert"] for _, body, _ in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def subscribe(world: World, who: str, url: str, **filter_) -> dict:
    response = world.client.post(
        "/v1/subscriptions", json={"url": url, "filter": filter_}, headers=world.headers(who)
    )
    assert response.status_code == 201, response.text
    return response.json()


def raise_signals(world: World, tag: str) -> None:
    """New planted pairs for a product of each MAH and the unregistered one."""
    lines = []
    for name, pt in (
        ("alphacel", "Encephalopathy"),
        ("betastent", "Thrombosis"),
        ("mysterium", "Alopecia"),
        ("gammadrug", "Vertigo"),
    ):
        lines += [report(f"{tag}-{name}-{i}", name, [pt]) for i in range(9)]
    response = world.client.post(
        "/v1/reports",
        content=b"\n".join(lines),
        headers={**world.headers("hospital"), "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 200
    world.settle()


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def deliveries(world: World, who: str, subscription_id: int) -> list[dict]:
    path = f"/v1/subscriptions/{subscription_id}/deliveries"
    return world.get(who, path).json()["deliveries"]


def test_deliveries_are_signed_and_carry_only_the_owners_alerts(
    fresh_world: World, receiver: Receiver
):
    created = subscribe(fresh_world, "mah_a", receiver.url)
    secret = created["secret"]
    filtered = Receiver()
    try:
        subscribe(fresh_world, "mah_b", filtered.url, measures=["ebgm"], transitions=["new"])
        regulator = Receiver()
        try:
            subscribe(fresh_world, "regulator", regulator.url)
            raise_signals(fresh_world, "W1")
            wait_for(lambda: receiver.requests and filtered.requests and regulator.requests)
            time.sleep(0.3)  # let every queued delivery go
        finally:
            regulator.close()
        assert {a["product_id"] for a in receiver.alerts()} <= OWNED["MAH-A"]
        assert {a["product_id"] for a in filtered.alerts()} <= OWNED["MAH-B"]
        # Only alerts in which EBGM opened (other measures may have moved with it).
        assert {a["changes"].get("ebgm") for a in filtered.alerts()} == {"new"}
        assert "unregistered:mysterium" in {a["product_id"] for a in regulator.alerts()}
    finally:
        filtered.close()
    for headers, body, _ in receiver.requests:
        timestamp, signature = headers["Pvsignal-Timestamp"], headers["Pvsignal-Signature"]
        # Recomputed independently of the service's own signing code.
        mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
        assert signature == "v1=" + mac.hexdigest()
        assert verify(secret, timestamp, body, signature)
        assert not verify(secret, timestamp, body + b" ", signature)
        assert not verify("whsec_other", timestamp, body, signature)
    recorded = deliveries(fresh_world, "mah_a", created["subscription_id"])
    assert recorded and {d["status"] for d in recorded} == {"delivered"}


def test_failures_are_retried_with_backoff_then_delivered(fresh_world: World):
    flaky = Receiver(failures=2)
    try:
        created = subscribe(
            fresh_world, "mah_a", flaky.url, products=["A2"], measures=["ebgm"], transitions=["new"]
        )
        raise_signals(fresh_world, "W2")
        wait_for(lambda: len(flaky.requests) >= 3)
        times = [t for _, _, t in flaky.requests[:3]]
        # Backoff 0.2 s, then 0.4 s (base 0.2 s, doubling, no jitter in tests).
        assert times[1] - times[0] >= 0.18 and times[2] - times[1] >= 0.38
        bodies = {body for _, body, _ in flaky.requests[:3]}
        assert len(bodies) == 1, "the same delivery each time"
        wait_for(
            lambda: (
                deliveries(fresh_world, "mah_a", created["subscription_id"])[0]["status"]
                == "delivered"
            )
        )
        [delivery] = deliveries(fresh_world, "mah_a", created["subscription_id"])
        assert delivery["attempts"] == 3 and delivery["last_status"] == 204
        metrics = fresh_world.client.get("/metrics").text
        assert 'pvsignal_webhook_deliveries_total{result="retried"} 2.0' in metrics
    finally:
        flaky.close()


def test_a_dead_endpoint_fails_after_the_last_attempt(seeded, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api.conftest import copy_world, test_settings

    dead = Receiver(failures=100)
    url = copy_world(seeded, tmp_path / "dead.db")
    settings = test_settings(url, webhook_max_attempts=3, webhook_backoff_seconds=0.05)
    try:
        with TestClient(create_app(settings)) as client:
            world = World(client, seeded.keys, url)
            created = subscribe(
                world, "mah_a", dead.url, products=["A2"], measures=["ebgm"], transitions=["new"]
            )
            raise_signals(world, "W3")
            wait_for(
                lambda: (
                    deliveries(world, "mah_a", created["subscription_id"])
                    and deliveries(world, "mah_a", created["subscription_id"])[0]["status"]
                    == "failed"
                )
            )
            [delivery] = deliveries(world, "mah_a", created["subscription_id"])
            assert delivery["attempts"] == 3 and delivery["last_error"] == "HTTP 503"
            assert delivery["next_attempt_at"] is None
            assert len(dead.requests) == 3
    finally:
        dead.close()


def test_subscriptions_belong_to_their_organisation(fresh_world: World, receiver: Receiver):
    mine = subscribe(fresh_world, "mah_a", receiver.url)
    path = f"/v1/subscriptions/{mine['subscription_id']}"
    assert fresh_world.get("mah_b", path).status_code == 404
    assert fresh_world.get("mah_b", path + "/deliveries").status_code == 404
    assert fresh_world.client.delete(path, headers=fresh_world.headers("mah_b")).status_code == 404
    assert fresh_world.get("mah_b", "/v1/subscriptions").json()["subscriptions"] == []
    listed = fresh_world.get("mah_a", "/v1/subscriptions").json()["subscriptions"]
    assert [s["subscription_id"] for s in listed] == [mine["subscription_id"]]
    assert "secret" not in listed[0]
    assert fresh_world.client.delete(path, headers=fresh_world.headers("mah_a")).status_code == 204
    assert fresh_world.get("mah_a", path).status_code == 404


def test_a_filter_naming_another_tenants_product_is_refused_like_an_unknown_one(
    world: World, receiver: Receiver
):
    def refused(product: str):
        return world.client.post(
            "/v1/subscriptions",
            json={"url": receiver.url, "filter": {"products": [product]}},
            headers=world.headers("mah_a"),
        )

    foreign, unknown = refused("B1"), refused("NO-SUCH")
    assert foreign.status_code == unknown.status_code == 422
    assert foreign.json()["errors"][0]["field"] == unknown.json()["errors"][0]["field"]


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x", "http://example.com/hook", "http://10.0.0.1/hook", "not a url"]
)
def test_webhook_targets_are_checked(world: World, url: str):
    response = world.client.post(
        "/v1/subscriptions", json={"url": url}, headers=world.headers("mah_a")
    )
    assert response.status_code == 422
