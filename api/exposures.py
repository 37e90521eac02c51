"""Exposures in: a body (JSON, NDJSON or CSV) becomes exposure records, the exposure engine
applies them, and a receipt records what happened to each — as reports do (api.intake: the
same limits, the same owner rule, the same receipt and Idempotency-Key, the same audit row).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator

from api.auth import Principal
from api.intake import (
    JSON_TYPES,
    NDJSON_TYPES,
    HeldRecords,
    Limits,
    Receipt,
    Submission,
    _digested,
    _ndjson_records,
    keep_submission,
    media_type,
    read_records,
)
from api.problems import UnsupportedMediaTypeError
from api.tenancy import RegistryCache
from pvsignal.audit import Actor
from pvsignal.exposures import ExposureIngestor, csv_records
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.store import SqlStore

CSV_TYPES = frozenset({"text/csv", "application/csv"})
EXPOSURE_TYPES = sorted(JSON_TYPES | NDJSON_TYPES | CSV_TYPES)


def exposure_media_type(content_type: str | None) -> str:
    """The body's media type, or a 415 naming the ones accepted (checked before reading it)."""
    kind = media_type(content_type)
    if kind not in EXPOSURE_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {kind or '(none)'!r}: send one of {', '.join(EXPOSURE_TYPES)}"
        )
    return kind


def _csv_body(chunks: Iterable[bytes], receipt_id: str, limits: Limits) -> Iterator[RawRecord]:
    """A CSV body's rows: its lines pass the NDJSON limits (a line's size, the count, the header
    counted too) as they arrive; then the whole is parsed as CSV, located by line."""
    lines = [record.payload for record in _ndjson_records(chunks, receipt_id, limits)]
    text = b"\n".join(line for line in lines if isinstance(line, bytes))
    return csv_records(text.decode("utf-8-sig", errors="replace"), receipt_id)


class ExposureIntake:
    """Applies submitted exposure bodies through one engine and keeps their receipts."""

    def __init__(
        self,
        store: SqlStore,
        scopes: ScopeConfig,
        registry: RegistryCache,
        *,
        limits: Limits,
        on_exposures_changed: Callable[[set[str]], None],
    ) -> None:
        self._store, self._scopes, self._registry, self._limits = store, scopes, registry, limits
        self._on_changed = on_exposures_changed
        self._lock = threading.Lock()

    def submit(
        self,
        principal: Principal,
        actor: Actor,
        content_type: str | None,
        body: Iterable[bytes],
        idempotency_key: str | None = None,
    ) -> Receipt:
        """Read the body under its limits, then apply every record and keep the receipt and
        its audit row (``exposure.submit``) in one transaction."""
        kind = exposure_media_type(content_type)
        receipt_id = "r-" + secrets.token_hex(10)
        digest = hashlib.sha256(kind.encode() + b"\n")
        body = _digested(body, digest)
        if kind in CSV_TYPES:
            records = HeldRecords(_csv_body(body, receipt_id, self._limits))
        else:
            records = HeldRecords(read_records(kind, body, receipt_id, self._limits))
        with self._lock:
            receipt = keep_submission(
                self._store,
                Submission(principal, actor, kind, receipt_id, digest, idempotency_key),
                records,
                lambda held, owners, finish: self._ingestor().apply(
                    held, owners=owners, finish=finish
                ),
                action="exposure.submit",
                id_name="exposure_id",
            )
        if receipt.touched_scopes and not receipt.replayed:
            self._on_changed(set(receipt.touched_scopes))
        return receipt

    def _ingestor(self) -> ExposureIngestor:
        snapshot = self._registry.current()
        return ExposureIngestor(
            self._store,
            self._scopes,
            registry=snapshot.registry,
            institutions=snapshot.institutions,
            source="api",
        )

    def close(self) -> None:
        self._store.close()
