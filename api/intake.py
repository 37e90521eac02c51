"""Reports in: a body (JSON, NDJSON or E2B XML) becomes records, the ingest engine applies
them, and a receipt records what happened to each, for the submitter to read back.

One ingest at a time (the engine's batches are serialised by the store anyway); each batch of
up to 5,000 records is one transaction. Locations name the receipt and the line (or E2B
message), so a reject in ``pvsignal rejects`` leads back to the submission.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.auth import Principal
from api.metrics import Metrics
from api.problems import ContentTooLargeError, UnsupportedMediaTypeError
from api.tenancy import RegistryCache, owner_rule
from pvsignal.ingest import Ingestor, RecordResult, batches
from pvsignal.readers import RawRecord
from pvsignal.readers.e2b import read_e2b_bytes
from pvsignal.rebuild import rebuild
from pvsignal.scopes import ScopeConfig
from pvsignal.store import SqlStore

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/ndjson"})
XML_TYPES = frozenset({"application/xml", "text/xml", "application/hl7-v3+xml"})
SUPPORTED = sorted(JSON_TYPES | NDJSON_TYPES | XML_TYPES)
_BATCH = 5_000


@dataclass(frozen=True)
class Receipt:
    receipt_id: str
    submitted_at: str
    content_type: str
    records: int
    summary: dict[str, int]
    results: list[dict[str, Any]]
    touched_scopes: frozenset[str]

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


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def parse(kind: str, body: bytes, receipt_id: str, max_records: int) -> list[RawRecord]:
    """The body's records, each located as '<receipt>:<line>' (or its E2B message)."""
    if kind in JSON_TYPES:
        return [RawRecord(f"{receipt_id}:1", body)]
    if kind in NDJSON_TYPES:
        records = [
            RawRecord(f"{receipt_id}:{number}", line)
            for number, line in enumerate(body.split(b"\n"), start=1)
            if line.strip()
        ]
    elif kind in XML_TYPES:
        records = list(read_e2b_bytes(body, f"{receipt_id}.xml"))
    else:
        raise UnsupportedMediaTypeError(
            f"Content-Type {kind or '(none)'!r}: send one of {', '.join(SUPPORTED)}"
        )
    if len(records) > max_records:
        raise ContentTooLargeError(
            f"{len(records)} records in one request; at most {max_records} are accepted"
        )
    return records


def result_document(result: RecordResult) -> dict[str, Any]:
    """One record's outcome (absent facts left out); a rejected record names its field."""
    document: dict[str, Any] = {
        "location": result.location,
        "outcome": str(result.outcome),  # a StrEnum for valid records
        "case_id": result.case_id,
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
        document["field"] = "case_id"
    return {key: value for key, value in document.items() if value is not None}


class ReportIntake:
    """Applies submitted bodies through one ingest engine and keeps their receipts."""

    def __init__(
        self,
        store: SqlStore,
        scopes: ScopeConfig,
        registry: RegistryCache,
        metrics: Metrics,
        *,
        max_records: int,
        on_counts_changed: Callable[[set[str]], None],
    ) -> None:
        self._store, self._scopes, self._registry = store, scopes, registry
        self._metrics, self._max_records = metrics, max_records
        self._on_counts_changed = on_counts_changed
        self._lock = threading.Lock()
        self._ingestor: Ingestor | None = None
        self._digest: str | None = None

    def submit(self, principal: Principal, content_type: str | None, body: bytes) -> Receipt:
        kind = media_type(content_type)
        receipt_id = "r-" + secrets.token_hex(10)
        records = parse(kind, body, receipt_id, self._max_records)
        outcomes: Counter[str] = Counter()
        results: list[dict[str, Any]] = []
        touched: set[str] = set()
        with self._lock:
            ingestor = self._current_ingestor()
            for batch in batches(records, _BATCH):
                applied = ingestor.apply(batch, owners=owner_rule(principal))
                touched |= applied.summary.touched_scopes
                for result in applied.results:
                    outcomes[str(result.outcome)] += 1
                    results.append(result_document(result))
            receipt = Receipt(
                receipt_id,
                dt.datetime.now(dt.UTC).isoformat(),
                kind,
                len(records),
                dict(outcomes),
                results,
                frozenset(touched),
            )
            self._store.save_receipt(receipt.document(principal))
        self._count(records, outcomes)
        if touched:
            self._on_counts_changed(touched)
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

    def _count(self, records: list[RawRecord], outcomes: Counter[str]) -> None:
        unreadable = sum(1 for r in records if r.error is not None or r.payload is None)
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
