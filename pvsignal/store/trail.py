"""What the store keeps of decisions: signal reviews and the hash-chained audit trail.

A mixin of :class:`~pvsignal.store.sql.SqlStore` (the same "?" statements on both dialects).
Appends to the trail are serialised by the ``audit_head`` row: each append updates it first
(``UPDATE ... RETURNING`` the previous hash), so SQLite holds its write lock and PostgreSQL
the row's lock until the transaction ends, and no two appends chain onto the same tail.
Review writes are conditional on the version the caller read (optimistic concurrency): a
write whose version moved meanwhile changes nothing and reports it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import orjson

from pvsignal import review as rules
from pvsignal.audit import Actor, Broken, Entry, chain_hash, verify
from pvsignal.review import Review

_AUDIT_COLUMNS = (
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
    "prev_hash",
    "hash",
)
_SYSTEM_DETECTION = Actor.system("detection")


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _audit_row(row: Sequence[Any]) -> dict[str, Any]:
    found = dict(zip(_AUDIT_COLUMNS, row, strict=True))
    found["seq"] = int(found["seq"])
    for name in ("before", "after"):
        found[name] = None if found[name] is None else orjson.loads(found[name])
    return found


class TrailStore:
    """Reviews and the audit trail (mixed into SqlStore)."""

    if TYPE_CHECKING:  # provided by SqlStore
        _dialect: Any

        def _transaction(self, *, exclusive: bool = False) -> AbstractContextManager[Any]: ...

        def write_transaction(self) -> AbstractContextManager[Any]: ...

        def _query(
            self, statement: str, parameters: Sequence[Any] = ()
        ) -> list[tuple[Any, ...]]: ...

        def _execute(self, cursor: Any, statement: str, parameters: Sequence[Any] = ()) -> Any: ...

    # -- the audit trail --------------------------------------------------------------------

    def append_audit(
        self, cursor: Any, actor: Actor, entries: Sequence[Entry], at: str | None = None
    ) -> list[int]:
        """Append entries in the caller's transaction; return their seqs."""
        at = at or dt.datetime.now(dt.UTC).isoformat()
        seqs = []
        for entry in entries:
            self._execute(
                cursor, "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"
            )
            seq, prev = cursor.fetchone()
            row = {
                "seq": int(seq),
                "at": at,
                "actor": actor.who,
                "org": actor.org,
                "role": actor.role,
                "action": entry.action,
                "object_type": entry.object_type,
                "object_id": str(entry.object_id),
                "before": orjson.loads(_json(entry.before) or "null"),
                "after": orjson.loads(_json(entry.after) or "null"),
            }
            digest = chain_hash(prev, row)
            self._execute(
                cursor,
                f"INSERT INTO audit_log ({', '.join(_AUDIT_COLUMNS)}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row["seq"],
                    at,
                    actor.who,
                    actor.org,
                    actor.role,
                    entry.action,
                    entry.object_type,
                    row["object_id"],
                    _json(entry.before),
                    _json(entry.after),
                    prev,
                    digest,
                ),
            )
            self._execute(cursor, "UPDATE audit_head SET hash = ? WHERE id = 1", (digest,))
            seqs.append(row["seq"])
        return seqs

    def audit_entries(
        self,
        *,
        actor: str | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit rows in seq order after ``after``, filtered; ``since``/``until`` are UTC ISO
        times (``since`` inclusive, ``until`` exclusive)."""
        where, parameters = ["seq > ?"], [after]
        for clause, value in (
            ("actor = ?", actor),
            ("object_type = ?", object_type),
            ("object_id = ?", object_id),
            ("action = ?", action),
            ("at >= ?", since),
            ("at < ?", until),
        ):
            if value is not None:
                where.append(clause)
                parameters.append(value)
        rows = self._query(
            f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM audit_log WHERE {' AND '.join(where)} "
            "ORDER BY seq LIMIT ?",
            (*parameters, limit),
        )
        return [_audit_row(row) for row in rows]

    def audit_chain(self, page: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every audit row in seq order (read in pages)."""
        after = -1
        while True:
            rows = self._query(
                f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM audit_log WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, page),
            )
            for row in rows:
                yield _audit_row(row)
            if len(rows) < page:
                return
            after = int(rows[-1][0])

    def audit_head(self) -> tuple[int, str]:
        seq, digest = self._query("SELECT seq, hash FROM audit_head WHERE id = 1")[0]
        return int(seq), digest

    def verify_audit(self) -> Broken | None:
        """Check the whole chain against itself and the head; the first broken row, or None."""
        head = self.audit_head()
        return verify(self.audit_chain(), head)

    # -- reviews ----------------------------------------------------------------------------

    def review(self, scope: str, product: str, event: str, org: str) -> Review:
        """The organisation's review of the pair (an unreviewed one when never written)."""
        rows = self._query(
            "SELECT doc FROM reviews WHERE scope = ? AND product = ? AND event = ? AND org = ?",
            (scope, product, event, org),
        )
        if not rows:
            return Review(scope, product, event, org)
        return Review.from_document(orjson.loads(rows[0][0]))

    def shared_reviews(self, scope: str, product: str, event: str, org: str) -> list[Review]:
        """Other organisations' reviews of the pair that they marked shared."""
        rows = self._query(
            "SELECT doc FROM reviews WHERE scope = ? AND product = ? AND event = ? "
            "AND org <> ? AND shared = 1 ORDER BY org",
            (scope, product, event, org),
        )
        return [Review.from_document(orjson.loads(doc)) for (doc,) in rows]

    def save_review(self, cursor: Any, review: Review, expected_version: int) -> bool:
        """Write the review if its stored version is still ``expected_version`` (0: none
        stored yet), in the caller's transaction; False when another write came first."""
        values = (
            review.status.value,
            review.assignee,
            review.due_at,
            int(review.shared),
            review.version,
            orjson.dumps(review.document()).decode(),
            review.updated_at,
        )
        key = (review.scope, review.product_id, review.pt, review.org)
        if expected_version == 0:
            self._execute(
                cursor,
                "INSERT INTO reviews (status, assignee, due_at, shared, version, doc, updated_at, "
                "scope, product, event, org) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (scope, product, event, org) DO NOTHING",
                (*values, *key),
            )
        else:
            self._execute(
                cursor,
                "UPDATE reviews SET status = ?, assignee = ?, due_at = ?, shared = ?, "
                "version = ?, doc = ?, updated_at = ? "
                "WHERE scope = ? AND product = ? AND event = ? AND org = ? AND version = ?",
                (*values, *key, expected_version),
            )
        return cursor.rowcount == 1

    def reviews(
        self,
        org: str,
        *,
        status: str | None = None,
        assignee: str | None = None,
        due_before: str | None = None,
        scope: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
    ) -> list[Review]:
        """One organisation's reviews, by (scope, product, PT); ``due_before``: overdue at."""
        where, parameters = ["org = ?"], [org]
        for clause, value in (
            ("status = ?", status),
            ("assignee = ?", assignee),
            ("due_at < ?", due_before),
            ("scope = ?", scope),
        ):
            if value is not None:
                where.append(clause)
                parameters.append(value)
        if after is not None:
            where.append(
                "(scope > ? OR (scope = ? AND (product > ? OR (product = ? AND event > ?))))"
            )
            parameters += [after[0], after[0], after[1], after[1], after[2]]
        rows = self._query(
            f"SELECT doc FROM reviews WHERE {' AND '.join(where)} "
            "ORDER BY scope, product, event LIMIT ?",
            (*parameters, limit),
        )
        return [Review.from_document(orjson.loads(doc)) for (doc,) in rows]

    def reopen_reviews(
        self,
        cursor: Any,
        scope: str,
        alerts: Sequence[Mapping[str, Any]],
        now: str,
        deadlines: Mapping[str, int],
    ) -> int:
        """Inside detection's transaction (after its alerts were written): send the decided
        reviews of pairs whose alert made a reopening transition back to validation, each
        with its audit row. Returns how many were reopened."""
        reopened = 0
        decided = [s.value for s in sorted(rules.DECIDED)]
        clause, values = self._dialect.in_clause("status", decided)
        lock = self._dialect.for_update
        # One query for the scope's decided pairs first: a cold run alerts on every flagged
        # pair, and a query per alert (tens of thousands at national scale) is most of its write.
        self._execute(
            cursor,
            f"SELECT DISTINCT product, event FROM reviews WHERE scope = ? AND {clause}",
            (scope, *values),
        )
        decided_pairs = set(map(tuple, cursor.fetchall()))
        for alert in sorted(alerts, key=lambda a: (a["product_id"], a["pt"])):
            if (alert["product_id"], alert["pt"]) not in decided_pairs:
                continue
            if not rules.reopening(alert["changes"]):
                continue
            pair = (scope, alert["product_id"], alert["pt"])
            self._execute(
                cursor,
                f"SELECT doc FROM reviews WHERE scope = ? AND product = ? AND event = ? "
                f"AND {clause} ORDER BY org{lock}",
                (*pair, *values),
            )
            found = [Review.from_document(orjson.loads(doc)) for (doc,) in cursor.fetchall()]
            if not found:
                continue
            self._execute(
                cursor,
                "SELECT MAX(alert_id) FROM alerts WHERE scope = ? AND product = ? AND event = ?",
                pair,
            )
            (alert_id,) = cursor.fetchone()
            at = dt.datetime.fromisoformat(now)
            for current in found:
                changed = rules.reopen(
                    current,
                    alert["changes"],
                    alert_id=None if alert_id is None else int(alert_id),
                    by=_SYSTEM_DETECTION.who,
                    now=at,
                    deadlines=deadlines,
                )
                if changed is None or not self.save_review(cursor, changed, current.version):
                    continue
                self.append_audit(
                    cursor,
                    _SYSTEM_DETECTION,
                    [review_entry("review.reopen", current, changed)],
                    now,
                )
                reopened += 1
        return reopened


def review_id(review: Review) -> str:
    """The audit object id of a review: ``org/scope/product/pt``."""
    return f"{review.org}/{review.scope}/{review.product_id}/{review.pt}"


def review_entry(action: str, before: Review, after: Review) -> Entry:
    return Entry(
        action,
        "review",
        review_id(after),
        None if before.version == 0 else before.document(),
        after.document(),
    )
