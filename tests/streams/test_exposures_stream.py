"""The exposures consumer (`pvsignal consume --records exposures`): kill -9 at random points
and restart, several times; the store ends as a clean single-pass ingest of the same exposure
records leaves it, every poison message is in pvsignal.exposures.dlq with its reason, and the
planted pair's sequential test alerts once on the alerts topic."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from pvsignal.exposures import ExposureIngestor
from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate.exposures import PilotConfig, pilot_stream
from pvsignal.store import SqlStore, open_store
from streams.cli import STARTED
from streams.consumer import ConsumerConfig, StreamConsumer
from streams.metrics import StreamMetrics
from tests.streams.conftest import running, wait_for
from tests.support.kafka import (
    consume_command,
    create_topic,
    next_offsets,
    produce,
    read_all,
    topic_name,
)

KILLS = 4
REPO = Path(__file__).resolve().parents[2]
POISON = [
    b"not json at all",
    b'{"exposure_id": "BAD-1", "product_id": "LC-P01"}',  # no institution, no start
    b'{"exposure_id": "BAD-2", "product_id": "LC-P01", "institution_id": "LC-HOSP-01", '
    b'"start": "2025-01-01", "patients": -4}',
]


def start(bootstrap: str, topic: str, url: str, scopes: Path, log: Path) -> subprocess.Popen:
    command = consume_command(
        bootstrap,
        topic,
        url,
        "--records",
        "exposures",
        "--scope-config",
        str(scopes),
        "--batch-size",
        "50",
        "--detect-interval",
        "0",
    )
    runs = log.read_text().count(STARTED) if log.exists() else 0
    with log.open("ab") as output:
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
    wait_for(
        lambda: log.read_text().count(STARTED) > runs or process.poll() is not None,
        60,
        "the consumer to install its signal handlers",
    )
    assert process.poll() is None, log.read_text()[-3000:]
    return process


def prepared(url: str, stream, config: ScopeConfig) -> SqlStore:
    """The registry, the institutions and every case, ingested beforehand: the exposures then
    move the sequential tests."""
    store = open_store(url)
    store.save_products(stream.products)
    store.save_institutions(stream.institutions)
    lines = stream.report_lines()
    Ingestor(store, config).apply([RawRecord(f"r:{i}", line) for i, line in enumerate(lines)])
    return store


def exposure_state(store: SqlStore) -> list[tuple]:
    rows = store._query(
        "SELECT owner, exposure_id, version, status, product, patients, age_years FROM exposures"
    )
    return sorted(tuple(row) for row in rows)


def applied(url: str, topic: str) -> int:
    store = open_store(url)
    try:
        return sum(store.offsets(topic).values())
    finally:
        store.close()


def test_kill_9_then_restart_applies_each_exposure_once_and_alerts_once(kafka_broker, tmp_path):
    stream = pilot_stream(PilotConfig(seed=3))
    config = ScopeConfig.model_validate(stream.scopes)
    scopes = tmp_path / "scopes.yaml"
    scopes.write_text(json.dumps(stream.scopes))
    lines = stream.exposure_lines()
    rng = random.Random(5)
    for poison in POISON:  # anywhere in the stream
        lines.insert(rng.randrange(len(lines)), poison)
    topic = create_topic(kafka_broker, topic_name("exposures"), partitions=3)
    messages = [(_key(line), line, [("content-type", b"application/json")]) for line in lines]
    coordinates = produce(kafka_broker, topic, messages)
    url = f"sqlite:///{tmp_path}/stream.db"
    prepared(url, stream, config).close()
    log = tmp_path / "consumer.log"

    for kill in range(1, KILLS + 1):
        process = start(kafka_broker, topic, url, scopes, log)
        target = len(lines) * kill // (KILLS + 1)
        wait_for(lambda t=target: applied(url, topic) >= t, 90, f"{target} applied")
        time.sleep(rng.uniform(0, 0.25))
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL

    process = start(kafka_broker, topic, url, scopes, log)
    expected_offsets = next_offsets(coordinates)
    store = open_store(url)

    def finished() -> bool:
        return store.offsets(topic) == expected_offsets and not store.pending_alerts()

    wait_for(finished, 120, "the last run to apply everything and publish every alert")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()[-3000:]

    # The same exposures as one clean pass; no batch applied twice (its rejects would repeat).
    reference = prepared(f"sqlite:///{tmp_path}/reference.db", stream, config)
    ExposureIngestor(reference, config).ingest(
        RawRecord(f"line {i}", line) for i, line in enumerate(lines)
    )
    assert exposure_state(store) == exposure_state(reference)
    locations = [r["location"] for r in store.rejects(limit=100_000)]
    assert len(locations) == len(set(locations)), "a batch was applied twice"
    assert len(locations) == len(POISON)

    # Each poison message is a dead letter with its reason and source.
    poisoned = {coordinates[lines.index(p)] for p in POISON}
    letters = read_all(kafka_broker, f"{topic}.dlq")
    found = {
        (int(dict(r.headers)["source-partition"]), int(dict(r.headers)["source-offset"]))
        for r in letters
    }
    assert found == poisoned
    reasons = {dict(r.headers)["error"].decode() for r in letters}
    assert reasons == {"not_json", "invalid_exposure"}

    # The planted pair's test signalled once; its alert is on the topic exactly once.
    published = [orjson.loads(r.value) for r in read_all(kafka_broker, f"{topic}.alerts")]
    ids = [alert["alert_id"] for alert in published]
    assert len(ids) == len(set(ids)), "an alert was produced twice"
    news = [(a["product_id"], a["pt"]) for a in published if a["changes"].get("maxsprt") == "new"]
    assert news.count(stream.planted) == 1, news
    test = store.sequential_tests("lecheng-active")[stream.planted]
    assert test["signalled_at"] is not None and test["llr"] >= test["critical_value"]
    store.close()
    reference.close()


def _key(line: bytes) -> bytes | None:
    try:
        return orjson.loads(line)["exposure_id"].encode()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def test_an_ingest_only_exposures_consumer_leaves_tests_and_alerts_to_the_reports_leader(
    kafka_broker, tmp_path
):
    """The chart's pair of consumers: the exposures consumer (--no-detect --no-publish) only
    writes exposures; the reports consumer's leader, with no report arriving at all, runs the
    sequential tests because the store's exposures mark moved, and alone publishes the alert."""
    stream = pilot_stream(PilotConfig(seed=3))
    config = ScopeConfig.model_validate(stream.scopes)
    url = f"sqlite:///{tmp_path}/store.db"
    prepared(url, stream, config).close()
    exposures, reports = topic_name("exposures"), topic_name("reports")
    for name in (exposures, f"{exposures}.dlq", f"{exposures}.alerts", reports, f"{reports}.dlq"):
        create_topic(kafka_broker, name)

    def consumer(topic: str, **options) -> StreamConsumer:
        settings = ConsumerConfig(
            bootstrap=kafka_broker,
            topic=topic,
            group=None,
            dlq_topic=f"{topic}.dlq",
            alerts_topic=f"{topic}.alerts",
            batch_size=50,
            detect_seconds=0,
            **options,
        )
        metrics = StreamMetrics(CollectorRegistry())
        return StreamConsumer(settings, store_url=url, scopes=config, metrics=metrics)

    leader = consumer(reports)
    ingest_only = consumer(exposures, records="exposures", detect=False, publish=False)
    runs = "pvsignal_detector_run_seconds_count"
    lines = stream.exposure_lines()
    store = open_store(url)
    try:
        with running(leader):
            # The leader's first run (over every scope) is over before any exposure exists.
            wait_for(lambda: leader.metrics.registry.get_sample_value(runs), 60, "a first run")
            tests = store.sequential_tests("lecheng-active").values()
            assert all(t["observed"] == 0 for t in tests)
            header = [("content-type", b"application/json")]
            produce(kafka_broker, exposures, [(_key(line), line, header) for line in lines])
            with running(ingest_only):

                def alerted() -> bool:
                    applied = sum(store.offsets(exposures).values()) == len(lines)
                    test = store.sequential_tests("lecheng-active").get(stream.planted)
                    signalled = test is not None and test["signalled_at"] is not None
                    return applied and signalled and not store.pending_alerts()

                wait_for(alerted, 120, "the exposures, the planted test's signal and its alert")
        assert not ingest_only.metrics.registry.get_sample_value(runs)  # it never tested
        published = [orjson.loads(r.value) for r in read_all(kafka_broker, f"{reports}.alerts")]
        news = [(a["product_id"], a["pt"]) for a in published if a["changes"].get("maxsprt")]
        assert news == [stream.planted]
        assert read_all(kafka_broker, f"{exposures}.alerts") == []
        assert store.offsets(reports) == {}  # no report ever arrived
    finally:
        store.close()
