"""Reports in: a body (JSON, NDJSON or E2B XML) becomes records, the ingest engine applies
them, and a receipt records what happened to each, for the submitter to read back.

The body is read as a stream, on a worker thread: the route hands its chunks over through a
:class:`BodyFeed` (a few chunks at most wait, so a slow parser slows the client down instead of
filling memory), :func:`read_records` splits them into records while checking the limits, and
the request is refused with a 413 as soon as one is passed. Nothing of the parsing, validation
or ingest runs on the event loop, so probes and reads stay quick during a large submission.

One ingest at a time (the engine's batches are serialised by the store anyway); one submission,
its receipt included, is one transaction: all of it lands or none. Locations name the receipt
and the line (or E2B message), so a reject in ``pvsignal rejects`` leads back to the submission.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from api.auth import Principal
from api.metrics import Metrics
from api.problems import ConflictError, ContentTooLargeError, UnsupportedMediaTypeError
from api.tenancy import RegistryCache, owner_rule
from pvsignal.audit import Actor, Entry
from pvsignal.ingest import BatchResult, Ingestor, RecordResult
from pvsignal.ownership import OwnerRule
from pvsignal.readers import RawRecord
from pvsignal.readers.e2b import E2BReading
from pvsignal.readers.e2b_ack import IcsrResult, build_ack
from pvsignal.rebuild import rebuild
from pvsignal.scopes import ScopeConfig
from pvsignal.store import SqlStore

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/ndjson"})
XML_TYPES = frozenset({"application/xml", "text/xml", "application/hl7-v3+xml"})
SUPPORTED = sorted(JSON_TYPES | NDJSON_TYPES | XML_TYPES)


@dataclass(frozen=True)
class Receipt:
    receipt_id: str
    submitted_at: str
    content_type: str
    records: int
    summary: dict[str, int]
    results: list[dict[str, Any]]
    touched_scopes: frozenset[str]
    replayed: bool = False  # the first receipt of a submission sent again (Idempotency-Key)
    e2b: E2BReading | None = None  # an E2B body's headers, for its acknowledgement

    @classmethod
    def of(
        cls,
        receipt_id: str,
        kind: str,
        records: int,
        applied: BatchResult,
        reading: E2BReading | None,
        id_name: str = "case_id",
    ) -> Receipt:
        results = [result_document(result, id_name) for result in applied.results]
        return cls(
            receipt_id,
            dt.datetime.now(dt.UTC).isoformat(),
            kind,
            records,
            dict(Counter(str(result.outcome) for result in applied.results)),
            results,
            frozenset(applied.summary.touched_scopes),
            e2b=reading,
        )

    @classmethod
    def replay(
        cls, stored: dict[str, Any], stored_digest: str, digest: str, reading: E2BReading | None
    ) -> Receipt:
        """The first receipt of a submission sent again; a different body under the same key
        is a client's mistake, refused rather than answered with another body's receipt."""
        if stored_digest != digest:
            raise ConflictError(
                f"Idempotency-Key was first used with another body (receipt "
                f"{stored['receipt_id']}); use a new key for a new submission"
            )
        return cls(
            stored["receipt_id"],
            stored["submitted_at"],
            stored["content_type"],
            stored["records"],
            stored["summary"],
            stored["results"],
            frozenset(),
            replayed=True,
            e2b=reading,
        )

    def document(self, principal: Principal) -> dict[str, Any]:
        return {
            "receipt_id": self.receipt_id,
            "org": principal.org,
            "role": principal.role.value,
            "submitted_at": self.submitted_at,
            "content_type": self.content_type,
            "records": self.records,
            "summary": self.summary,
            "results": self.results,
        }

    def acknowledgement(self) -> bytes:
        """The ICH E2B(R3) acknowledgement (MCCI_IN200101UV01) of an E2B submission."""
        assert self.e2b is not None, "only an E2B submission is acknowledged in E2B"
        accepted = [r["outcome"] not in ("rejected", "refused") for r in self.results]
        icsrs = [
            IcsrResult(header, ok, None if ok else result.get("reason"), result.get("case_id"))
            for header, ok, result in zip(self.e2b.headers, accepted, self.results, strict=True)
        ]
        return build_ack(self.e2b.batch, icsrs, ack_id=self.receipt_id)


def _digested(chunks: Iterable[bytes], digest: Any) -> Iterator[bytes]:
    """The chunks, each added to ``digest`` as it passes."""
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _scoped(principal: Principal, key: str) -> str:
    """An Idempotency-Key is the caller's: two organisations may use the same one."""
    return f"{principal.role.value}:{principal.org or '-'}:{key}"


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def supported(content_type: str | None) -> str:
    """The body's media type, or a 415 naming the ones accepted (checked before reading it)."""
    kind = media_type(content_type)
    if kind not in JSON_TYPES | NDJSON_TYPES | XML_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {kind or '(none)'!r}: send one of {', '.join(SUPPORTED)}"
        )
    return kind


@dataclass(frozen=True)
class Limits:
    """What one submission may hold; each is checked while the body is read."""

    max_records: int  # records in one body (PVSIGNAL_MAX_BATCH_RECORDS)
    max_record_bytes: int  # one NDJSON line or JSON body (PVSIGNAL_MAX_RECORD_BYTES)


def read_records(
    kind: str,
    chunks: Iterable[bytes],
    receipt_id: str,
    limits: Limits,
    reading: E2BReading | None = None,
) -> Iterator[RawRecord]:
    """The body's records as its chunks arrive, each located as '<receipt>:<line>' (or its
    E2B message). Raises ContentTooLargeError as soon as a record or the count is over its
    limit: nothing after that point is read, and a long line is never held whole."""
    if kind in JSON_TYPES:
        return _json_record(chunks, receipt_id, limits)
    if kind in NDJSON_TYPES:
        return _ndjson_records(chunks, receipt_id, limits)
    if reading is None:
        reading = E2BReading(chunks, f"{receipt_id}.xml")
    return _counted(reading.records(), limits)


def _json_record(chunks: Iterable[bytes], receipt_id: str, limits: Limits) -> Iterator[RawRecord]:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limits.max_record_bytes:
            raise _record_too_large(limits, len(body), "the JSON body")
    yield RawRecord(f"{receipt_id}:1", bytes(body))


# A line that is not blank, found from its start (possessive: no backtracking over spaces).
_RECORD_LINE = re.compile(rb"^[ \t\r\f\v]*+[^\s][^\n]*", re.MULTILINE)


def _ndjson_records(
    chunks: Iterable[bytes], receipt_id: str, limits: Limits
) -> Iterator[RawRecord]:
    """Lines found chunk by chunk; blank lines are skipped at C speed (a body of newlines
    costs no Python loop per line). Only the unfinished last line of a chunk is carried over,
    and it is refused once longer than a record may be."""
    pending = bytearray()  # the line being received, never longer than max_record_bytes
    lines_before = 0  # newlines before the text being searched
    count = 0
    for chunk in chunks:
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            pending += chunk
            if len(pending) > limits.max_record_bytes:
                raise _record_too_large(limits, len(pending), f"line {lines_before + 1}")
            continue
        text = bytes(pending) + chunk[:cut] if pending else chunk[:cut]
        pending[:] = chunk[cut:]
        position = 0
        for match in _RECORD_LINE.finditer(text):
            lines_before += text.count(b"\n", position, match.start())
            position, size = match.start(), match.end() - match.start()
            if size > limits.max_record_bytes:
                raise _record_too_large(limits, size, f"line {lines_before + 1}")
            count += 1
            if count > limits.max_records:
                raise _too_many_records(limits, count)
            yield RawRecord(f"{receipt_id}:{lines_before + 1}", match.group())
        lines_before += text.count(b"\n", position)
        if len(pending) > limits.max_record_bytes:
            raise _record_too_large(limits, len(pending), f"line {lines_before + 1}")
    if pending.strip():
        count += 1
        if count > limits.max_records:
            raise _too_many_records(limits, count)
        yield RawRecord(f"{receipt_id}:{lines_before + 1}", bytes(pending))


def _counted(records: Iterable[RawRecord], limits: Limits) -> Iterator[RawRecord]:
    for count, record in enumerate(records, start=1):
        if count > limits.max_records:
            raise _too_many_records(limits, count)
        yield record


def _too_many_records(limits: Limits, count: int) -> ContentTooLargeError:
    return ContentTooLargeError(
        f"more than {limits.max_records} records in one request (record {count} refused, the "
        f"rest not read); at most {limits.max_records} are accepted: send the rest separately",
        extra={"limit": "max_records", "maximum": limits.max_records, "value": count},
    )


def _record_too_large(limits: Limits, size: int, where: str) -> ContentTooLargeError:
    return ContentTooLargeError(
        f"{where} is over {limits.max_record_bytes} bytes ({size} read, the rest not read); "
        f"one report may have at most {limits.max_record_bytes} bytes",
        extra={"limit": "max_record_bytes", "maximum": limits.max_record_bytes, "value": size},
    )


def result_document(result: RecordResult, id_name: str = "case_id") -> dict[str, Any]:
    """One record's outcome (absent facts left out); a rejected record names its field.
    ``id_name`` names the record's id (``exposure_id`` for exposures)."""
    document: dict[str, Any] = {
        "location": result.location,
        "outcome": str(result.outcome),  # a StrEnum for valid records
        id_name: result.case_id,
        "owner": result.owner,
        "reason": result.reason,
    }
    if result.outcome == "rejected" and result.reason:
        # The engine's reason reads "<field>: <problems> (<value>)"; the problems name fields.
        field, _, problems = result.reason.partition(": ")
        if problems.endswith(")") and " (" in problems:
            problems = problems.rsplit(" (", 1)[0]
        document["field"], document["reason"] = field, problems
    elif result.outcome == "refused":
        document["field"] = id_name
    return {key: value for key, value in document.items() if value is not None}


class HeldRecords:
    """A body's records, kept until the whole body has passed its limits.

    Kept as lists of strings and bytes, objects the garbage collector does not track: 100,000
    records held as tuples would set off a full collection, which pauses every thread of the
    server (/livez included) for 0.1-0.2 s on a loaded machine, for a body that is then refused.
    """

    def __init__(self, records: Iterable[RawRecord]) -> None:
        self._locations: list[str] = []
        self._payloads: list[bytes | str | dict[str, Any] | None] = []
        self._errors: dict[int, str] = {}
        for index, record in enumerate(records):
            assert record.report is None  # readers of bodies leave validation to the ingest
            self._locations.append(record.location)
            self._payloads.append(record.payload)
            if record.error is not None:
                self._errors[index] = record.error

    def __len__(self) -> int:
        return len(self._locations)

    def __iter__(self) -> Iterator[RawRecord]:
        pairs = zip(self._locations, self._payloads, strict=True)
        for index, (location, payload) in enumerate(pairs):
            yield RawRecord(location, payload, self._errors.get(index))

    @property
    def unreadable(self) -> int:
        missing = {index for index, payload in enumerate(self._payloads) if payload is None}
        return len(missing | self._errors.keys())


@dataclass(frozen=True)
class Submission:
    """Who submitted what: the caller, the body's media type, its receipt id and digest."""

    principal: Principal
    actor: Actor
    kind: str
    receipt_id: str
    digest: Any  # hashlib's running digest of the body
    idempotency_key: str | None


_RECEIPT_SUMMARY = ("receipt_id", "content_type", "records", "summary")  # what the audit keeps
# Applies a submission's records under an owner rule, calling ``finish`` inside the batch's
# transaction (the ingest engines' ``apply``).
Apply = Callable[[list[RawRecord], OwnerRule, Callable[[Any, BatchResult], None]], BatchResult]


def keep_submission(
    store: SqlStore,
    submission: Submission,
    records: HeldRecords,
    apply: Apply,
    *,
    action: str,
    reading: E2BReading | None = None,
    id_name: str = "case_id",
) -> Receipt:
    """Apply a read body's records and keep its receipt and audit row in the same transaction.

    A submission sent again with the same ``Idempotency-Key`` (per caller) gets the first one's
    receipt and writes nothing. The caller serialises submissions (one at a time).
    """
    principal, digest = submission.principal, submission.digest.hexdigest()
    key = submission.idempotency_key
    scoped_key = None if key is None else _scoped(principal, key)
    if scoped_key is not None:
        first = store.receipt_for_key(scoped_key)
        if first is not None:
            return Receipt.replay(*first, digest, reading)
    made: list[Receipt] = []

    def keep_receipt(session: Any, applied: BatchResult) -> None:
        receipt = Receipt.of(
            submission.receipt_id, submission.kind, len(records), applied, reading, id_name
        )
        document = receipt.document(principal)
        session.save_receipt(document, scoped_key, digest)
        session.append_audit(
            submission.actor,
            Entry(
                action,
                "receipt",
                submission.receipt_id,
                after={k: document[k] for k in _RECEIPT_SUMMARY},
            ),
        )
        made.append(receipt)

    apply(list(records), owner_rule(principal), keep_receipt)
    [receipt] = made
    return receipt


class ReportIntake:
    """Applies submitted bodies through one ingest engine and keeps their receipts."""

    def __init__(
        self,
        store: SqlStore,
        scopes: ScopeConfig,
        registry: RegistryCache,
        metrics: Metrics,
        *,
        limits: Limits,
        on_counts_changed: Callable[[set[str]], None],
    ) -> None:
        self._store, self._scopes, self._registry = store, scopes, registry
        self._metrics, self._limits = metrics, limits
        self._on_counts_changed = on_counts_changed
        self._lock = threading.Lock()
        self._ingestor: Ingestor | None = None
        self._digest: str | None = None

    def submit(
        self,
        principal: Principal,
        actor: Actor,
        content_type: str | None,
        body: Iterable[bytes],
        idempotency_key: str | None = None,
    ) -> Receipt:
        """Read ``body`` (its chunks, as they arrive), apply its records, keep the receipt.

        The whole body is read under its limits before anything is applied, and then every
        record and the receipt are one store transaction: a refused body, a crash or a kill
        leaves nothing of the submission. A submission sent again with the same
        ``Idempotency-Key`` (per caller) gets the first one's receipt and writes nothing.
        The submission's audit row (``report.submit``, the receipt and its summary) is
        written in the same transaction, by ``actor``.
        """
        kind = supported(content_type)
        receipt_id = "r-" + secrets.token_hex(10)
        digest = hashlib.sha256(kind.encode() + b"\n")
        body = _digested(body, digest)
        reading = E2BReading(body, f"{receipt_id}.xml") if kind in XML_TYPES else None
        records = HeldRecords(read_records(kind, body, receipt_id, self._limits, reading))
        with self._lock:
            receipt = keep_submission(
                self._store,
                Submission(principal, actor, kind, receipt_id, digest, idempotency_key),
                records,
                lambda held, owners, finish: self._current_ingestor().apply(
                    held, owners=owners, finish=finish
                ),
                action="report.submit",
                reading=reading,
            )
        if receipt.replayed:
            return receipt
        self._count(records, Counter(receipt.summary))
        if receipt.touched_scopes:
            self._on_counts_changed(set(receipt.touched_scopes))
        return receipt

    def recount(self) -> int:
        """Recount every case under the current registry (after a product changed)."""
        with self._lock:
            self._registry.invalidate()
            summary = rebuild(self._store, self._scopes)
            self._ingestor = None
        self._on_counts_changed({scope.name for scope in self._scopes.all_scopes()})
        return summary.cases

    def _current_ingestor(self) -> Ingestor:
        """The engine under the current registry (rebuilt when the registry changed)."""
        snapshot = self._registry.current()
        if self._ingestor is None or snapshot.digest != self._digest:
            self._ingestor = Ingestor(
                self._store,
                self._scopes,
                registry=snapshot.registry,
                institutions=snapshot.institutions,
                source="api",
            )
            self._digest = snapshot.digest
        return self._ingestor

    def _count(self, records: HeldRecords, outcomes: Counter[str]) -> None:
        unreadable = records.unreadable
        rejected = outcomes.get("rejected", 0)
        if unreadable:
            self._metrics.reports_rejected.labels("unreadable").inc(unreadable)
        if rejected - unreadable > 0:
            self._metrics.reports_rejected.labels("invalid").inc(rejected - unreadable)
        for outcome, n in outcomes.items():
            if outcome != "rejected":
                self._metrics.reports_ingested.labels(outcome).inc(n)
        self._metrics.last_report.set(time.time())

    def close(self) -> None:
        self._store.close()


class BodyFeed:
    """A request body's chunks, handed from the event loop to the worker thread reading them.

    At most ``depth`` chunks wait: while the worker is behind, :meth:`put` waits, the route
    stops pulling from the socket and TCP slows the client down. Every queue operation runs on
    the event loop; the worker reaches it through ``run_coroutine_threadsafe``.
    """

    _END = object()

    def __init__(self, depth: int = 4) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue(depth)
        self._stopped = False  # the worker reads no more (it has its answer, or failed)

    async def put(self, chunk: bytes) -> bool:
        """Hand a chunk over; False once the worker has stopped reading."""
        if not self._stopped:
            await self._queue.put(chunk)
        return not self._stopped

    async def end(self) -> None:
        await self.put(self._END)  # type: ignore[arg-type]

    def abort(self) -> None:
        """The body will not be complete (the client left, a transport limit): the worker's
        reader raises instead of taking a partial body for a whole one."""
        self._drain()
        self._queue.put_nowait(_BodyCutOffError())

    def stopped(self) -> None:
        """Called from the worker when it stops reading: a waiting :meth:`put` returns."""
        self._loop.call_soon_threadsafe(self._drain, True)

    def _drain(self, stop: bool = False) -> None:
        self._stopped = self._stopped or stop
        while not self._queue.empty():
            self._queue.get_nowait()

    def chunks(self) -> Iterator[bytes]:
        """The chunks, in the worker thread, until the body ends."""
        while True:
            item = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop).result()
            if item is self._END:
                return
            if isinstance(item, _BodyCutOffError):
                raise item
            assert isinstance(item, bytes)
            yield item


class _BodyCutOffError(Exception):
    """The body was cut off before its end; nothing of it is applied."""
