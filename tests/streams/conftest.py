"""Fixtures of the stream tests: one real broker per session, PostgreSQL databases, and
helpers to run a consumer in a thread and compare stores."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import orjson
import pytest

from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.store import SqlStore, open_store
from streams.consumer import StreamConsumer
from tests.support.kafka import Message, tansu_broker
from tests.support.postgres import create_database

_names = itertools.count()


@pytest.fixture(scope="session")
def kafka_broker():
    """The bootstrap address of a Tansu broker shared by every stream test."""
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def postgres_url(postgres_server):
    """A factory of empty PostgreSQL databases (their URLs)."""
    return lambda: create_database(postgres_server, f"streams_{next(_names)}")


class NoDetection:
    """Stand-in for the detector where alerts are not the point (it costs a fit per start)."""

    def __init__(self, store: SqlStore, scopes: ScopeConfig) -> None:
        self.runs: list[list[str]] = []

    def update(self, scopes: Iterable[str]) -> list[dict]:
        self.runs.append(list(scopes))
        return []


def keyed(lines: Iterable[bytes]) -> list[Message]:
    """Simulated lines as messages keyed by case_id, as producers send them (no key for a
    line that is not JSON)."""
    messages = []
    for line in lines:
        try:
            case_id = orjson.loads(line).get("case_id")
        except (orjson.JSONDecodeError, AttributeError):
            case_id = None
        key = case_id.encode() if isinstance(case_id, str) else None
        messages.append((key, line, [("content-type", b"application/json")]))
    return messages


@contextmanager
def running(consumer: StreamConsumer) -> Iterator[StreamConsumer]:
    """Run the consumer's loop in a thread; on exit set its stop event and join it."""
    stop, failures = threading.Event(), []

    def loop() -> None:
        try:
            consumer.run(stop)
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=loop, name="consumer", daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the consumer did not stop within 60 s"
    if failures:
        raise failures[0]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def offsets_reached(url: str, topic: str, counts: dict[int, int]) -> Callable[[], bool]:
    """True once the store's offsets reach the given message counts per partition."""

    def reached() -> bool:
        store = open_store(url)
        try:
            return store.offsets(topic) == counts
        finally:
            store.close()

    return reached


def reference(url: str, products, records: Iterable[RawRecord]) -> SqlStore:
    """A clean single-pass ingest into a fresh store, as `pvsignal ingest` does."""
    store = open_store(url)
    store.save_products(products)
    Ingestor(store, ScopeConfig()).ingest(records)
    return store


def lines_as_records(lines: Iterable[bytes]) -> list[RawRecord]:
    return [RawRecord(f"line {i}", line) for i, line in enumerate(lines, 1)]


def new_store(url: str, products) -> None:
    """Create the store at ``url`` with the registry loaded."""
    store = open_store(url)
    store.save_products(products)
    store.close()


def state(store: SqlStore) -> dict:
    """Cases by status and every count of scope ``all``, in comparable form.

    A case both nullified by its sender and named a duplicate by another case ends as
    ``nullified`` or ``duplicate`` depending on which arrived first (its counts do not): across
    partitions arrival order differs from file order, so the two are compared together as
    ``withdrawn``, and active cases one by one (``active_cases``).
    """
    counts = store.scope_counts("all")
    cases = store.count_cases()

    def rows(*columns) -> list[tuple]:
        return sorted(zip(*(c.tolist() for c in columns), strict=True))

    return {
        "active": cases.get("active", 0),
        "withdrawn": cases.get("nullified", 0) + cases.get("duplicate", 0),
        "pairs": rows(counts.pair_product, counts.pair_event, counts.a),
        "products": rows(*counts.product_rows),
        "events": rows(*counts.event_rows),
        "totals": rows(*counts.totals),
    }


def active_cases(store: SqlStore, case_ids: Iterable[str]) -> dict[str, tuple]:
    """Each active case's version and report id; withdrawn cases as ``withdrawn``."""
    return {
        case_id: (case.version, case.report_id) if case.status.value == "active" else "withdrawn"
        for case_id, case in store.load_cases(case_ids).items()
    }


def case_ids(lines: Iterable[bytes]) -> set[str]:
    """The case ids of the lines that are JSON objects with one."""
    return {key.decode() for key, _, _ in keyed(lines) if key is not None}


def reject_locations(store: SqlStore) -> list[str]:
    """Where each reject came from. A consumer's are ``topic:partition@offset``: a batch
    applied twice would show its rejects twice (re-applying a case version changes no count,
    so this is where a double application shows)."""
    return [row["location"] for row in store.rejects(limit=10_000_000)]


def assert_equals_single_pass(
    url: str, reference_url: str, products, lines: list[bytes]
) -> SqlStore:
    """The store at ``url`` holds what one clean pass of ``lines`` makes, with no batch applied
    twice (re-applying a version changes no count; a batch applied twice shows in its rejects).
    Returns the store, open."""
    expected = reference(reference_url, products, lines_as_records(lines))
    got = open_store(url)
    assert state(got) == state(expected)
    ids = case_ids(lines)
    assert active_cases(got, ids) == active_cases(expected, ids)
    locations = reject_locations(got)
    assert len(locations) == len(set(locations)), "a batch was applied twice"
    return got
