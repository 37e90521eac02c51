"""The alert publisher: each outbox alert on the topic exactly once, even when the process
dies between the broker's ack and marking the alert published."""

from __future__ import annotations

import sqlite3

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

from streams.alerts import AlertPublisher, alert_id_of
from streams.metrics import StreamMetrics
from tests.support.kafka import create_topic, read_all, topic_name


class Outbox:
    """The store's outbox in memory; ``failing_marks`` marks fail as if the process died."""

    def __init__(self) -> None:
        self.rows: dict[int, dict] = {}
        self.published: set[int] = set()
        self.failing_marks = 0

    def add(self, count: int) -> None:
        for alert_id in range(len(self.rows) + 1, len(self.rows) + count + 1):
            product = f"P-{alert_id % 7:04d}"
            transition = ("new", "ongoing", "closed")[alert_id % 3]
            payload = {"product_id": product, "pt": "Rash", "transition": transition}
            self.rows[alert_id] = {"alert_id": alert_id, "product_id": product, "payload": payload}

    def pending_alerts(self, limit: int = 1000) -> list[dict]:
        pending = [row for i, row in sorted(self.rows.items()) if i not in self.published]
        return pending[:limit]

    def mark_alerts_published(self, alert_ids: list[int]) -> None:
        if self.failing_marks:
            self.failing_marks -= 1
            raise sqlite3.OperationalError("the process died here (simulated)")
        self.published |= set(alert_ids)


@pytest.fixture
def publisher_for(kafka_broker):
    producers = []

    def make(outbox, topic, registry=None):
        producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")
        producers.append(producer)
        return AlertPublisher(
            outbox,
            producer,
            lambda: KafkaConsumer(
                bootstrap_servers=kafka_broker, enable_auto_commit=False, fetch_max_wait_ms=100
            ),
            topic=topic,
            metrics=StreamMetrics(registry or CollectorRegistry()),
        )

    yield make
    for producer in producers:
        producer.close()


def on_topic(bootstrap, topic) -> list[int]:
    return [alert_id_of(r.headers, r.value) for r in read_all(bootstrap, topic)]


def test_alerts_are_published_as_json_keyed_by_product(kafka_broker, publisher_for):
    topic = create_topic(kafka_broker, topic_name("alerts"), partitions=3)
    outbox, registry = Outbox(), CollectorRegistry()
    outbox.add(9)
    assert publisher_for(outbox, topic, registry).publish() == 9
    records = read_all(kafka_broker, topic)
    assert sorted(orjson.loads(r.value)["alert_id"] for r in records) == list(range(1, 10))
    for record in records:
        alert = orjson.loads(record.value)
        assert record.key == alert["product_id"].encode()
        assert dict(record.headers)["content-type"] == b"application/json"
    assert outbox.published == set(range(1, 10)) and not outbox.pending_alerts()
    emitted = registry.get_sample_value("pvsignal_alerts_emitted_total", {"transition": "new"})
    assert emitted == 3
    assert (
        registry.get_sample_value("pvsignal_alerts_emitted_total", {"transition": "weakened"}) == 0
    )


def test_a_crash_between_ack_and_mark_does_not_send_twice(kafka_broker, publisher_for):
    # 600 alerts on one partition: reading back must go past the first window of 256.
    topic = create_topic(kafka_broker, topic_name("alerts"), partitions=1)
    outbox = Outbox()
    outbox.add(10)
    publisher_for(outbox, topic).publish()
    outbox.add(600)
    outbox.failing_marks = 1
    with pytest.raises(sqlite3.OperationalError):
        publisher_for(outbox, topic).publish()  # sent and acked, never marked
    assert len(outbox.pending_alerts(limit=10_000)) == 600
    outbox.add(5)  # and new ones meanwhile

    restarted = publisher_for(outbox, topic)
    assert restarted.reconcile() == list(range(11, 611))
    assert restarted.publish() == 5
    assert on_topic(kafka_broker, topic) == list(range(1, 616))  # each once, in order


def test_reconcile_finds_alerts_on_every_partition(kafka_broker, publisher_for):
    topic = create_topic(kafka_broker, topic_name("alerts"), partitions=4)
    outbox = Outbox()
    outbox.add(40)
    outbox.failing_marks = 1
    with pytest.raises(sqlite3.OperationalError):
        publisher_for(outbox, topic).publish()
    outbox.add(3)  # not sent: these stay pending
    restarted = publisher_for(outbox, topic)
    assert restarted.reconcile() == list(range(1, 41))
    assert [a["alert_id"] for a in outbox.pending_alerts()] == [41, 42, 43]
    restarted.publish()
    assert sorted(on_topic(kafka_broker, topic)) == list(range(1, 44))


def test_nothing_pending_reads_nothing_back(kafka_broker, publisher_for):
    never_created = topic_name("alerts")
    assert publisher_for(Outbox(), never_created).publish() == 0
