"""What the API keeps in the store: keys, subscriptions, deliveries, receipts, outbox cursors.

A mixin of :class:`~pvsignal.store.sql.SqlStore`: the same "?" statements run on both dialects.
API keys are kept as hashes only; webhook secrets arrive here already sealed by the caller.
Every publisher of the alerts outbox keeps its own cursor (``outbox_cursors``), so webhooks
and server-sent events never interfere with the Kafka publisher's ``published_at`` marks.

Deliveries: a subscription without a digest gets one delivery per alert (unique per
subscription and alert). A digest subscription's alerts are queued as ``digest_items`` (one
per subscription and alert, so an alert is listed once however often it is fanned out); when
a period has ended, :meth:`close_digests` makes one delivery per subscription and period and
claims the period's items for it in the same transaction. Digest deliveries are then sent,
signed and retried exactly like the others.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import orjson


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


_KEY_COLUMNS = ("key_id", "role", "org", "name", "created_at", "revoked_at")
_SUBSCRIPTION_COLUMNS = (
    "subscription_id",
    "owner_role",
    "owner_org",
    "url",
    "secret",
    "filter",
    "digest",
    "created_at",
)
_DELIVERY_COLUMNS = (
    "delivery_id",
    "subscription_id",
    "alert_id",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "last_status",
    "created_at",
    "delivered_at",
    "period_start",
    "period_end",
)
_RECEIPT_COLUMNS = ("receipt_id", "org", "role", "submitted_at", "content_type", "records")


# Every batch write (every registry change) moves this mark, a store setting: caches of the
# counts (of the registry) know when to rebuild.
BATCHES_WRITTEN = "batches_written"
PRODUCTS_WRITTEN = "products_written"
COUNTS_REBUILT = "counts_rebuilt"
# Every exposure batch that changed an exposure moves this one: whoever runs the sequential
# tests (pvsignal.monitoring) knows that patients were added, corrected or withdrawn.
EXPOSURES_WRITTEN = "exposures_written"

# An alert covers a pair, not one measure: its ``measure`` column holds this mark, and its
# ``changes`` column the measures that moved (see encode_changes).
PAIR_MEASURE = "*"
DIGEST_PERIODS = {"hourly": dt.timedelta(hours=1), "daily": dt.timedelta(days=1)}


def encode_changes(changes: dict[str, str]) -> str:
    """``{"ebgm": "new", "prr": "strengthened"}`` as ``,ebgm:new,prr:strengthened,``: one
    ``LIKE '%,ebgm:new,%'`` (or ``'%,ebgm:%'``, ``'%:new,%'``) finds an alert by what moved."""
    return "," + "".join(f"{measure}:{transition}," for measure, transition in changes.items())


def changes_pattern(measure: str | None, transition: str | None) -> str:
    """The LIKE pattern of alerts in which ``measure`` made ``transition`` (either may be
    None: any). Measures and transitions are closed sets of plain words (no LIKE wildcards)."""
    if measure is not None and transition is not None:
        return f"%,{measure}:{transition},%"
    if measure is not None:
        return f"%,{measure}:%"
    return f"%:{transition},%"


def stored_alert(payload: str | bytes) -> dict[str, Any]:
    """An outbox payload as a document; alerts written per measure (before migration 7) are
    given the pair-level fields they lack (``changes`` of their one measure)."""
    alert = orjson.loads(payload)
    if "changes" not in alert and "measure" in alert:
        alert["changes"] = {alert["measure"]: alert["transition"]}
    return alert


def period_of(moment: str, digest: str) -> tuple[str, str]:
    """The UTC hour or day (start, end) in which the ISO ``moment`` falls."""
    at = dt.datetime.fromisoformat(moment).astimezone(dt.UTC)
    start = at.replace(minute=0, second=0, microsecond=0)
    if digest == "daily":
        start = start.replace(hour=0)
    return start.isoformat(), (start + DIGEST_PERIODS[digest]).isoformat()


class AccessStore:
    """Keys, subscriptions, deliveries, receipts and outbox cursors (mixed into SqlStore)."""

    if TYPE_CHECKING:  # provided by SqlStore
        _dialect: Any

        def _transaction(self, *, exclusive: bool = False) -> AbstractContextManager[Any]: ...

        def _query(
            self, statement: str, parameters: Sequence[Any] = ()
        ) -> list[tuple[Any, ...]]: ...

        def _execute(self, cursor: Any, statement: str, parameters: Sequence[Any] = ()) -> Any: ...

        def _executemany(self, cursor: Any, statement: str, rows: list[Sequence[Any]]) -> None: ...

    # -- API keys ---------------------------------------------------------------------------

    def create_api_key(
        self, key_hash: str, key_id: str, role: str, org: str | None, name: str | None
    ) -> dict[str, Any]:
        now = _now()
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "INSERT INTO api_keys (key_hash, key_id, role, org, name, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_hash, key_id, role, org, name, now),
            )
        return dict(zip(_KEY_COLUMNS, (key_id, role, org, name, now, None), strict=True))

    def api_key(self, key_hash: str) -> dict[str, Any] | None:
        """The live (not revoked) key with this hash."""
        rows = self._query(
            f"SELECT {', '.join(_KEY_COLUMNS)} FROM api_keys "
            "WHERE key_hash = ? AND revoked_at IS NULL",
            (key_hash,),
        )
        return dict(zip(_KEY_COLUMNS, rows[0], strict=True)) if rows else None

    def api_keys(self) -> list[dict[str, Any]]:
        rows = self._query(f"SELECT {', '.join(_KEY_COLUMNS)} FROM api_keys ORDER BY created_at")
        return [dict(zip(_KEY_COLUMNS, row, strict=True)) for row in rows]

    def revoke_api_key(self, key_id: str) -> bool:
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (_now(), key_id),
            )
            return bool(cursor.rowcount)

    # -- dashboard sessions -----------------------------------------------------------------

    def end_session(self, digest: str, expires_at: float, now: float) -> None:
        """Record a signed-out session until it would have expired (and forget those past)."""
        with self._transaction() as cursor:
            self._execute(cursor, "DELETE FROM ended_sessions WHERE expires_at < ?", (now,))
            self._execute(
                cursor,
                "INSERT INTO ended_sessions (digest, expires_at) VALUES (?, ?) "
                "ON CONFLICT (digest) DO NOTHING",
                (digest, expires_at),
            )

    def session_ended(self, digest: str) -> bool:
        return bool(self._query("SELECT 1 FROM ended_sessions WHERE digest = ?", (digest,)))

    # -- subscriptions ----------------------------------------------------------------------

    def create_subscription(
        self,
        owner_role: str,
        owner_org: str | None,
        url: str,
        sealed_secret: str,
        filter_: dict[str, Any],
        digest: str | None = None,
    ) -> dict[str, Any]:
        now = _now()
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "INSERT INTO subscriptions (owner_role, owner_org, url, secret, filter, digest, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING subscription_id",
                (
                    owner_role,
                    owner_org,
                    url,
                    sealed_secret,
                    orjson.dumps(filter_).decode(),
                    digest,
                    now,
                ),
            )
            (subscription_id,) = cursor.fetchone()
        return {
            "subscription_id": int(subscription_id),
            "owner_role": owner_role,
            "owner_org": owner_org,
            "url": url,
            "secret": sealed_secret,
            "filter": filter_,
            "digest": digest,
            "created_at": now,
        }

    def subscriptions(self, *, owner_org: str | None = None) -> list[dict[str, Any]]:
        """Live subscriptions, all of them or one organisation's."""
        where, parameters = "deleted_at IS NULL", ()
        if owner_org is not None:
            where, parameters = "deleted_at IS NULL AND owner_org = ?", (owner_org,)
        rows = self._query(
            f"SELECT {', '.join(_SUBSCRIPTION_COLUMNS)} FROM subscriptions WHERE {where} "
            "ORDER BY subscription_id",
            parameters,
        )
        return [_subscription(row) for row in rows]

    def subscription(self, subscription_id: int) -> dict[str, Any] | None:
        rows = self._query(
            f"SELECT {', '.join(_SUBSCRIPTION_COLUMNS)} FROM subscriptions "
            "WHERE subscription_id = ? AND deleted_at IS NULL",
            (subscription_id,),
        )
        return _subscription(rows[0]) if rows else None

    def delete_subscription(self, subscription_id: int) -> None:
        """Stop a subscription; its pending deliveries are dropped, its history kept."""
        now = _now()
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "UPDATE subscriptions SET deleted_at = ? WHERE subscription_id = ?",
                (now, subscription_id),
            )
            self._execute(
                cursor,
                "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL "
                "WHERE subscription_id = ? AND status = 'pending'",
                (subscription_id,),
            )

    # -- the outbox, as each API publisher reads it -----------------------------------------

    def outbox_cursor(self, consumer: str) -> int | None:
        rows = self._query("SELECT alert_id FROM outbox_cursors WHERE consumer = ?", (consumer,))
        return int(rows[0][0]) if rows else None

    def latest_alert_id(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(alert_id), 0) FROM alerts")[0][0])

    def alerts_after(self, after: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Alerts past ``after`` (oldest first), with ids — whatever their Kafka status."""
        rows = self._query(
            "SELECT alert_id, payload FROM alerts WHERE alert_id > ? ORDER BY alert_id LIMIT ?",
            (after, limit),
        )
        return [{**stored_alert(payload), "alert_id": int(i)} for i, payload in rows]

    def fan_out(
        self,
        consumer: str,
        through: int,
        deliveries: list[tuple[int, int]],
        digest_items: Sequence[tuple[int, int]] = (),
    ) -> None:
        """Queue (subscription_id, alert_id) deliveries and digest items, and move the cursor,
        atomically. Both are unique per subscription and alert: a repeat adds nothing."""
        now = _now()
        with self._transaction() as cursor:
            self._executemany(
                cursor,
                "INSERT INTO deliveries (subscription_id, alert_id, status, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, 'pending', 0, ?, ?) "
                "ON CONFLICT (subscription_id, alert_id) DO NOTHING",
                [(s, a, now, now) for s, a in deliveries],
            )
            self._executemany(
                cursor,
                "INSERT INTO digest_items (subscription_id, alert_id) VALUES (?, ?) "
                "ON CONFLICT (subscription_id, alert_id) DO NOTHING",
                [(s, a) for s, a in digest_items],
            )
            self._execute(
                cursor,
                "INSERT INTO outbox_cursors (consumer, alert_id) VALUES (?, ?) "
                "ON CONFLICT (consumer) DO UPDATE SET alert_id = excluded.alert_id",
                (consumer, through),
            )

    # -- deliveries -------------------------------------------------------------------------

    def close_digests(self, now: str) -> int:
        """Make one delivery per digest subscription and ended period of its queued items
        (a period ends at ``now``'s side of its end); return how many were made.

        Each delivery claims its items in its own transaction, and is unique per subscription
        and last alert: two replicas closing the same period at once make one delivery."""
        rows = self._query(
            "SELECT i.subscription_id, s.digest, i.alert_id, a.created_at FROM digest_items i "
            "JOIN subscriptions s ON s.subscription_id = i.subscription_id "
            "JOIN alerts a ON a.alert_id = i.alert_id "
            "WHERE i.delivery_id IS NULL AND s.deleted_at IS NULL AND s.digest IS NOT NULL "
            "ORDER BY i.subscription_id, i.alert_id"
        )
        periods: dict[tuple[int, str, str], list[int]] = {}
        for subscription_id, digest, alert_id, created_at in rows:
            start, end = period_of(created_at, digest)
            if end <= now:
                periods.setdefault((int(subscription_id), start, end), []).append(int(alert_id))
        made = 0
        for (subscription_id, start, end), alert_ids in sorted(periods.items()):
            with self._transaction() as cursor:
                self._execute(
                    cursor,
                    "INSERT INTO deliveries (subscription_id, alert_id, status, attempts, "
                    "next_attempt_at, created_at, period_start, period_end) "
                    "VALUES (?, ?, 'pending', 0, ?, ?, ?, ?) "
                    "ON CONFLICT (subscription_id, alert_id) DO NOTHING RETURNING delivery_id",
                    (subscription_id, alert_ids[-1], now, now, start, end),
                )
                created = cursor.fetchone()
                if created is None:
                    continue  # another replica closed this period first
                self._executemany(
                    cursor,
                    "UPDATE digest_items SET delivery_id = ? WHERE subscription_id = ? "
                    "AND alert_id = ? AND delivery_id IS NULL",
                    [(int(created[0]), subscription_id, a) for a in alert_ids],
                )
                made += 1
        return made

    def due_deliveries(self, now: str, limit: int = 100) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, with their subscription and alert (or,
        for a digest, its period and every alert it lists, oldest first)."""
        rows = self._query(
            "SELECT d.delivery_id, d.subscription_id, d.alert_id, d.attempts, s.url, s.secret, "
            "d.period_start, d.period_end, s.digest, a.payload FROM deliveries d "
            "JOIN subscriptions s ON s.subscription_id = d.subscription_id "
            "JOIN alerts a ON a.alert_id = d.alert_id "
            "WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND s.deleted_at IS NULL "
            "ORDER BY d.next_attempt_at, d.delivery_id LIMIT ?",
            (now, limit),
        )
        names = ("delivery_id", "subscription_id", "alert_id", "attempts", "url", "secret")
        due = []
        for row in rows:
            delivery = dict(zip(names, row[:6], strict=True))
            period_start, period_end, digest, payload = row[6:]
            if period_start is None:
                delivery["alert"] = {**stored_alert(payload), "alert_id": int(row[2])}
            else:
                delivery["digest"] = {"digest": digest, "start": period_start, "end": period_end}
                delivery["alerts"] = self.digest_alerts(int(row[0]))
            due.append(delivery)
        return due

    def digest_alerts(self, delivery_id: int) -> list[dict[str, Any]]:
        """The alerts a digest delivery lists, oldest first."""
        rows = self._query(
            "SELECT a.alert_id, a.payload FROM digest_items i "
            "JOIN alerts a ON a.alert_id = i.alert_id WHERE i.delivery_id = ? ORDER BY a.alert_id",
            (delivery_id,),
        )
        return [{**stored_alert(payload), "alert_id": int(i)} for i, payload in rows]

    def claim_delivery(self, delivery_id: int, now: str, lease_until: str) -> bool:
        """Take a due delivery for one sender (pushing its time to the lease's end), so two
        API replicas never send the same delivery at once."""
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ? "
                "AND status = 'pending' AND next_attempt_at <= ?",
                (lease_until, delivery_id, now),
            )
            return cursor.rowcount == 1

    def record_attempt(
        self,
        delivery_id: int,
        *,
        status: str,
        attempts: int,
        next_attempt_at: str | None,
        error: str | None,
        http_status: int | None,
    ) -> None:
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, "
                "last_error = ?, last_status = ?, delivered_at = ? WHERE delivery_id = ?",
                (
                    status,
                    attempts,
                    next_attempt_at,
                    error,
                    http_status,
                    _now() if status == "delivered" else None,
                    delivery_id,
                ),
            )

    def deliveries(self, subscription_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """A subscription's deliveries, newest first."""
        rows = self._query(
            f"SELECT {', '.join(_DELIVERY_COLUMNS)} FROM deliveries WHERE subscription_id = ? "
            "ORDER BY delivery_id DESC LIMIT ?",
            (subscription_id, limit),
        )
        return [dict(zip(_DELIVERY_COLUMNS, row, strict=True)) for row in rows]

    # -- alerts as one tenant may see them --------------------------------------------------

    def alerts_of(
        self,
        *,
        products: Sequence[str] | None,
        scope: str | None = None,
        product: str | None = None,
        event: str | None = None,
        measure: str | None = None,
        transition: str | None = None,
        since: str | None = None,
        after: int = 0,
        before: int | None = None,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Alerts after an id (and before one, when given), oldest first or newest first,
        limited to ``products`` unless that is None.

        ``measure`` and ``transition`` select alerts by what moved (an alert in which that
        measure made that transition); ``since`` (UTC ISO, as the store writes them) keeps
        alerts raised at or after it. Newest first, a list of products reads each product's
        alerts from the index on (product, alert_id) and sorts what it found: an MAH's page
        costs its own alerts, not a walk back over everyone's."""
        where: list[str] = ["alert_id > ?"]
        parameters: list[Any] = [after]
        if before is not None:
            where.append("alert_id < ?")
            parameters.append(before)
        if measure is not None or transition is not None:
            where.append("changes LIKE ?")
            parameters.append(changes_pattern(measure, transition))
        if since is not None:
            where.append("created_at >= ?")
            parameters.append(since)
        if products is not None:
            if not products:
                return []
            clause, values = self._dialect.in_clause("product", list(products))
            where.append(clause)
            parameters += values
        for column, value in (
            ("scope", scope),
            ("product", product),
            ("event", event),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                parameters.append(value)
        rows = self._query(
            f"SELECT alert_id, payload FROM alerts WHERE {' AND '.join(where)} "
            f"ORDER BY alert_id {'DESC' if newest_first else 'ASC'} LIMIT ?",
            (*parameters, limit),
        )
        return [{**stored_alert(payload), "alert_id": int(i)} for i, payload in rows]

    # -- submission receipts ----------------------------------------------------------------

    def save_receipt(self, receipt: dict[str, Any]) -> None:
        with self._transaction() as cursor:
            self.insert_receipt(cursor, receipt)

    def insert_receipt(
        self,
        cursor: Any,
        receipt: dict[str, Any],
        idempotency_key: str | None = None,
        body_digest: str | None = None,
    ) -> None:
        """Write a receipt with the caller's cursor (inside the batch that it describes)."""
        self._execute(
            cursor,
            "INSERT INTO receipts (receipt_id, org, role, submitted_at, content_type, "
            "records, summary, results, idempotency_key, body_digest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                receipt["receipt_id"],
                receipt["org"],
                receipt["role"],
                receipt["submitted_at"],
                receipt["content_type"],
                receipt["records"],
                orjson.dumps(receipt["summary"]).decode(),
                orjson.dumps(receipt["results"]).decode(),
                idempotency_key,
                body_digest,
            ),
        )

    def receipt_for_key(self, idempotency_key: str) -> tuple[dict[str, Any], str] | None:
        """The receipt of the submission sent with this (caller-scoped) Idempotency-Key, and
        the digest of the body it was sent with."""
        rows = self._query(
            "SELECT receipt_id, body_digest FROM receipts WHERE idempotency_key = ?",
            (idempotency_key,),
        )
        if not rows:
            return None
        receipt = self.receipt(rows[0][0])
        assert receipt is not None
        return receipt, rows[0][1]

    def receipts(
        self, *, org: str | None, before: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Receipts newest first, one organisation's (or all when ``org`` is None)."""
        where, parameters = ["1 = 1"], []
        if org is not None:
            where.append("org = ?")
            parameters.append(org)
        if before is not None:
            where.append("submitted_at < ?")
            parameters.append(before)
        rows = self._query(
            f"SELECT {', '.join(_RECEIPT_COLUMNS)}, summary FROM receipts "
            f"WHERE {' AND '.join(where)} ORDER BY submitted_at DESC LIMIT ?",
            (*parameters, limit),
        )
        return [
            {**dict(zip(_RECEIPT_COLUMNS, row[:-1], strict=True)), "summary": orjson.loads(row[-1])}
            for row in rows
        ]

    def receipt(self, receipt_id: str) -> dict[str, Any] | None:
        rows = self._query(
            f"SELECT {', '.join(_RECEIPT_COLUMNS)}, summary, results FROM receipts "
            "WHERE receipt_id = ?",
            (receipt_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return {
            **dict(zip(_RECEIPT_COLUMNS, row[:-2], strict=True)),
            "summary": orjson.loads(row[-2]),
            "results": orjson.loads(row[-1]),
        }

    # -- change detection for caches --------------------------------------------------------

    def change_token(self) -> tuple[Any, ...]:
        """Cheap (indexed) marks that move whenever counts, fits or signal states change:
        the number of batch writes, the consumers' offsets, the last fit and the last alert."""
        rows = self._query(
            "SELECT (SELECT value FROM store_settings WHERE name = ?), "
            "(SELECT SUM(next_offset) FROM consumer_offsets), "
            "(SELECT MAX(id) FROM fits), (SELECT MAX(alert_id) FROM alerts)",
            (BATCHES_WRITTEN,),
        )
        return tuple(rows[0])

    def products_digest(self) -> str:
        """A digest of the registries: changes with any product's or institution's document."""
        digest = hashlib.blake2b(digest_size=16)
        for table, key in (("products", "product_id"), ("institutions", "institution_id")):
            for name, doc in self._query(f"SELECT {key}, doc FROM {table} ORDER BY 1"):
                digest.update(f"{table}\0{name}\0{doc}\0".encode())
        return digest.hexdigest()


def _subscription(row: Sequence[Any]) -> dict[str, Any]:
    document = dict(zip(_SUBSCRIPTION_COLUMNS, row, strict=True))
    document["subscription_id"] = int(document["subscription_id"])
    document["filter"] = orjson.loads(document["filter"])
    return document
