"""Two consumers in one group over four partitions, sharing a PostgreSQL store, end where
one process ends. The only test here that joins a consumer group (a join costs seconds)."""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from pvsignal.scopes import ScopeConfig
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.store import open_store
from streams.alerts import alert_id_of
from streams.consumer import ConsumerConfig, StreamConsumer
from streams.metrics import StreamMetrics
from tests.streams.conftest import (
    assert_equals_single_pass,
    keyed,
    new_store,
    offsets_reached,
    running,
    wait_for,
)
from tests.support.kafka import create_topic, next_offsets, produce, read_all, topic_name

# Tansu's group join takes about half the session timeout.
FAST_GROUP = {"session_timeout_ms": 6_000, "heartbeat_interval_ms": 1_000}


def member(bootstrap, topic, group, url, registry) -> StreamConsumer:
    config = ConsumerConfig(
        bootstrap=bootstrap,
        topic=topic,
        group=group,
        dlq_topic=f"{topic}.dlq",
        alerts_topic=f"{topic}.alerts",
        batch_size=200,
        detect_seconds=0.5,
        backoff=(0.1, 1.0),
        kafka=FAST_GROUP,
    )
    return StreamConsumer(
        config, store_url=url, scopes=ScopeConfig(), metrics=StreamMetrics(registry)
    )


def test_two_members_of_a_group_equal_one_process(kafka_broker, postgres_url, tmp_path):
    simulation = simulate(SimulationConfig(reports=4_000, seed=31, malformed_rate=0.02))
    lines = list(simulation.lines())
    topic = create_topic(kafka_broker, topic_name("reports"), partitions=4)
    group = f"{topic}.group"
    url = postgres_url()
    new_store(url, simulation.products)
    registries = CollectorRegistry(), CollectorRegistry()
    first = member(kafka_broker, topic, group, url, registries[0])
    second = member(kafka_broker, topic, group, url, registries[1])

    coordinates = produce(kafka_broker, topic, keyed(lines[:1_500]))
    with running(first):
        wait_for(lambda: first.ready, 60, "the first member to join")
        with running(second):
            # The second member's join rebalances the group while reports keep coming.
            coordinates += produce(kafka_broker, topic, keyed(lines[1_500:2_500]))
            wait_for(lambda: second.ready and len(second._owned) == 2, 60, "a rebalance")
            coordinates += produce(kafka_broker, topic, keyed(lines[2_500:]))
            wait_for(offsets_reached(url, topic, next_offsets(coordinates)), 90, "all applied")
            store = open_store(url)
            wait_for(lambda: not store.pending_alerts(), 60, "every alert published")
            store.close()

    consumed = [r.get_sample_value("pvsignal_reports_consumed_total") for r in registries]
    assert all(consumed) and sum(consumed) == len(lines), consumed  # both, once each
    got = assert_equals_single_pass(
        url, f"sqlite:///{tmp_path}/reference.db", simulation.products, lines
    )

    # Alerts: only the leader detects and publishes, so each alert is on the topic once.
    alert_ids = [alert_id_of(r.headers, r.value) for r in read_all(kafka_broker, f"{topic}.alerts")]
    assert len(alert_ids) == len(set(alert_ids))
    assert sorted(alert_ids) == [a["alert_id"] for a in got.alerts(limit=1_000_000)]

    # Kafka's committed offsets (for tools) followed the store's: last applied + 1.
    probe = KafkaConsumer(bootstrap_servers=kafka_broker, group_id=group)
    committed = {p: probe.committed(TopicPartition(topic, p)) for p in range(4)}
    probe.close()
    assert committed == got.offsets(topic) == next_offsets(coordinates)
    got.close()
