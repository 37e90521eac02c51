"""The Kafka consumer: reports (or exposures) in, each applied exactly once, alerts out.

One flat loop::

    poll -> drop redeliveries -> decode -> dead-letter the poison (acked) ->
    apply the batch and its offsets in one store transaction -> commit to Kafka (last + 1) ->
    detect on the touched scopes -> publish pending alerts

The store's offsets are authoritative. On start and on every assignment the new partitions are
paused, sought to the store's next offset (or their beginning if the store has none) and then
resumed; a record below that offset is a redelivery and is skipped. Kafka's committed offsets
only serve tools that show a group's progress.

Failures: a broker or database that does not answer makes the loop rewind (every owned partition
is sought back to the store's offsets, so what was polled but not written is read again), report
not ready, and retry with exponential backoff. The store connection is reopened when it no
longer answers. A stop event (SIGTERM, SIGINT) lets the current batch finish; then the consumer
leaves the group and closes.

In a consumer group, the member that owns partition 0 is the leader: it alone runs the detector
and publishes alerts, so that two members never evaluate one signal at once; it re-scores every
scope when other members' offsets have moved, or when exposures were written by any path (the
API, an exposures consumer that only ingests): the sequential tests follow them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from pvsignal.cases import Outcome
from pvsignal.errors import StaleOffsetsError
from pvsignal.exposures import ExposureIngestor
from pvsignal.ingest import BatchCollector, BatchResult, Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.store import SqlStore, open_store
from streams import ALERTS_TOPIC, DLQ_TOPIC, REPORTS_TOPIC
from streams.alerts import AlertPublisher
from streams.codec import DEFAULT_MAX_BYTES, Codec, Poison
from streams.dlq import DeadLetters
from streams.metrics import StreamMetrics

APPLIED = frozenset(
    {Outcome.new, Outcome.follow_up, Outcome.stale, Outcome.resent, Outcome.nullified}
    | {"corrected", "withdrawn"}  # exposures' (pvsignal.exposures.ExposureOutcome)
)


class NotReadyError(RuntimeError):
    """The service cannot work yet (the topic does not exist, say): retried with backoff."""


# Failures worth waiting out: the broker or the database is away, not a bug in a record.
TRANSIENT: tuple[type[BaseException], ...] = (
    KafkaError,
    OSError,
    TimeoutError,
    sqlite3.OperationalError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    NotReadyError,
    StaleOffsetsError,
)

log = logging.getLogger(__name__)


class Detects(Protocol):
    """The continuous-detection engine (pvsignal.detection.Detector)."""

    def update(self, scopes: Iterable[str]) -> list[dict[str, Any]]: ...


DetectorFactory = Callable[[SqlStore, ScopeConfig], Detects]


@dataclass(frozen=True)
class ConsumerConfig:
    bootstrap: str
    topic: str = REPORTS_TOPIC
    group: str | None = "pvsignal"  # None: assign every partition without a group (one process)
    records: str = "reports"  # or "exposures" (streams.codec.RECORDS): what the topic carries
    dlq_topic: str = DLQ_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    batch_size: int = 2_000  # records per poll, and so per store transaction at most
    poll_seconds: float = 0.5
    max_message_bytes: int = DEFAULT_MAX_BYTES
    detect: bool = True  # False: ingest only (another process keeps the signals current)
    publish: bool = True  # False: never publish the outbox (another consumer's leader does)
    # Detection runs once a batch changed counts, at most every detect_seconds. While the
    # consumer is behind (more is waiting than it has applied) detection takes at most
    # detect_share of the time, pausing in proportion to its last run, so a slow detector on
    # a big store cannot starve ingestion; once caught up, it runs without that pause.
    detect_seconds: float = 0.1
    detect_share: float = 0.25
    backoff: tuple[float, float] = (0.5, 30.0)  # first and longest wait after a failure
    health_seconds: float = 5.0  # lag, broker and store checks
    kafka: Mapping[str, Any] = field(default_factory=dict)  # more KafkaConsumer options
    # Connection and security options of every client (streams.connection.client_options).
    client: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.detect_share <= 1:
            raise ValueError(f"detect_share must lie in (0, 1], got {self.detect_share!r}")

    def consumer_options(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap,
            "group_id": self.group,
            "enable_auto_commit": False,
            # Positions come from the store; "earliest" only matters if a seek is lost.
            "auto_offset_reset": "earliest",
            "allow_auto_create_topics": False,
            "max_poll_records": self.batch_size,
            "max_partition_fetch_bytes": max(1 << 20, self.max_message_bytes + 4096),
            "bootstrap_timeout_ms": 5_000,  # short, so a stop is noticed while the broker is away
            **self.client,
            **self.kafka,
        }

    def producer_options(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap,
            "acks": "all",
            "enable_idempotence": True,  # retries add no copies and keep partition order
            "linger_ms": 5,
            # Dead letters carry the original value, up to the consumer's size limit and more.
            "max_request_size": max(1 << 20, 2 * self.max_message_bytes),
            "max_block_ms": 10_000,  # a send waiting for metadata gives up (and is retried)
            "bootstrap_timeout_ms": 5_000,
            **self.client,
        }

    def reader_options(self) -> dict[str, Any]:
        """The alerts topic's read-back (streams.alerts): no group, answers quickly."""
        return {
            "bootstrap_servers": self.bootstrap,
            "group_id": None,
            "enable_auto_commit": False,
            "fetch_max_wait_ms": 100,  # an empty partition answers quickly
            "bootstrap_timeout_ms": 5_000,
            **self.client,
        }


@dataclass
class _Kafka:
    consumer: KafkaConsumer
    producer: KafkaProducer
    dead_letters: DeadLetters
    rebalance: _Rebalance


@dataclass
class _Engine:
    """Everything that talks to the store; rebuilt when the database connection is lost."""

    store: SqlStore
    ingestor: Ingestor | ExposureIngestor
    detector: Detects
    publisher: AlertPublisher


class _Rebalance(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread, so it stays short: it pauses newly assigned partitions
    and queues the change; the loop seeks them to the store's offsets and resumes them."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self.events: queue.SimpleQueue[tuple[str, set[TopicPartition]]] = queue.SimpleQueue()

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.events.put(("revoked", set(revoked)))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = set(assigned)
        self.consumer.pause(*assigned)
        self.events.put(("assigned", assigned))


class Checkpoint:
    """The store's next offset per owned partition, and the write that advances it."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.next: dict[int, int | None] = {}  # None: the store has none, read from the start

    def fresh(
        self, polled: Mapping[TopicPartition, list[ConsumerRecord]]
    ) -> tuple[list[ConsumerRecord], int]:
        """The records at or above the store's offsets, and how many redeliveries were below."""
        batch, redelivered = [], 0
        for tp, records in polled.items():
            if tp.topic != self.topic or tp.partition not in self.next:
                continue  # not positioned yet: it will be read again from the store's offset
            floor = self.next[tp.partition]
            for record in records:
                if floor is not None and record.offset < floor:
                    redelivered += 1
                else:
                    batch.append(record)
        return batch, redelivered

    def write(
        self,
        ingestor: Ingestor | ExposureIngestor,
        records: list[RawRecord],
        batch: list[ConsumerRecord],
    ) -> tuple[BatchResult, dict[int, int]]:
        """Apply the records with each partition's next offset in one store transaction."""
        last: dict[int, int] = {}
        for record in batch:
            last[record.partition] = max(last.get(record.partition, -1), record.offset)
        # Fenced: if another member applied these partitions since we read them (we lost them
        # in a rebalance), the store refuses the batch and the loop rewinds (see TRANSIENT).
        expected = {(self.topic, p): self.next.get(p) for p in last}
        result = ingestor.apply(
            records, {(self.topic, p): o + 1 for p, o in last.items()}, expected
        )
        for partition, offset in last.items():
            self.next[partition] = offset + 1
        return result, last


class StreamConsumer:
    """The service: run(stop) until the stop event is set; ``ready`` says if it is working."""

    def __init__(
        self,
        config: ConsumerConfig,
        *,
        store_url: str,
        scopes: ScopeConfig,
        metrics: StreamMetrics,
        detector_factory: DetectorFactory | None = None,
        open_store: Callable[[str], SqlStore] = open_store,
    ) -> None:
        self.config, self.store_url, self.scopes, self.metrics = config, store_url, scopes, metrics
        exposures = config.records == "exposures"
        self._detector_factory = detector_factory or (
            _default_monitor if exposures else _default_detector
        )
        self._open_store = open_store
        self.codec = Codec(max_bytes=config.max_message_bytes, records=config.records)
        self.checkpoint = Checkpoint(config.topic)
        self._kafka: _Kafka | None = None
        self._engine: _Engine | None = None
        self._owned: set[TopicPartition] = set()
        self._unpositioned: set[TopicPartition] = set()
        self._joined = False  # an assignment arrived (it may be empty)
        self._leader = False
        self._touched: set[str] = set()
        self._others_seen: tuple[dict[int, int], int] | None = None
        self._publish_due = False
        self._next_detect = self._next_health = 0.0
        self._behind = False  # more is waiting than this process has applied
        self._pause = 0.0  # after the last detector run, while behind
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then finish the batch, close and return."""
        first, longest = self.config.backoff
        delay = first
        collector = BatchCollector()
        try:
            while not stop.is_set():
                try:
                    self.step()
                except TRANSIENT as error:
                    self._set_ready(False)
                    log.warning("not ready, retrying in %.1f s: %r", delay, error)
                    self._rewind()
                    stop.wait(delay)
                    delay = min(longest, delay * 2)
                else:
                    self._set_ready(self._joined and not self._unpositioned)
                    delay = first
                collector.after_batch()
        finally:
            collector.close()
        self.close()

    def step(self) -> None:
        """One turn of the loop; a broker or database failure raises (see TRANSIENT)."""
        kafka = self._kafka or self._start_kafka()
        engine = self._engine or self._connect(kafka)
        self._settle(kafka, engine)
        polled = kafka.consumer.poll(
            timeout_ms=int(self.config.poll_seconds * 1000), max_records=self.config.batch_size
        )
        batch, redelivered = self.checkpoint.fresh(polled)
        self.metrics.redelivered.inc(redelivered)
        if batch:
            self._process(kafka, engine, batch)
        self._behind = self._is_behind(kafka)
        if self._leader:
            self._detect(engine)
            self._publish(engine)
        self._check_health(kafka, engine)

    def close(self) -> None:
        """Commit the store's offsets to Kafka, leave the group, close the clients and the
        store (each at most once)."""
        self._set_ready(False)
        kafka, engine, self._kafka, self._engine = self._kafka, self._engine, None, None
        if kafka is not None:
            self._final_commit(kafka)
            kafka.consumer.close(autocommit=False)
            kafka.producer.close(timeout=10)
        if engine is not None:
            engine.store.close()
        log.info("closed")

    def _final_commit(self, kafka: _Kafka) -> None:
        if self.config.group is None:
            return
        offsets = {
            tp: OffsetAndMetadata(self.checkpoint.next[tp.partition], "", -1)
            for tp in self._owned & kafka.consumer.assignment()
            if self.checkpoint.next.get(tp.partition) is not None
        }
        if offsets:
            with contextlib.suppress(KafkaError):  # informative only: the store's offsets stand
                kafka.consumer.commit(offsets, timeout_ms=5_000)

    # -- one batch --------------------------------------------------------------------------

    def _process(self, kafka: _Kafka, engine: _Engine, batch: list[ConsumerRecord]) -> None:
        began = time.perf_counter()
        decoded = [(r, self.codec.decode(r.value, r.headers, _location(r))) for r in batch]
        poisoned = [(r, d.poison) for r, d in decoded if d.poison is not None]
        if poisoned:
            kafka.dead_letters.send(poisoned)  # acked before the offsets are written
        # A partition lost meanwhile is not written: its new owner reads it from the store.
        self._drain_events(kafka)
        kept = [(r, d) for r, d in decoded if r.partition in self.checkpoint.next]
        if not kept:
            return
        batch = [r for r, _ in kept]
        records = [raw for _, d in kept for raw in d.records]
        with self.metrics.checkpoint_duration.time():
            result, last = self.checkpoint.write(engine.ingestor, records, batch)
        self._commit(kafka, last)
        self._touched |= result.summary.touched_scopes
        self._count(batch, [d.poison for _, d in kept if d.poison is not None], result)
        self.metrics.batch_duration.observe(time.perf_counter() - began)

    def _commit(self, kafka: _Kafka, last: dict[int, int]) -> None:
        # For tools that show the group's progress; the store's offsets are the ones used.
        if self.config.group is None:
            return
        offsets = {
            TopicPartition(self.config.topic, p): OffsetAndMetadata(o + 1, "", -1)
            for p, o in last.items()
        }
        kafka.consumer.commit_async(offsets, callback=_log_commit)

    def _count(
        self, batch: list[ConsumerRecord], poisons: list[Poison], result: BatchResult
    ) -> None:
        metrics = self.metrics
        metrics.consumed.inc(len(batch))
        for poison in poisons:
            metrics.dead_lettered.labels(poison.reason).inc()
            metrics.rejected.labels(poison.reason).inc()
        outcomes = result.summary.outcomes
        metrics.applied.inc(sum(n for outcome, n in outcomes.items() if outcome in APPLIED))
        metrics.rejected.labels("refused").inc(outcomes.get(Outcome.refused, 0))
        metrics.last_processed.set_to_current_time()

    # -- assignment and positions -----------------------------------------------------------

    def _start_kafka(self) -> _Kafka:
        consumer = KafkaConsumer(**self.config.consumer_options())
        try:
            producer = KafkaProducer(**self.config.producer_options())
        except BaseException:
            consumer.close(autocommit=False)
            raise
        rebalance = _Rebalance(consumer)
        if self.config.group is not None:
            consumer.subscribe([self.config.topic], listener=rebalance)
        dead_letters = DeadLetters(producer, self.config.dlq_topic)
        self._kafka = _Kafka(consumer, producer, dead_letters, rebalance)
        return self._kafka

    def _connect(self, kafka: _Kafka) -> _Engine:
        store = self._open_store(self.store_url)
        try:
            ingestor = _ingestor(self.config.records, store, self.scopes)
            detector = self._detector_factory(store, self.scopes)
        except BaseException:
            store.close()
            raise
        publisher = AlertPublisher(
            store,
            kafka.producer,
            self._alerts_reader,
            topic=self.config.alerts_topic,
            metrics=self.metrics,
        )
        self._engine = _Engine(store, ingestor, detector, publisher)
        # Detection may have been cut short (a crash, a lost connection): catch up on all.
        self._touched |= self._scope_names()
        self._publish_due = True
        return self._engine

    def _alerts_reader(self) -> KafkaConsumer:
        return KafkaConsumer(**self.config.reader_options())

    def _settle(self, kafka: _Kafka, engine: _Engine) -> None:
        """Apply queued (re)assignments; seek unpositioned partitions to the store's offsets."""
        if self.config.group is None and not kafka.consumer.assignment():
            self._assign_all(kafka)
        self._drain_events(kafka)
        if self._unpositioned:
            self._position(kafka, engine)
        self._lead(any(tp.partition == 0 for tp in self._owned) or self.config.group is None)

    def _drain_events(self, kafka: _Kafka) -> None:
        """Take the listener's queued changes into the owned and unpositioned sets."""
        while True:
            try:
                kind, partitions = kafka.rebalance.events.get_nowait()
            except queue.Empty:
                break
            mine = {tp for tp in partitions if tp.topic == self.config.topic}
            if kind == "revoked":
                self._owned -= mine
                self._unpositioned -= mine
                for tp in mine:
                    self.checkpoint.next.pop(tp.partition, None)
                self.metrics.untrack_partitions(self.config.topic, (tp.partition for tp in mine))
            else:
                self._joined = True
                self._owned |= mine
                self._unpositioned |= mine
                self.metrics.track_partitions(self.config.topic, (tp.partition for tp in mine))

    def _assign_all(self, kafka: _Kafka) -> None:
        partitions = kafka.consumer.partitions_for_topic(self.config.topic)
        if not partitions:
            raise NotReadyError(f"topic {self.config.topic!r} does not exist (yet)")
        assigned = {TopicPartition(self.config.topic, p) for p in partitions}
        kafka.consumer.assign(sorted(assigned))
        kafka.consumer.pause(*assigned)
        kafka.rebalance.events.put(("assigned", assigned))

    def _position(self, kafka: _Kafka, engine: _Engine) -> None:
        stored = engine.store.offsets(self.config.topic)
        assigned = kafka.consumer.assignment()
        for tp in sorted(self._unpositioned):
            if tp not in assigned:
                continue
            next_offset = stored.get(tp.partition)
            if next_offset is None:
                kafka.consumer.seek_to_beginning(tp)
            else:
                kafka.consumer.seek(tp, next_offset)
            self.checkpoint.next[tp.partition] = next_offset
        kafka.consumer.resume(*(self._unpositioned & assigned))
        log.info(
            "positioned at the store's offsets: %s",
            {tp.partition: self.checkpoint.next.get(tp.partition) for tp in self._unpositioned},
        )
        self._unpositioned.clear()

    def _rewind(self) -> None:
        """After a failure: read every owned partition again from the store's offsets."""
        if self._kafka is not None:
            owned = self._owned & self._kafka.consumer.assignment()
            if owned:
                self._kafka.consumer.pause(*owned)
            self._unpositioned |= owned
        for tp in self._unpositioned:
            self.checkpoint.next.pop(tp.partition, None)
        engine = self._engine
        if engine is not None:
            engine.publisher.reset()
            if not engine.store.ping():
                self._engine = None
                with contextlib.suppress(Exception):  # the connection is gone already
                    engine.store.close()

    # -- detection and alerts (the leader only) ---------------------------------------------

    def _lead(self, leader: bool) -> None:
        if leader and not self._leader:
            self._touched |= self._scope_names()  # the previous leader may have stopped midway
            self._others_seen = None
            self._publish_due = True
            if self._engine is not None:
                self._engine.publisher.reset()
        self._leader = leader

    def _detect(self, engine: _Engine) -> None:
        if not self.config.detect:
            # Detection runs elsewhere (pvsignal detect workers): publish what they write to
            # the outbox, looking at most every detect interval.
            if time.monotonic() >= self._next_detect:
                self._publish_due = True
                self._next_detect = time.monotonic() + self.config.detect_seconds
            return
        if time.monotonic() < self._next_detect + (self._pause if self._behind else 0.0):
            return
        others = (self._others_offsets(engine), engine.store.exposures_mark())
        scopes = set(self._touched)
        if others != self._others_seen:
            scopes |= self._scope_names()
        if not scopes:
            return
        began = time.monotonic()
        engine.detector.update(sorted(scopes))
        ended = time.monotonic()
        self.metrics.detector_run.observe(ended - began)
        # A stand-in detector (tests, detection off) has no priors to show.
        self.metrics.observe_priors(getattr(engine.detector, "priors", {}))
        self._touched -= scopes
        self._others_seen = others
        share = self.config.detect_share
        self._pause = (ended - began) * (1 - share) / share
        self._next_detect = ended + self.config.detect_seconds
        self._publish_due = True

    def _others_offsets(self, engine: _Engine) -> dict[int, int]:
        """The store's offsets of the partitions other members own (none without a group)."""
        if self.config.group is None:
            return {}
        mine = {tp.partition for tp in self._owned}
        stored = engine.store.offsets(self.config.topic)
        return {p: o for p, o in stored.items() if p not in mine}

    def _publish(self, engine: _Engine) -> None:
        if self._publish_due and self.config.publish:
            engine.publisher.publish()
            self._publish_due = False

    # -- health -----------------------------------------------------------------------------

    def _check_health(self, kafka: _Kafka, engine: _Engine) -> None:
        """Every few seconds: lag per partition (which also proves the broker answers) and a
        store ping."""
        now = time.monotonic()
        if now < self._next_health:
            return
        self._next_health = now + self.config.health_seconds
        owned = sorted(self._owned & kafka.consumer.assignment())
        ends = kafka.consumer.end_offsets(owned, timeout_ms=5_000) if owned else {}
        for tp in owned:
            # A fetch's high-water mark is exact; Tansu's ListOffsets can report less.
            end = max(ends.get(tp) or 0, kafka.consumer.highwater(tp) or 0)
            position = self.checkpoint.next.get(tp.partition) or 0
            self.metrics.set_lag(tp.topic, tp.partition, end, position)
        if not engine.store.ping():
            raise NotReadyError("the store does not answer")

    def _is_behind(self, kafka: _Kafka) -> bool:
        """Is more waiting on an owned partition than this process has applied? (A fetch's
        high-water mark is exact, unlike Tansu's ListOffsets; None before the first fetch.)"""
        for tp in self._owned:
            highwater = kafka.consumer.highwater(tp)
            applied = self.checkpoint.next.get(tp.partition)
            if highwater is not None and applied is not None and highwater > applied:
                return True
        return False

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()
        self.metrics.ready.set(1 if ready else 0)

    def _scope_names(self) -> set[str]:
        return {scope.name for scope in self.scopes.all_scopes()}


def _default_detector(store: SqlStore, scopes: ScopeConfig) -> Detects:
    from pvsignal.detection import DetectionConfig, Detector
    from pvsignal.monitoring import Monitor, Monitored

    # A refit never holds up the detection run that raises an alert; the scopes' sequential
    # tests follow each run (new cases move them).
    config = DetectionConfig(refit_in_background=True)
    return Monitored(Detector(store, scopes, config), Monitor(store, scopes, config))


def _default_monitor(store: SqlStore, scopes: ScopeConfig) -> Detects:
    """Exposures move only the sequential tests: the monitor alone runs after a batch."""
    from pvsignal.monitoring import Monitor

    return Monitor(store, scopes)


def _ingestor(records: str, store: SqlStore, scopes: ScopeConfig) -> Ingestor | ExposureIngestor:
    if records == "exposures":
        return ExposureIngestor(store, scopes, source="kafka")
    return Ingestor(store, scopes, source="kafka")


def _location(record: ConsumerRecord) -> str:
    return f"{record.topic}:{record.partition}@{record.offset}"


def _log_commit(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.info("Kafka offset commit failed (the store's offsets stand): %r", response)
