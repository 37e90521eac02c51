"""Alerts a safety team can act on, in the demo store (`pvsignal serve --demo`): an unrelated
report raises none, a signal crossing its threshold raises one per subscriber naming every
measure, a daily digest lists each change once; ``?since=``; webhook targets in production."""

from __future__ import annotations

import collections
import datetime as dt
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role, issue_key
from api.demo import load_demo
from api.problems import UnprocessableError
from api.webhooks import check_url
from pvsignal.settings import Settings
from pvsignal.simulate.exposures import MONITORED, UNMONITORED
from pvsignal.store import open_store
from tests.api.conftest import World, report, test_settings
from tests.api.test_webhooks import Receiver, deliveries, subscribe, wait_for

MEASURES = {"prr", "ror", "ic", "ebgm"}


@dataclass(frozen=True)
class Demo:
    path: Path
    keys: dict[str, str]
    # Two MAHs' products, each with a PT it was never reported with (a novel pair).
    plants: dict[str, tuple[str, str, str]]  # who -> (product_id, product name, PT)


PILOT_PRODUCTS = {p for p, *_ in MONITORED} | {UNMONITORED[0]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    loaded = load_demo(f"sqlite:///{path}")
    store = open_store(f"sqlite:///{path}")
    try:
        products = {p.product_id: p for p in store.load_products()}
        counts = store.scope_counts("all")
        reported = collections.Counter(counts.pair_product)
        pairs = set(zip(counts.pair_product, counts.pair_event, strict=True))
        # Background PTs: some dozens of cases each, the rarest first.
        background = collections.Counter()
        for pt, n in zip(counts.event_rows[0], counts.event_rows[2], strict=True):
            background[pt] += n
        pts = sorted((n, pt) for pt, n in background.items() if n >= 20)
        other_mah = next(x.mah_id for x in products.values() if x.mah_id != loaded.mah_id)
        plants = {}
        for who, mah in (("mah", loaded.mah_id), ("other_mah", other_mah)):
            # The MAH's product with the fewest pairs, and a PT it was never reported with.
            # (Not one of the demo's active-monitoring pilot: those count in two more scopes.)
            product_id = min(
                (
                    p
                    for p, x in products.items()
                    if x.mah_id == mah and reported[p] and p not in PILOT_PRODUCTS
                ),
                key=lambda p: (reported[p], p),
            )
            taken = {pt for _, pt, _ in plants.values()}
            pt = next(pt for _, pt in pts if (product_id, pt) not in pairs and pt not in taken)
            plants[who] = (product_id, products[product_id].names[0], pt)
        keys = {
            "regulator": loaded.regulator_key,
            "mah": loaded.mah_key,
            "other_mah": issue_key(store, Role.mah, other_mah, "other MAH")[0],
            "hospital": issue_key(store, Role.hospital, "H-DEMO", "demo hospital")[0],
        }
    finally:
        store.close()
    return Demo(path, keys, plants)


@pytest.fixture
def demo_world(demo: Demo, tmp_path: Path) -> Iterator[World]:
    target = tmp_path / "demo.db"
    shutil.copy(demo.path, target)
    url = f"sqlite:///{target}"
    with TestClient(create_app(test_settings(url))) as client:
        world = World(client, demo.keys, url)
        # A process's first detection judges every pair by its rule alone (it has no counts
        # of a previous run to compare): run it before the test's reports.
        world.runtime.scheduler.notify(set(world.runtime.known_scopes))
        world.settle()
        yield world


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    found = {name: Receiver() for name in ("mah", "other_mah", "regulator", "digest")}
    yield found
    for receiver in found.values():
        receiver.close()


def post(world: World, lines: list[bytes]) -> None:
    response = world.client.post(
        "/v1/reports",
        content=b"\n".join(lines),
        headers={**world.headers("hospital"), "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    world.settle()


def raised_since(world: World, moment: str) -> list[dict]:
    response = world.get("regulator", "/v1/alerts", params={"since": moment, "limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()["alerts"]


def test_one_alert_per_subscriber_per_change_and_a_daily_digest_lists_each_once(
    demo: Demo, demo_world: World, receivers: dict[str, Receiver]
):
    world = demo_world
    subscriptions = {
        who: subscribe(world, who, receivers[who].url) for who in ("mah", "other_mah", "regulator")
    }
    digest = world.client.post(
        "/v1/subscriptions",
        json={"url": receivers["digest"].url, "digest": "daily"},
        headers=world.headers("regulator"),
    )
    assert digest.status_code == 201, digest.text
    assert digest.json()["digest"] == "daily"
    digest_id = digest.json()["subscription_id"]
    start = dt.datetime.now(dt.UTC).isoformat()

    # One unrelated report (every count's total moves, so every level moves): no alert.
    post(world, [report("UNRELATED-1", "an unrelated product", ["Headache"])])
    time.sleep(0.5)  # what would be queued goes out within the poll interval
    assert raised_since(world, start) == []
    assert all(not r.requests for r in receivers.values())

    # A novel pair for one product of each MAH crosses its thresholds: one alert each.
    planted = {}
    for who, (product_id, name, pt) in demo.plants.items():
        post(world, [report(f"PLANT-{who}-{i}", name, [pt]) for i in range(12)])
        planted[who] = (product_id, pt)
    raised = raised_since(world, start)
    assert [(a["product_id"], a["pt"]) for a in raised] == list(planted.values())
    for alert in raised:
        assert alert["transition"] == "new"
        assert set(alert["measures"]) == MEASURES, "every measure's state in the one alert"
        assert alert["changes"] and set(alert["changes"].values()) == {"new"}
        assert alert["product"]["names"] and alert["mah_id"] and alert["pathway"]
        assert world.get("regulator", alert["link"]).status_code == 200

    wait_for(lambda: all(len(receivers[w].requests) >= n for w, n in _expected().items()))
    time.sleep(0.5)  # nothing more arrives
    for who, expected in _expected().items():
        assert len(receivers[who].requests) == expected, who
    assert [(a["product_id"], a["pt"]) for a in receivers["mah"].alerts()] == [planted["mah"]]
    assert [(a["product_id"], a["pt"]) for a in receivers["other_mah"].alerts()] == [
        planted["other_mah"]
    ]
    assert [a["alert_id"] for a in receivers["regulator"].alerts()] == [
        a["alert_id"] for a in raised
    ]
    assert {d["status"] for d in deliveries(world, "mah", subscriptions["mah"]["subscription_id"])}
    assert receivers["digest"].requests == [], "a digest waits for the end of its day"

    # The feed fanning the same alerts out again adds nothing (exactly once per alert).
    world.runtime.feed._stream_cursor = 0
    world.client.portal.call(world.runtime.feed.step)
    # The day ends: one digest delivery listing each change once, signed like the others.
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1, minutes=2)
    for _ in range(2):
        world.client.portal.call(world.runtime.webhooks.deliver_due, tomorrow)
    wait_for(lambda: receivers["digest"].requests)
    [(headers, body, _)] = receivers["digest"].requests
    document = orjson.loads(body)
    assert document["type"] == "signal.digest"
    assert document["digest"]["digest"] == "daily"
    assert (
        document["digest"]["start"]
        == dt.datetime.fromisoformat(start)
        .replace(hour=0, minute=0, second=0, microsecond=0)
        .isoformat()
    )
    listed = [a["alert_id"] for a in document["alerts"]]
    assert listed == [a["alert_id"] for a in raised]
    assert all(set(a["measures"]) == MEASURES for a in document["alerts"])
    assert headers["Pvsignal-Signature"].startswith("v1=")
    [made] = deliveries(world, "regulator", digest_id)
    assert made["status"] == "delivered" and made["period_start"] == document["digest"]["start"]
    assert made["alert_id"] == listed[-1]


def _expected() -> dict[str, int]:
    return {"mah": 1, "other_mah": 1, "regulator": 2}


def test_since_keeps_later_alerts_and_refuses_a_bad_time(demo_world: World):
    world = demo_world
    every = world.get("regulator", "/v1/alerts", params={"limit": 1000}).json()["alerts"]
    assert every and "ongoing" not in {a["transition"] for a in every}
    assert raised_since(world, "2000-01-01T00:00:00Z") == every[: len(every)]
    assert raised_since(world, "2999-01-01T00:00:00+08:00") == []
    cut = dt.datetime.fromisoformat(every[0]["at"])
    naive = cut.replace(tzinfo=None).isoformat()  # no offset: UTC
    assert raised_since(world, naive)[0]["alert_id"] == every[0]["alert_id"]
    own = world.get("mah", "/v1/alerts", params={"since": "2000-01-01T00:00:00Z"}).json()
    assert own["alerts"] and {a["mah_id"] for a in own["alerts"]} == {every_mah(world)}
    bad = world.get("regulator", "/v1/alerts", params={"since": "yesterday"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.since"
    assert bad.json()["errors"][0]["value"] == "yesterday"


def every_mah(world: World) -> str:
    return world.get("mah", "/v1/products").json()["products"][0]["mah_id"]


PRODUCTION = Settings(environment="production", secret_key="s" * 40)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("https://[64:ff9b::a9fe:a9fe]/", "NAT64 form of 169.254.169.254"),
        ("https://[64:ff9b::7f00:1]/hook", "NAT64 form of 127.0.0.1"),
        ("https://[64:ff9b::a00:1]/hook", "NAT64 form of 10.0.0.1"),
        ("https://[64:ff9b:1::a9fe:a9fe]/", "local-use NAT64"),
        ("https://[::ffff:169.254.169.254]/", "IPv4-mapped form of 169.254.169.254"),
        ("https://[2002:a9fe:a9fe::1]/", "6to4 form of 169.254.169.254"),
        ("https://[::127.0.0.1]/", "IPv4-compatible form of 127.0.0.1"),
        ("https://[fe80::1]/", "link-local"),
        ("https://169.254.169.254/", "link-local"),
        ("https://2852039166/", "link-local"),
        ("https://0x7f.1/", "loopback"),
        ("https://localhost/", "loopback"),
        ("https://100.64.0.1/", "not globally routable"),
    ],
)
def test_production_refuses_every_address_that_is_not_globally_routable(url: str, named: str):
    with pytest.raises(UnprocessableError) as refused:
        check_url(url, PRODUCTION)
    [error] = refused.value.errors
    assert error["field"] == "body.url" and error["value"] == url
    assert named in error["reason"]


@pytest.mark.parametrize(
    "url",
    ["https://[64:ff9b::808:808]/hook", "https://8.8.8.8/hook", "https://hooks.example.com/x"],
)
def test_production_accepts_global_targets(url: str):
    check_url(url, PRODUCTION)  # NAT64 of a global IPv4 address reaches that address


def test_the_api_refuses_the_nat64_link_local_target(demo: Demo, tmp_path: Path):
    target = tmp_path / "demo.db"
    shutil.copy(demo.path, target)
    settings = test_settings(
        f"sqlite:///{target}",
        environment="production",
        secret_key="s" * 40,
        webhook_allowed_hosts=(),
        webhook_allow_private=None,
    )
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/subscriptions",
            json={"url": "https://[64:ff9b::a9fe:a9fe]/"},
            headers={"Authorization": f"Bearer {demo.keys['mah']}"},
        )
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "body.url" and error["value"] == "https://[64:ff9b::a9fe:a9fe]/"
    assert "NAT64 form of 169.254.169.254" in error["reason"]


def _every_alert(world: World, who: str, **params) -> list[dict]:
    """Every alert the caller may read, paged through in the given order."""
    found: list[dict] = []
    cursor: dict = {}
    while True:
        page = world.get(who, "/v1/alerts", params={**params, **cursor, "limit": 7}).json()
        found += page["alerts"]
        if params.get("order") == "newest":
            if page["next_before"] is None:
                return found
            cursor = {"before": page["next_before"]}
        else:
            if page["next_after"] is None:
                return found
            cursor = {"after": page["next_after"]}


def test_newest_first_pages_back_over_the_same_alerts_as_oldest_first(demo_world: World):
    world = demo_world
    for who in ("regulator", "mah", "other_mah"):
        oldest = _every_alert(world, who)
        newest = _every_alert(world, who, order="newest")
        assert [a["alert_id"] for a in newest] == [a["alert_id"] for a in reversed(oldest)]
        assert len(oldest) > 7  # more than one page
    mine = {a["alert_id"] for a in _every_alert(world, "mah", order="newest")}
    theirs = {a["alert_id"] for a in _every_alert(world, "other_mah", order="newest")}
    assert mine and theirs and not mine & theirs
    # With the other filters, and a window: what oldest-first gives, reversed.
    lecheng = _every_alert(world, "regulator", scope="lecheng")
    window = {"after": lecheng[1]["alert_id"], "before": lecheng[-2]["alert_id"]}
    newest = world.get(
        "regulator", "/v1/alerts", params={"scope": "lecheng", "order": "newest", **window}
    ).json()
    assert [a["alert_id"] for a in newest["alerts"]] == [
        a["alert_id"] for a in reversed(lecheng[2:-2])
    ]
