"""The audit trail: who wrote (or read a case) what, when — appended, hash-chained, checkable.

Every write the service makes on behalf of someone (a report submission, a product or
institution, a review, a subscription, a key, a duplicate decision) and every case-level read
appends one row::

    seq, at, actor (Principal.describe(): "role:org:subject"), org, role,
    action ("product.put"), object_type ("product"), object_id, before, after

``before``/``after`` are the object's documents around a change (None where there is none),
with secrets removed (:func:`redact`: never an API key, its hash or a webhook secret).

The chain: each row holds ``prev_hash`` (the previous row's ``hash``; the first row's is
:data:`GENESIS`) and ``hash = SHA-256(prev_hash + canonical JSON of the row)``, where the
canonical JSON is the row's fields above with sorted keys and no whitespace (:func:`canonical`).
Changing any value of a row breaks its own hash; deleting a row breaks the next row's link;
deleting rows at the end is found against the store's head (the last seq and hash, kept in
one row that every append updates). Appends are serialised by that head row (each append
updates it first: SQLite holds the write lock from then on, PostgreSQL the row lock), so two
writers never chain onto the same tail.

Which writes are recorded is decided in one place per interface: the API's write routes take
the :class:`Actor` of the caller from one dependency (``api.deps.AuditActor``; a test checks
every write operation depends on it) and record through :func:`recorded`, whose transaction
the store's own writes join, so the change and its audit row commit together or not at all.
The CLI records ``products load``, ``institutions load`` and ``keys create``/``revoke`` with
:meth:`Actor.cli`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pvsignal.store import SqlStore

GENESIS = "0" * 64
# Keys whose values never enter the trail, at any depth of a document.
SECRET_KEYS = frozenset({"secret", "key", "key_hash", "token", "password", "sealed_secret"})
REDACTED = "[redacted]"
# The fields of a row that its hash covers, in the canonical JSON (sorted there anyway).
CHAINED = (
    "seq",
    "at",
    "actor",
    "org",
    "role",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: ``who`` is the principal's description (``role:org:subject``)."""

    who: str
    role: str
    org: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        """The operator running a command on the store's host."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (a container's numeric user)
            user = "unknown"
        return cls(f"cli:-:{user}", "operator")

    @classmethod
    def system(cls, part: str) -> Actor:
        """The service itself (``system:-:detection``): a change nobody asked for by hand."""
        return cls(f"system:-:{part}", "system")


@dataclass(slots=True)
class Entry:
    """One audited action, before the store numbers and chains it."""

    action: str
    object_type: str
    object_id: str
    before: Any = None
    after: Any = None


@dataclass(frozen=True, slots=True)
class Broken:
    """Where the chain breaks: the first row (by seq) that does not verify, and why."""

    seq: int
    reason: str


def redact(document: Any) -> Any:
    """The document with the value of every secret key replaced (recursively)."""
    if isinstance(document, dict):
        return {
            k: REDACTED if k in SECRET_KEYS and v is not None else redact(v)
            for k, v in document.items()
        }
    if isinstance(document, list | tuple):
        return [redact(v) for v in document]
    return document


def canonical(row: dict[str, Any]) -> bytes:
    """The row's chained fields as canonical JSON (sorted keys, no whitespace, UTF-8)."""
    return orjson.dumps({name: row[name] for name in CHAINED}, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 (hex) of the previous row's hash followed by this row's canonical JSON."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(row)).hexdigest()


def verify(rows: Iterable[dict[str, Any]], head: tuple[int, str] | None = None) -> Broken | None:
    """Check a chain read in seq order; None when intact, else the first broken row.

    ``head`` is the store's (last seq, last hash): rows cut from the end are found there.
    """
    expected_seq, prev = 1, GENESIS
    for row in rows:
        seq = int(row["seq"])
        if seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            return Broken(
                seq, f"row {seq} follows row {expected_seq - 1}: row(s) {missing} missing"
            )
        if row["prev_hash"] != prev:
            return Broken(seq, f"row {seq} does not link to row {seq - 1} (prev_hash differs)")
        if chain_hash(prev, row) != row["hash"]:
            return Broken(seq, f"row {seq} was changed (its hash does not match its content)")
        prev, expected_seq = row["hash"], seq + 1
    if head is not None:
        last_seq, last_hash = head
        if last_seq != expected_seq - 1 or last_hash != prev:
            return Broken(
                expected_seq,
                f"the chain ends at row {expected_seq - 1} but the head records row {last_seq}: "
                f"row(s) {expected_seq}..{last_seq} missing",
            )
    return None


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass(slots=True)
class Recording:
    """What a :func:`recorded` block fills in: the cursor of its transaction, and the
    object's document after the change (and before it, when only known inside)."""

    cursor: Any
    before: Any = None
    after: Any = None
    object_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def recorded(
    store: SqlStore,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str,
    *,
    before: Any = None,
) -> Iterator[Recording]:
    """One write and its audit row, in one transaction.

    The store's own writes made inside the block join the block's transaction (the store's
    transactions nest); at the end of the block the row is appended with ``before`` and
    ``recording.after``. An exception inside the block rolls back both::

        with recorded(store, actor, "product.put", "product", product_id, before=old) as rec:
            store.save_products([product])
            rec.after = product.model_dump(mode="json")
    """
    with store.write_transaction() as cursor:
        recording = Recording(cursor, before=before)
        yield recording
        entry = Entry(
            action,
            object_type,
            recording.object_id or object_id,
            redact(recording.before),
            redact(recording.after),
        )
        store.append_audit(cursor, actor, [entry])


def audit_read(
    store: SqlStore,
    actor: Actor,
    object_type: str,
    object_id: str,
    *,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record a case-level read (one row, action ``"<object_type>.read"``).

    For one case: ``audit_read(store, actor, "case", f"{owner}/{case_id}")``; for a line
    listing: ``audit_read(store, actor, "case_series", query, detail={"cases": [...]})``.
    ``detail`` is kept as the row's ``after`` (what was shown).
    """
    with store.write_transaction() as cursor:
        store.append_audit(
            cursor, actor, [Entry(f"{object_type}.read", object_type, object_id, None, detail)]
        )
