"""Reads behind trends, case series and the scope list (a mixin of SqlStore).

Period counts are read for one pair at a time: its own rows, its product's and its event's rows
(per stratum and month) and the scope's totals (per stratum and month), each a range of one
table's primary key. Case listings read the ``cases`` table in key order (owner, case_id) and
keep the rows whose stored contribution counts the wanted pair in the wanted scope; a LIKE on
the contribution's JSON skips most other rows in the database before any row is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson


@dataclass(frozen=True)
class PeriodCounts:
    """One pair's counts per received month (``YYYY-MM`` or "unknown"), as stored.

    ``pair`` maps period -> a; the others are (stratum, period, n) rows of the pair's product,
    of its event and of the scope's totals.
    """

    pair: dict[str, int]
    product: list[tuple[str, str, int]]
    event: list[tuple[str, str, int]]
    totals: list[tuple[str, str, int]]


@dataclass(frozen=True)
class StoredCase:
    """A case as listings read it: its latest version's stored report and its contribution."""

    owner: str
    case_id: str
    status: str
    version: int | None
    received: str | None
    contribution: dict[str, Any] | None  # as stored: {"s": stratum, "c": scopes, "p": month}
    report: dict[str, Any]

    def counted_in(self, scope: str) -> tuple[list[str], list[str]] | None:
        """(products, events) the case counts in the scope, None when it counts in none."""
        if self.status != "active" or self.contribution is None:
            return None
        for name, products, events in self.contribution["c"]:
            if name == scope:
                return products, events
        return None

    def counted_products(self) -> set[str]:
        """The products the case counts in any scope."""
        if self.status != "active" or self.contribution is None:
            return set()
        return {p for _, products, _ in self.contribution["c"] for p in products}


_CASE_SELECT = "SELECT owner, case_id, status, version, received, contribution, report FROM cases"


def _case(row: Sequence[Any]) -> StoredCase:
    owner, case_id, status, version, received, contribution, report = row
    return StoredCase(
        owner,
        case_id,
        status,
        None if version is None else int(version),
        received,
        None if contribution is None else orjson.loads(contribution),
        orjson.loads(report) if report else {},
    )


def _json_like(value: str) -> str:
    """A LIKE pattern for the value as a JSON string anywhere in a column (a prefilter: '_'
    and '%' in the value may match more, never less; matches are checked exactly after)."""
    return "%" + orjson.dumps(value).decode() + "%"


class SeriesStore:
    """Period counts, case listings, case versions and scope sizes (mixed into SqlStore)."""

    if TYPE_CHECKING:  # provided by SqlStore
        _dialect: Any

        def _transaction(self, *, exclusive: bool = False) -> AbstractContextManager[Any]: ...

        def _execute(self, cursor: Any, statement: str, parameters: Sequence[Any] = ()) -> Any: ...

        def _query(
            self, statement: str, parameters: Sequence[Any] = ()
        ) -> list[tuple[Any, ...]]: ...

    # -- trends -----------------------------------------------------------------------------

    def period_counts(self, scope: str, product: str, event: str) -> PeriodCounts:
        """The pair's, its product's, its event's and the scope's counts per month."""
        with self._transaction() as cursor:

            def rows(statement: str, parameters: tuple[str, ...]) -> list[tuple[Any, ...]]:
                self._execute(cursor, statement, parameters)
                return cursor.fetchall()

            pair = rows(
                "SELECT period, a FROM pair_period_counts WHERE scope = ? AND product = ? "
                "AND event = ? AND a <> 0",
                (scope, product, event),
            )
            products = rows(
                "SELECT stratum, period, n FROM product_period_counts WHERE scope = ? "
                "AND product = ? AND n <> 0",
                (scope, product),
            )
            events = rows(
                "SELECT stratum, period, n FROM event_period_counts WHERE scope = ? "
                "AND event = ? AND n <> 0",
                (scope, event),
            )
            totals = rows(
                "SELECT stratum, period, n FROM total_period_counts WHERE scope = ? AND n <> 0",
                (scope,),
            )
        return PeriodCounts(
            {period: int(a) for period, a in pair},
            [(s, p, int(n)) for s, p, n in products],
            [(s, p, int(n)) for s, p, n in events],
            [(s, p, int(n)) for s, p, n in totals],
        )

    def pair_periods(
        self, scope: str, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, int]]:
        """Several pairs' counts per received month (each ``period_counts(...).pair``), in one
        transaction, a primary-key range each (a page of the dashboard's signal table; an OR
        of the pairs in one statement makes SQLite scan the scope)."""
        found: dict[tuple[str, str], dict[str, int]] = {}
        with self._transaction() as cursor:
            for product, event in pairs:
                self._execute(
                    cursor,
                    "SELECT period, a FROM pair_period_counts WHERE scope = ? AND product = ? "
                    "AND event = ? AND a <> 0",
                    (scope, product, event),
                )
                found[(product, event)] = {period: int(a) for period, a in cursor.fetchall()}
        return found

    def place_counts(self, scope: str) -> list[tuple[str, str, str, str, int]]:
        """The scope's cases per (received month, region, institution, products they count
        there as a JSON array), "" where a report states no region or institution (see
        migration 14)."""
        return self._query(
            "SELECT period, region, institution, products, n FROM place_counts "
            "WHERE scope = ? AND n <> 0",
            (scope,),
        )

    # -- scopes -----------------------------------------------------------------------------

    def scope_sizes(self) -> dict[str, tuple[int, int]]:
        """Per scope with counts: (reports counted, pairs with at least one case)."""
        reports = self._query("SELECT scope, SUM(n) FROM scope_totals GROUP BY scope")
        pairs = self._query("SELECT scope, COUNT(*) FROM pair_counts WHERE a > 0 GROUP BY scope")
        found = {scope: (int(n or 0), 0) for scope, n in reports}
        for scope, n in pairs:
            found[scope] = (found.get(scope, (0, 0))[0], int(n))
        return found

    # -- case series ------------------------------------------------------------------------

    def case_page(
        self,
        *,
        after: tuple[str, str] | None,
        chunk: int,
        owner: str | None = None,
        like_any: Sequence[str] = (),
        like_all: Sequence[str] = (),
        received_from: str | None = None,
        received_to: str | None = None,
    ) -> list[StoredCase]:
        """Up to ``chunk`` active cases after the key ``after``, in (owner, case_id) order,
        whose contribution mentions every value of ``like_all`` and one of ``like_any``
        (prefilters: the caller checks the contribution exactly)."""
        where, parameters = ["status = 'active'", "contribution IS NOT NULL"], []
        if after is not None:
            where.append("(owner > ? OR (owner = ? AND case_id > ?))")
            parameters += [after[0], after[0], after[1]]
        if owner is not None:
            where.append("owner = ?")
            parameters.append(owner)
        if received_from is not None:
            where.append("received >= ?")
            parameters.append(received_from)
        if received_to is not None:
            where.append("received <= ?")
            parameters.append(received_to)
        for value in like_all:
            where.append("contribution LIKE ?")
            parameters.append(_json_like(value))
        if like_any:
            where.append("(" + " OR ".join("contribution LIKE ?" for _ in like_any) + ")")
            parameters += [_json_like(value) for value in like_any]
        rows = self._query(
            f"{_CASE_SELECT} WHERE {' AND '.join(where)} ORDER BY owner, case_id LIMIT ?",
            (*parameters, chunk),
        )
        return [_case(row) for row in rows]

    def stored_case(self, owner: str, case_id: str) -> StoredCase | None:
        rows = self._query(f"{_CASE_SELECT} WHERE owner = ? AND case_id = ?", (owner, case_id))
        return _case(rows[0]) if rows else None

    def case_versions(self, owner: str, case_id: str) -> list[dict[str, Any]]:
        """Every version of the case the store applied since migration 8, oldest first."""
        rows = self._query(
            "SELECT version, report_id, received, outcome, location, recorded_at "
            "FROM case_versions WHERE owner = ? AND case_id = ? ORDER BY id",
            (owner, case_id),
        )
        names = ("version", "report_id", "received", "outcome", "location", "recorded_at")
        return [{**dict(zip(names, row, strict=True)), "version": int(row[0])} for row in rows]
