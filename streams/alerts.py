"""Alerts out: the store's outbox published to ``pvsignal.alerts``, each alert exactly once.

The detector writes each alert (one per (scope, product, PT) change of a detection run, with
``transition``, ``changes`` per measure, every measure's state and statistics, the product's
names, MAH and pathway and a ``link``: see :mod:`pvsignal.detection`) to an outbox in the
store, in the transaction that changes the signal's state. The publisher sends pending alerts
as JSON keyed by ``product_id`` (with an ``alert-id`` header), waits for the broker's acks,
then marks them published.

A crash between the ack and the mark would send them again. So before it first publishes, and
after any failed send, the publisher reads back the tail of every partition of the topic and
marks the pending alerts it finds there as published without resending them. The producer is
idempotent (kafka-python's default), so its own retries add no copies and keep each partition
in send order; a partition is read back until an alert older than the oldest pending one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams import ALERTS_TOPIC
from streams.metrics import StreamMetrics

_PAGE = 1_000
_FIRST_WINDOW = 256  # messages per partition read back at first; grows x8 while needed

log = logging.getLogger(__name__)


class Outbox(Protocol):
    """What the publisher needs of the store."""

    def pending_alerts(self, limit: int = 1000) -> list[dict[str, Any]]: ...

    def mark_alerts_published(self, alert_ids: list[int]) -> None: ...


def alert_message(alert: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, JSON value and headers of one outbox row."""
    payload = {**alert["payload"], "alert_id": alert["alert_id"]}
    headers = [
        ("alert-id", str(alert["alert_id"]).encode()),
        ("content-type", b"application/json"),
    ]
    return str(alert["product_id"]).encode(), orjson.dumps(payload), headers


def alert_id_of(headers: list[tuple[str, bytes]] | None, value: bytes | None) -> int | None:
    """The alert id of a message on the alerts topic (header first, then the JSON body)."""
    for key, header in headers or ():
        if key == "alert-id" and header:
            return int(header)
    try:
        found = orjson.loads(value or b"null")
    except orjson.JSONDecodeError:
        return None
    return found.get("alert_id") if isinstance(found, dict) else None


class AlertPublisher:
    """Publishes the outbox; ``reader`` makes the consumer that reads the topic back."""

    def __init__(
        self,
        outbox: Outbox,
        producer: KafkaProducer,
        reader: Callable[[], KafkaConsumer],
        *,
        topic: str = ALERTS_TOPIC,
        metrics: StreamMetrics | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.outbox, self.producer, self.reader = outbox, producer, reader
        self.topic, self.metrics, self.timeout = topic, metrics, timeout
        self._reconciled = False

    def reset(self) -> None:
        """Read the topic back before the next publish (another process may have sent)."""
        self._reconciled = False

    def publish(self) -> int:
        """Send every pending alert, wait for the acks, mark them; return how many were sent."""
        if not self._reconciled:
            self.reconcile()
        sent = 0
        while pending := self.outbox.pending_alerts(limit=_PAGE):
            sent += self._send(pending)
        return sent

    def reconcile(self) -> list[int]:
        """Mark as published the pending alerts already on the topic; return their ids."""
        # A send of a failed publish can still be delivered: read back only once every send
        # is settled (KafkaTimeoutError meanwhile: retried later).
        self.producer.flush(timeout=self.timeout)
        pending = {a["alert_id"] for a in self.outbox.pending_alerts(limit=1_000_000)}
        found = sorted(pending & self._ids_on_topic(min(pending))) if pending else []
        if found:
            log.warning("alerts %s were on %s but not marked: marked now", found, self.topic)
            self.outbox.mark_alerts_published(found)
        self._reconciled = True
        return found

    def _send(self, pending: list[dict[str, Any]]) -> int:
        # Until these are acked and marked, a failure anywhere means: read back first.
        self._reconciled = False
        futures = []
        for alert in pending:
            key, value, headers = alert_message(alert)
            futures.append(
                (alert, self.producer.send(self.topic, key=key, value=value, headers=headers))
            )
        self.producer.flush(timeout=self.timeout)
        acked, failure = [], None
        for alert, future in futures:
            try:
                future.get(timeout=0)
            except Exception as error:  # any failure: reconcile, then re-raise
                failure = failure or error
            else:
                acked.append(alert)
        self.outbox.mark_alerts_published([a["alert_id"] for a in acked])
        if self.metrics is not None:
            for alert in acked:
                transition = alert["payload"].get("transition", "")
                self.metrics.alerts_emitted.labels(transition).inc()
        if failure is not None:
            raise failure  # a send that failed may still have been written
        self._reconciled = True
        return len(acked)

    def _ids_on_topic(self, oldest_pending: int) -> set[int]:
        consumer = self.reader()
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            found: set[int] = set()
            for partition in sorted(partitions):
                found |= _read_back(consumer, TopicPartition(self.topic, partition), oldest_pending)
            return found
        finally:
            consumer.close()


def _read_back(consumer: KafkaConsumer, tp: TopicPartition, oldest_pending: int) -> set[int]:
    """Alert ids of the partition's tail, reading further back until one older than
    ``oldest_pending`` (or the start of the partition)."""
    consumer.assign([tp])
    begin = consumer.beginning_offsets([tp])[tp]
    end = consumer.end_offsets([tp])[tp]
    window = _FIRST_WINDOW
    while True:
        start = max(begin, end - window)
        ids = _read_from(consumer, tp, start)
        if start <= begin or any(i < oldest_pending for i in ids):
            return ids
        window *= 8


def _read_from(consumer: KafkaConsumer, tp: TopicPartition, start: int) -> set[int]:
    """Every alert id from ``start`` to the end of the partition: the high-water mark of a
    fetch (Tansu's ListOffsets can under-report the end; a fetch's high-water mark does not).
    Nothing is published meanwhile: this publisher is the only one, and it is reading."""
    consumer.seek(tp, start)
    ids: set[int] = set()
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=500)
        for record in polled.get(tp, []):
            alert_id = alert_id_of(record.headers, record.value)
            if alert_id is not None:
                ids.add(alert_id)
        highwater = consumer.highwater(tp)
        if highwater is not None and consumer.position(tp) >= highwater:
            return ids
    raise TimeoutError(f"reading back {tp.topic}:{tp.partition} did not reach its end in 60 s")
