"""The consumer against a real broker: poison to the DLQ, good reports counted exactly once,
failures waited out."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from pvsignal.readers.e2b import read_e2b
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.store import open_store
from streams.consumer import ConsumerConfig, StreamConsumer
from streams.metrics import StreamMetrics
from tests.streams.conftest import (
    NoDetection,
    active_cases,
    case_ids,
    keyed,
    lines_as_records,
    new_store,
    offsets_reached,
    reference,
    reject_locations,
    running,
    state,
    wait_for,
)
from tests.support.kafka import create_topic, next_offsets, produce, read_all, topic_name
from tests.support.postgres import free_port

E2B_DATA = Path(__file__).parents[1] / "pvsignal" / "readers" / "data"
XML = [("content-type", b"application/hl7-v3+xml")]


def make_consumer(bootstrap, topic, url, registry=None, opener=open_store, **options):
    config = ConsumerConfig(
        bootstrap=bootstrap,
        topic=topic,
        group=None,
        dlq_topic=f"{topic}.dlq",
        alerts_topic=f"{topic}.alerts",
        detect_seconds=0,
        backoff=(0.1, 0.5),
        **options,
    )
    return StreamConsumer(
        config,
        store_url=url,
        scopes=ScopeConfig(),
        metrics=StreamMetrics(registry or CollectorRegistry()),
        detector_factory=NoDetection,
        open_store=opener,
    )


def sample(registry, name, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def poison_reason(line: bytes) -> str:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return "not_json"
    return "invalid_report"


def test_poison_lands_in_the_dlq_with_its_reason_and_good_reports_are_all_counted(
    kafka_broker, tmp_path
):
    simulation = simulate(SimulationConfig(reports=600, seed=11, malformed_rate=0.05))
    lines = list(simulation.lines())
    malformed = set(simulation.truth.malformed_lines)
    # (message, the reason it is poison or None), in the order they are produced.
    plan = [
        (message, poison_reason(line) if number in malformed else None)
        for number, (message, line) in enumerate(zip(keyed(lines), lines, strict=True), 1)
    ]
    good_e2b = (E2B_DATA / "e2b_batch.xml").read_bytes()
    # The second report of this batch has an unreadable sex code; its first is fine.
    bad_e2b = good_e2b.replace(b'GenderCode code="1"', b'GenderCode code="9"')
    extras = [
        ((b"k1", b"\xff\xfe{}", []), "not_utf8"),
        ((b"k2", orjson.dumps({"case_id": "X", "text": "x" * 70_000}), []), "oversize"),
        ((b"k3", None, []), "empty"),
        ((b"k4", b"a,b,c", [("content-type", b"text/csv")]), "unknown_content_type"),
        ((b"k5", (E2B_DATA / "billion_laughs.xml").read_bytes(), XML), "xml_refused"),
        ((b"k6", (E2B_DATA / "xxe.xml").read_bytes(), XML), "xml_refused"),
        ((b"k7", b"<PORR_IN049016UV><oops>", XML), "xml_malformed"),
        ((b"k8", bad_e2b, XML), "invalid_report"),
        ((b"k9", good_e2b, XML), None),
    ]
    for n, extra in enumerate(extras, 1):
        plan.insert(60 * n, extra)  # interleaved with the good ones
    topic = create_topic(kafka_broker, topic_name("reports"), partitions=3)
    coordinates = produce(kafka_broker, topic, [message for message, _ in plan])
    url = f"sqlite:///{tmp_path}/stream.db"
    new_store(url, simulation.products)
    registry = CollectorRegistry()
    consumer = make_consumer(kafka_broker, topic, url, registry, max_message_bytes=64_000)

    with running(consumer):
        reached = offsets_reached(url, topic, next_offsets(coordinates))
        wait_for(reached, 60, "every message to be applied")
        wait_for(lambda: consumer.ready, 10, "readiness")

    # Every poison message is in the DLQ once, with its reason, source, key, value, headers.
    letters = {}
    for letter in read_all(kafka_broker, f"{topic}.dlq"):
        headers = dict(letter.headers)
        assert headers["source-topic"] == topic.encode()
        assert headers["error-detail"]
        source = (int(headers["source-partition"]), int(headers["source-offset"]))
        assert source not in letters
        letters[source] = (headers["error"].decode(), letter.key, letter.value, letter.headers)
    expected = {
        coordinates[i]: (reason, message[0], message[1])
        for i, (message, reason) in enumerate(plan)
        if reason is not None
    }
    assert {source: found[:3] for source, found in letters.items()} == expected
    for i, (message, reason) in enumerate(plan):
        if reason is not None:
            assert set(message[2]) <= set(letters[coordinates[i]][3])  # original headers kept

    # The good reports are all counted, as a clean ingest of the same reports counts them.
    (tmp_path / "good.xml").write_bytes(good_e2b)
    (tmp_path / "bad.xml").write_bytes(bad_e2b)
    records = lines_as_records(lines) + list(
        read_e2b([tmp_path / "good.xml", tmp_path / "bad.xml"])
    )
    expected_store = reference(f"sqlite:///{tmp_path}/reference.db", simulation.products, records)
    got = open_store(url)
    assert state(got) == state(expected_store)
    ids = case_ids(lines) | {"CN-BOAO-2024-000123", "CN-MAHX-2023-000777"}
    assert active_cases(got, ids) == active_cases(expected_store, ids)
    # ... and every poison message is kept among the store's rejects, at its coordinates.
    locations = [r["location"] for r in got.rejects(limit=100_000)]
    for i, (_, reason) in enumerate(plan):
        if reason is not None:
            partition, offset = coordinates[i]
            assert any(loc.startswith(f"{topic}:{partition}@{offset}") for loc in locations)
    got.close()
    expected_store.close()

    reasons = [reason for _, reason in plan if reason is not None]
    for reason in set(reasons):
        dead = sample(registry, "pvsignal_reports_dead_lettered_total", reason=reason)
        assert dead == reasons.count(reason)
    assert sample(registry, "pvsignal_reports_consumed_total") == len(plan)
    applied = sample(registry, "pvsignal_reports_applied_total")
    refused = sample(registry, "pvsignal_reports_rejected_total", reason="refused")
    valid_reports = simulation.truth.valid_lines + 2 + 1  # the good batch, half the bad one
    assert applied + refused == valid_reports
    assert sample(registry, "pvsignal_reports_redelivered_total") == 0
    assert sample(registry, "pvsignal_last_report_processed_timestamp_seconds") > 0
    assert sample(registry, "pvsignal_batch_duration_seconds_count") >= 1
    assert sample(registry, "pvsignal_consumer_ready") == 0  # closed


class Redelivering(StreamConsumer):
    """As if Kafka redelivered everything (a lost commit): after positioning at the store's
    offsets, every partition goes back to offset 0."""

    def _position(self, kafka, engine):
        super()._position(kafka, engine)
        for tp in kafka.consumer.assignment():
            kafka.consumer.seek(tp, 0)


def test_a_redelivered_batch_is_not_counted_twice(kafka_broker, tmp_path):
    simulation = simulate(SimulationConfig(reports=800, seed=12, malformed_rate=0.05))
    lines = list(simulation.lines())
    first, second = lines[:500], lines[500:]
    topic = create_topic(kafka_broker, topic_name("reports"), partitions=2)
    url = f"sqlite:///{tmp_path}/stream.db"
    new_store(url, simulation.products)

    coordinates = produce(kafka_broker, topic, keyed(first))
    with running(make_consumer(kafka_broker, topic, url)):
        wait_for(offsets_reached(url, topic, next_offsets(coordinates)), 60, "the first part")

    coordinates += produce(kafka_broker, topic, keyed(second))
    registry = CollectorRegistry()
    again = make_consumer(kafka_broker, topic, url, registry)
    again.__class__ = Redelivering
    with running(again):
        wait_for(offsets_reached(url, topic, next_offsets(coordinates)), 60, "the second part")

    assert sample(registry, "pvsignal_reports_redelivered_total") == len(first)
    assert sample(registry, "pvsignal_reports_consumed_total") == len(second)
    expected_store = reference(
        f"sqlite:///{tmp_path}/reference.db", simulation.products, lines_as_records(lines)
    )
    got = open_store(url)
    assert state(got) == state(expected_store)
    assert active_cases(got, case_ids(lines)) == active_cases(expected_store, case_ids(lines))
    locations = reject_locations(got)
    assert len(locations) == len(set(locations))  # no batch applied twice
    got.close()
    expected_store.close()


def flaky(failures: int, after: int):
    """An open_store whose stores fail ``failures`` batch writes, after ``after`` good ones,
    and do not answer a ping meanwhile."""
    left = {"after": after, "failures": failures, "opened": 0, "down": False}

    def opener(url):
        store = open_store(url)
        left["opened"] += 1
        batch, ping = store.batch, store.ping

        @contextmanager
        def failing_batch():
            if left["after"] > 0:
                left["after"] -= 1
            elif left["failures"] > 0:
                left["failures"] -= 1
                left["down"] = left["failures"] > 0
                raise sqlite3.OperationalError("disk I/O error (simulated)")
            with batch() as session:
                yield session

        store.batch = failing_batch
        store.ping = lambda: not left["down"] and ping()
        return store

    return opener, left


def test_a_database_outage_is_waited_out_and_nothing_is_lost(kafka_broker, tmp_path):
    simulation = simulate(SimulationConfig(reports=400, seed=13, malformed_rate=0.05))
    lines = list(simulation.lines())
    topic = create_topic(kafka_broker, topic_name("reports"), partitions=2)
    coordinates = produce(kafka_broker, topic, keyed(lines))
    url = f"sqlite:///{tmp_path}/stream.db"
    new_store(url, simulation.products)
    opener, left = flaky(failures=3, after=1)
    consumer = make_consumer(kafka_broker, topic, url, opener=opener, batch_size=100)
    readiness = []
    set_ready = consumer._set_ready
    consumer._set_ready = lambda ready: (readiness.append(ready), set_ready(ready))
    with running(consumer):
        wait_for(offsets_reached(url, topic, next_offsets(coordinates)), 60, "every message")
        wait_for(lambda: consumer.ready, 10, "readiness after the outage")

    assert left["failures"] == 0 and left["opened"] >= 2  # the store was reopened
    ready_then = readiness.index(True)
    not_ready = readiness.index(False, ready_then)
    assert True in readiness[not_ready:]  # ready, then not during the outage, then ready again
    expected_store = reference(
        f"sqlite:///{tmp_path}/reference.db", simulation.products, lines_as_records(lines)
    )
    got = open_store(url)
    assert state(got) == state(expected_store)
    got.close()
    expected_store.close()
    # Poison is sent again with a batch whose write failed: at least once, never lost.
    sources = {
        (dict(r.headers)["source-partition"], dict(r.headers)["source-offset"])
        for r in read_all(kafka_broker, f"{topic}.dlq")
    }
    assert len(sources) == simulation.truth.malformed


def test_without_a_broker_it_is_not_ready_and_still_stops(tmp_path):
    consumer = make_consumer(
        f"127.0.0.1:{free_port()}",
        "reports",
        f"sqlite:///{tmp_path}/s.db",
        kafka={"bootstrap_timeout_ms": 1_000},
    )
    began = time.monotonic()
    with running(consumer):
        time.sleep(1.0)
        assert not consumer.ready
    assert time.monotonic() - began < 5  # a stop is honoured within the bootstrap timeout
