"""What the API keeps in the store: keys, subscriptions, deliveries, receipts, outbox cursors.

A mixin of :class:`~pvsignal.store.sql.SqlStore`: the same "?" statements run on both dialects.
API keys are kept as hashes only; webhook secrets arrive here already sealed by the caller.
Every publisher of the alerts outbox keeps its own cursor (``outbox_cursors``), so webhooks
and server-sent events never interfere with the Kafka publisher's ``published_at`` marks.
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
)
_RECEIPT_COLUMNS = ("receipt_id", "org", "role", "submitted_at", "content_type", "records")


# Every batch write (every registry change) moves this mark, a store setting: caches of the
# counts (of the registry) know when to rebuild.
BATCHES_WRITTEN = "batches_written"
PRODUCTS_WRITTEN = "products_written"


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

    # -- subscriptions ----------------------------------------------------------------------

    def create_subscription(
        self,
        owner_role: str,
        owner_org: str | None,
        url: str,
        sealed_secret: str,
        filter_: dict[str, Any],
    ) -> dict[str, Any]:
        now = _now()
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "INSERT INTO subscriptions (owner_role, owner_org, url, secret, filter, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING subscription_id",
                (owner_role, owner_org, url, sealed_secret, orjson.dumps(filter_).decode(), now),
            )
            (subscription_id,) = cursor.fetchone()
        return {
            "subscription_id": int(subscription_id),
            "owner_role": owner_role,
            "owner_org": owner_org,
            "url": url,
            "secret": sealed_secret,
            "filter": filter_,
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
        return [{**orjson.loads(payload), "alert_id": int(i)} for i, payload in rows]

    def fan_out(self, consumer: str, through: int, deliveries: list[tuple[int, int]]) -> None:
        """Queue (subscription_id, alert_id) deliveries and move the cursor, atomically."""
        now = _now()
        with self._transaction() as cursor:
            self._executemany(
                cursor,
                "INSERT INTO deliveries (subscription_id, alert_id, status, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, 'pending', 0, ?, ?) "
                "ON CONFLICT (subscription_id, alert_id) DO NOTHING",
                [(s, a, now, now) for s, a in deliveries],
            )
            self._execute(
                cursor,
                "INSERT INTO outbox_cursors (consumer, alert_id) VALUES (?, ?) "
                "ON CONFLICT (consumer) DO UPDATE SET alert_id = excluded.alert_id",
                (consumer, through),
            )

    # -- deliveries -------------------------------------------------------------------------

    def due_deliveries(self, now: str, limit: int = 100) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, with their subscription and alert."""
        rows = self._query(
            "SELECT d.delivery_id, d.subscription_id, d.alert_id, d.attempts, s.url, s.secret, "
            "a.payload FROM deliveries d "
            "JOIN subscriptions s ON s.subscription_id = d.subscription_id "
            "JOIN alerts a ON a.alert_id = d.alert_id "
            "WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND s.deleted_at IS NULL "
            "ORDER BY d.next_attempt_at, d.delivery_id LIMIT ?",
            (now, limit),
        )
        names = ("delivery_id", "subscription_id", "alert_id", "attempts", "url", "secret")
        return [
            {
                **dict(zip(names, row[:6], strict=True)),
                "alert": {**orjson.loads(row[6]), "alert_id": int(row[2])},
            }
            for row in rows
        ]

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
        after: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Alerts (oldest first) after an id, limited to ``products`` unless that is None."""
        where: list[str] = ["alert_id > ?"]
        parameters: list[Any] = [after]
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
            ("measure", measure),
            ("transition", transition),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                parameters.append(value)
        rows = self._query(
            f"SELECT alert_id, payload FROM alerts WHERE {' AND '.join(where)} "
            "ORDER BY alert_id LIMIT ?",
            (*parameters, limit),
        )
        return [{**orjson.loads(payload), "alert_id": int(i)} for i, payload in rows]

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
