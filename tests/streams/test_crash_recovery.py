"""kill -9 the consumer at random points while it ingests, restart it, several times: the
store ends as a clean single-pass ingest leaves it, and no alert is produced twice or lost."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import orjson

from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.store import open_store
from streams.cli import STARTED
from tests.streams.conftest import (
    assert_equals_single_pass,
    keyed,
    new_store,
    reject_locations,
    wait_for,
)
from tests.support.kafka import (
    consume_command,
    create_topic,
    next_offsets,
    produce,
    read_all,
    topic_name,
)

KILLS = 5
REPO = Path(__file__).resolve().parents[2]


def start(bootstrap: str, topic: str, url: str, log: Path) -> subprocess.Popen:
    # Many small transactions: many places for a kill to land.
    command = consume_command(
        bootstrap, topic, url, "--batch-size", "100", "--detect-interval", "0"
    )
    runs = log.read_text().count(STARTED) if log.exists() else 0
    with log.open("ab") as output:
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
    # Signals sent before the consumer installs its handlers would kill it (exit -15): wait
    # for the line it prints once they are installed.
    wait_for(
        lambda: log.read_text().count(STARTED) > runs or process.poll() is not None,
        60,
        "the consumer to install its signal handlers",
    )
    assert process.poll() is None, log.read_text()[-3000:]
    return process


def progress(url: str, topic: str) -> tuple[int, int]:
    """Messages applied (sum of the store's next offsets) and alerts not yet published."""
    store = open_store(url)
    try:
        return sum(store.offsets(topic).values()), len(store.pending_alerts())
    finally:
        store.close()


def test_kill_9_at_random_points_then_restart(kafka_broker, tmp_path):
    simulation = simulate(SimulationConfig(reports=5_000, seed=21, malformed_rate=0.02))
    lines = list(simulation.lines())
    topic = create_topic(kafka_broker, topic_name("reports"), partitions=3)
    coordinates = produce(kafka_broker, topic, keyed(lines))
    url = f"sqlite:///{tmp_path}/stream.db"
    new_store(url, simulation.products)
    log = tmp_path / "consumer.log"
    chance = random.Random(4)

    # Each kill waits for the next share of the stream to be applied, then lands a random
    # 0-250 ms later: inside a batch's transaction, a detector run, a publish, or between.
    for kill in range(1, KILLS + 1):
        process = start(kafka_broker, topic, url, log)
        target = len(lines) * kill // (KILLS + 1)
        wait_for(lambda t=target: progress(url, topic)[0] >= t, 60, f"{target} applied")
        time.sleep(chance.uniform(0, 0.25))
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL

    process = start(kafka_broker, topic, url, log)
    expected_offsets = next_offsets(coordinates)
    store = open_store(url)

    def finished() -> bool:
        return store.offsets(topic) == expected_offsets and not store.pending_alerts()

    wait_for(finished, 90, "the last run to apply everything and publish every alert")
    store.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()[-3000:]

    # The same cases and counts as a clean single-pass ingest of the same reports.
    got = assert_equals_single_pass(
        url, f"sqlite:///{tmp_path}/reference.db", simulation.products, lines
    )
    locations = reject_locations(got)
    malformed = {coordinates[n - 1] for n in simulation.truth.malformed_lines}
    assert {f"{topic}:{p}@{o}" for p, o in malformed} <= set(locations)

    # Every alert of the outbox is on the topic exactly once.
    published = [orjson.loads(r.value) for r in read_all(kafka_broker, f"{topic}.alerts")]
    alert_ids = [alert["alert_id"] for alert in published]
    assert len(alert_ids) == len(set(alert_ids)), "an alert was produced twice"
    outbox = got.alerts(limit=1_000_000)
    assert sorted(alert_ids) == [a["alert_id"] for a in outbox]
    assert all(a["published_at"] for a in outbox)
    # The same state never alerts twice: replayed detection after a crash does not re-alert.
    transitions = defaultdict(list)
    for alert in sorted(published, key=lambda a: a["alert_id"]):
        for measure, transition in alert["changes"].items():
            transitions[(alert["scope"], alert["product_id"], alert["pt"], measure)].append(
                transition
            )
    for key, sequence in transitions.items():
        for before, after in itertools.pairwise(sequence):
            assert before != after or before in ("strengthened", "weakened"), (key, sequence)

    # Each planted signal raised exactly one `new` alert per measure that flagged it.
    for planted in simulation.signals:
        news = [
            measure
            for alert in published
            if (alert["scope"], alert["product_id"], alert["pt"])
            == ("all", planted.product_id, planted.pt)
            for measure, transition in alert["changes"].items()
            if transition == "new"
        ]
        assert news and len(news) == len(set(news)), (planted, news)

    # Poison: each malformed line in the DLQ (at least once: a kill can repeat a dead letter).
    letters = {
        (int(dict(r.headers)["source-partition"]), int(dict(r.headers)["source-offset"]))
        for r in read_all(kafka_broker, f"{topic}.dlq")
    }
    assert letters == malformed
    assert log.read_text().count("not ready") < 50  # restarts, not a retry storm
    got.close()


def test_sigterm_as_soon_as_the_consumer_says_it_started_stops_it_cleanly(kafka_broker, tmp_path):
    topic = create_topic(kafka_broker, topic_name("reports"), partitions=1)
    url = f"sqlite:///{tmp_path}/stream.db"
    new_store(url, [])
    log = tmp_path / "consumer.log"
    process = start(kafka_broker, topic, url, log)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
