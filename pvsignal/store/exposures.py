"""Exposures and sequential tests in the store (a mixin of SqlStore).

A batch of exposure records is written like a batch of reports: the changed exposures, the
rejects and the consumed offsets in one transaction, inside ``SqlStore.batch`` (serialised with
every other batch writer) through an ``ExposureBatch``. Sequential-test states are
written inside the monitor's own exclusive transaction, beside its ``write_detection``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import orjson

from pvsignal.store.access import EXPOSURES_WRITTEN

if TYPE_CHECKING:
    from pvsignal.exposures import CountedExposure, ExposureRow
    from pvsignal.store.sql import BatchSession, Dialect, Reject, Rows

_CHUNK = 5_000
_COLUMNS = (
    "owner",
    "exposure_id",
    "version",
    "status",
    "product",
    "institution",
    "start_date",
    "period",
    "age_years",
    "age_band",
    "sex",
    "patients",
    "doses",
    "patient_days",
    "doc",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM exposures"
# Exposures alike for rates: the same product, institution, start, age and sex.
_ALIKE = "product, institution, start_date, period, age_years, age_band, sex"


def _row(values: Sequence[Any]) -> ExposureRow:
    from pvsignal.exposures import ExposureRow

    (owner, exposure_id, version, status, product, institution, start, period, age) = values[:9]
    age_band, sex, patients, doses, patient_days, doc = values[9:]
    return ExposureRow(
        owner=owner,
        exposure_id=exposure_id,
        version=int(version),
        status=status,
        product=product,
        institution=institution,
        start=start,
        period=period,
        age_years=None if age is None else float(age),
        age_band=age_band,
        sex=sex,
        patients=int(patients),
        doses=None if doses is None else int(doses),
        patient_days=None if patient_days is None else float(patient_days),
        doc=doc,
    )


class ExposureStore:
    """Exposure rows, their batches, and the sequential tests' states."""

    if TYPE_CHECKING:
        _dialect: Dialect

        def _transaction(
            self, *, exclusive: bool = False, write: bool = False
        ) -> AbstractContextManager[Any]: ...

        def _execute(self, cursor: Any, statement: str, parameters: Sequence[Any] = ()) -> Any: ...

        def _query(
            self, statement: str, parameters: Sequence[Any] = ()
        ) -> list[tuple[Any, ...]]: ...

        def _write_rows(self, cursor: Any, spec: Rows, rows: list[Sequence[Any]]) -> None: ...

        def _mark(self, cursor: Any, name: str) -> int: ...

    def exposures_mark(self) -> int:
        """Moves with every exposure batch that changed an exposure (from any path)."""
        with self._transaction() as cursor:
            return self._mark(cursor, EXPOSURES_WRITTEN)

    def exposure_listing(
        self,
        *,
        owner: str | None,
        product: str | None = None,
        status: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 100,
    ) -> list[ExposureRow]:
        """Exposure records in (owner, exposure_id) order: one owner's (None: every owner's),
        optionally one product's or one status's, after a listing's last key."""
        wanted = {"owner = ?": owner, "product = ?": product, "status = ?": status}
        conditions = [clause for clause, value in wanted.items() if value is not None]
        parameters: list[Any] = [value for value in wanted.values() if value is not None]
        if after is not None:
            conditions.append("(owner > ? OR (owner = ? AND exposure_id > ?))")
            parameters += [after[0], after[0], after[1]]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._query(
            f"{_SELECT}{where} ORDER BY owner, exposure_id LIMIT ?", (*parameters, limit)
        )
        return [_row(r) for r in rows]

    def exposure(self, owner: str, exposure_id: str) -> ExposureRow | None:
        rows = self._query(f"{_SELECT} WHERE owner = ? AND exposure_id = ?", (owner, exposure_id))
        return _row(rows[0]) if rows else None

    def active_exposures(self, products: Iterable[str]) -> list[ExposureRow]:
        """The exposures that count (latest versions, not withdrawn) of the given products."""
        return [
            _row(r)
            for r in self._by_product(f"{_SELECT} WHERE status = 'active' AND {{}}", products)
        ]

    def exposure_counts(self, products: Iterable[str]) -> list[CountedExposure]:
        """The products' active exposures summed over records alike (one query, no record
        decoded): patients, patient-days given, and patients without patient-time."""
        from pvsignal.exposures import CountedExposure

        statement = (
            f"SELECT {_ALIKE}, SUM(patients), SUM(COALESCE(patient_days, 0)), "
            "SUM(CASE WHEN patient_days IS NULL THEN patients ELSE 0 END) FROM exposures "
            f"WHERE status = 'active' AND {{}} GROUP BY {_ALIKE}"
        )
        return [
            CountedExposure(*row[:7], int(row[7]), float(row[8]), int(row[9]))
            for row in self._by_product(statement, products)
        ]

    def _by_product(self, statement: str, products: Iterable[str]) -> list[tuple[Any, ...]]:
        """The rows of ``statement`` (its ``{}`` the condition on products), chunk by chunk."""
        wanted = sorted(set(products))
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(wanted), _CHUNK):
            clause, parameters = self._dialect.in_clause("product", wanted[start : start + _CHUNK])
            found += self._query(statement.format(clause), parameters)
        return found

    def exposed_products(self) -> list[str]:
        rows = self._query(
            "SELECT DISTINCT product FROM exposures WHERE status = 'active' AND product IS NOT "
            "NULL ORDER BY product"
        )
        return [product for (product,) in rows]

    def case_periods(self, scope: str, products: Iterable[str]) -> list[tuple[str, str, str, int]]:
        """(product, PT, received month, cases) of the products' pairs in the scope."""
        wanted = sorted(set(products))
        found: list[tuple[str, str, str, int]] = []
        for start in range(0, len(wanted), _CHUNK):
            clause, parameters = self._dialect.in_clause("product", wanted[start : start + _CHUNK])
            rows = self._query(
                "SELECT product, event, period, a FROM pair_period_counts WHERE scope = ? "
                f"AND a <> 0 AND {clause}",
                [scope, *parameters],
            )
            found += [(p, e, period, int(a)) for p, e, period, a in rows]
        return found

    def sequential_tests(self, scope: str) -> dict[tuple[str, str], dict[str, Any]]:
        """(product, PT) -> the stored state document of each sequential test of the scope."""
        rows = self._query(
            "SELECT product, event, state FROM sequential_tests WHERE scope = ?", (scope,)
        )
        return {(p, e): orjson.loads(state) for p, e, state in rows}

    def save_sequential_tests(
        self, scope: str, states: dict[tuple[str, str], dict[str, Any]], now: str
    ) -> None:
        """Upsert test states (joins the caller's transaction when one is open)."""
        from pvsignal.store.sql import Rows

        spec = Rows(
            "sequential_tests",
            ("scope", "product", "event", "state", "updated_at"),
            ("text",) * 5,
            "ON CONFLICT (scope, product, event) DO UPDATE SET state = excluded.state, "
            "updated_at = excluded.updated_at",
        )
        rows = [
            (scope, p, e, orjson.dumps(state).decode(), now) for (p, e), state in states.items()
        ]
        with self._transaction(write=True) as cursor:
            self._write_rows(cursor, spec, rows)


class ExposureBatch:
    """Exposure reads and writes inside a batch writer's transaction (``SqlStore.batch``: the
    fence, a submission's receipt and its audit row use the same session)."""

    def __init__(self, session: BatchSession) -> None:
        self._store, self._cursor = session._store, session._cursor

    def load_exposures(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ExposureRow]:
        wanted = set(keys)
        ids = sorted({exposure_id for _, exposure_id in wanted})
        found: dict[tuple[str, str], ExposureRow] = {}
        for start in range(0, len(ids), _CHUNK):
            clause, parameters = self._store._dialect.in_clause(
                "exposure_id", ids[start : start + _CHUNK]
            )
            self._store._execute(self._cursor, f"{_SELECT} WHERE {clause}", parameters)
            for values in self._cursor.fetchall():
                row = _row(values)
                if row.key in wanted:
                    found[row.key] = row
        return found

    def write_exposures(
        self,
        rows: list[ExposureRow],
        rejects: list[Reject],
        offsets: dict[tuple[str, int], int],
    ) -> None:
        from pvsignal.store.sql import _BUMP_MARK, _INSERT_REJECT, _UPSERT_OFFSET

        now = dt.datetime.now(dt.UTC).isoformat()
        run, cursor = self._store._write_rows, self._cursor
        if rows:
            self._store._execute(cursor, _BUMP_MARK, (EXPOSURES_WRITTEN,))
        run(
            cursor,
            _upsert_exposures(),
            [
                (
                    r.owner,
                    r.exposure_id,
                    r.version,
                    r.status,
                    r.product,
                    r.institution,
                    r.start,
                    r.period,
                    r.age_years,
                    r.age_band,
                    r.sex,
                    r.patients,
                    r.doses,
                    r.patient_days,
                    r.doc,
                    now,
                )
                for r in rows
            ],
        )
        run(
            cursor,
            _INSERT_REJECT,
            [(now, r.source, r.location, r.field, r.value, r.reason, r.payload) for r in rejects],
        )
        run(cursor, _UPSERT_OFFSET, [(t, p, o) for (t, p), o in offsets.items()])


@functools.cache
def _upsert_exposures() -> Rows:
    # Built on first use: pvsignal.store.sql imports this module (the mixin) before Rows exists.
    from pvsignal.store.sql import Rows

    columns = (*_COLUMNS, "updated_at")
    updated = ", ".join(f"{c} = excluded.{c}" for c in columns[2:])
    return Rows(
        "exposures",
        columns,
        (
            "text",
            "text",
            "bigint",
            "text",
            "text",
            "text",
            "text",
            "text",
            "double precision",
            "text",
            "text",
            "bigint",
            "bigint",
            "double precision",
            "text",
            "text",
        ),
        f"ON CONFLICT (owner, exposure_id) DO UPDATE SET {updated}",
    )
