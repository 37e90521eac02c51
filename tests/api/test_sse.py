"""GET /v1/alerts/stream: live alerts as Server-Sent Events, per tenant, resumable."""

from __future__ import annotations

import threading

import orjson

from tests.api.conftest import OWNED, World
from tests.api.test_webhooks import raise_signals, wait_for


def parse_events(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "data" in fields:
            events.append(
                {
                    "id": fields.get("id"),
                    "event": fields.get("event"),
                    "data": orjson.loads(fields["data"]),
                }
            )
    return events


def stream(world: World, who: str, params: dict, headers: dict | None = None) -> str:
    with world.client.stream(
        "GET", "/v1/alerts/stream", params=params, headers={**world.headers(who), **(headers or {})}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return "".join(response.iter_text())


def test_live_alerts_reach_each_tenant_and_only_theirs(fresh_world: World):
    received: dict[str, str] = {}

    def listen(who: str, name: str, params: dict) -> None:
        received[name] = stream(fresh_world, who, params)

    listeners = [
        # raise_signals opens one pair per MAH: one alert each (a pair, all measures in it).
        threading.Thread(target=listen, args=("mah_a", "mah_a", {"max_events": 1})),
        threading.Thread(target=listen, args=("mah_b", "mah_b", {"max_events": 1})),
        threading.Thread(
            target=listen, args=("mah_b", "ebgm", {"max_events": 1, "measure": "ebgm"})
        ),
    ]
    for listener in listeners:
        listener.start()
    wait_for(lambda: len(fresh_world.runtime.broker._subscribers) == 3)
    raise_signals(fresh_world, "S1")
    for listener in listeners:
        listener.join(20)
        assert not listener.is_alive()
    for who, mah in (("mah_a", "MAH-A"), ("mah_b", "MAH-B")):
        events = parse_events(received[who])
        assert len(events) == 1
        assert {e["data"]["product_id"] for e in events} <= OWNED[mah]
        assert set(events[0]["data"]["measures"]) == {"prr", "ror", "ic", "ebgm"}
        assert all(e["event"] == "alert" and e["id"] == str(e["data"]["alert_id"]) for e in events)
    [ebgm] = parse_events(received["ebgm"])
    assert "ebgm" in ebgm["data"]["changes"] and ebgm["data"]["product_id"] in OWNED["MAH-B"]


def test_last_event_id_replays_missed_alerts_of_the_tenant(world: World):
    everything = world.get("regulator", "/v1/alerts", params={"limit": 1000}).json()["alerts"]
    own = [a for a in everything if a["product_id"] in OWNED["MAH-A"]]
    assert len(own) >= 2
    text = stream(world, "mah_a", {"max_events": 2}, {"Last-Event-ID": "0"})
    events = parse_events(text)
    assert [e["data"]["alert_id"] for e in events] == [a["alert_id"] for a in own[:2]]
    later = stream(world, "mah_a", {"max_events": 1}, {"Last-Event-ID": str(own[0]["alert_id"])})
    assert parse_events(later)[0]["data"]["alert_id"] == own[1]["alert_id"]


def test_the_stream_counts_its_clients(world: World):
    assert "pvsignal_sse_clients 0.0" in world.client.get("/metrics").text
