"""The state store over SQL: one implementation, two dialects (SQLite and PostgreSQL).

Everything a batch changes — case states, count deltas, rejects and consumed offsets — is
written in one transaction, so a crash leaves all of a batch or none of it. Counts are kept
as running sums (``ON CONFLICT ... DO UPDATE SET n = n + excluded.n``), which both dialects
support with the same statement.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd

from pvsignal.audit import Actor, Entry
from pvsignal.cases import (
    UNKNOWN_PERIOD,
    CaseKey,
    CaseState,
    Contribution,
    Deltas,
    Status,
    Suspicion,
    place_of,
)
from pvsignal.errors import InputError, LeaseLostError
from pvsignal.institutions import Institution
from pvsignal.ownership import UNATTRIBUTED
from pvsignal.products import RegisteredProduct
from pvsignal.review import DEFAULT_DEADLINE_DAYS
from pvsignal.store.access import (
    BATCHES_WRITTEN,
    COUNTS_REBUILT,
    PAIR_MEASURE,
    PRODUCTS_WRITTEN,
    AccessStore,
    encode_changes,
    stored_alert,
)
from pvsignal.store.exposures import ExposureStore
from pvsignal.store.series import SeriesStore
from pvsignal.store.trail import TrailStore
from pvsignal.terminology.store import TermStore

_CHUNK = 5_000  # case ids per lookup query (SQLite allows 32,766 parameters)
_SQLITE_VARIABLES = 32_766
_ROWS_PER_STATEMENT = 64


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that was refused, kept with where it came from and why."""

    source: str
    location: str
    field: str
    value: str
    reason: str
    payload: str | None = None


class VersionRow(NamedTuple):
    """One valid version a batch applied, for the case's version history."""

    owner: str
    case_id: str
    version: int
    report_id: str
    received: str | None
    outcome: str
    location: str


@dataclass
class BatchWrite:
    """Everything one batch changes, written in one transaction."""

    cases: list[CaseState] = field(default_factory=list)
    deltas: Deltas = field(default_factory=Deltas)
    rejects: list[Reject] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> next
    suspicions: list[Suspicion] = field(default_factory=list)
    versions: list[VersionRow] = field(default_factory=list)


class Lease(NamedTuple):
    """A detection shard's lease: who holds it, and the epoch of their acquisition."""

    shard: str
    holder: str
    epoch: int


class CountsMark(NamedTuple):
    """The batch mark and rebuild count of the store's counts (see SqlStore.counts_mark)."""

    batches: int
    rebuilds: int


@dataclass(frozen=True)
class ScopeCounts:
    """Every count of one scope, as arrays (labels as object arrays)."""

    pair_product: np.ndarray
    pair_event: np.ndarray
    a: np.ndarray
    product_rows: tuple[np.ndarray, np.ndarray, np.ndarray]  # product, stratum, n
    event_rows: tuple[np.ndarray, np.ndarray, np.ndarray]  # event, stratum, n
    totals: tuple[np.ndarray, np.ndarray]  # stratum, n


@dataclass(frozen=True)
class CodedCounts:
    """Every count of one scope, pairs by label code: each label held once, pairs in
    (product, event) order of their labels' code points, margins as in :class:`ScopeCounts`."""

    products: np.ndarray  # the distinct labels of the pairs' products (object), sorted
    events: np.ndarray  # the same of their events
    product_code: np.ndarray  # int32 per pair, into products
    event_code: np.ndarray  # int32 per pair, into events
    a: np.ndarray  # float64 per pair
    product_rows: tuple[np.ndarray, np.ndarray, np.ndarray]  # product, stratum, n
    event_rows: tuple[np.ndarray, np.ndarray, np.ndarray]  # event, stratum, n
    totals: tuple[np.ndarray, np.ndarray]  # stratum, n


# Rows fetched at a time when reading counts.
_FETCH_ROWS = 1 << 16
# Products whose pairs are read at a time (one row each) by SqlStore.coded_counts.
_FETCH_PRODUCTS = 256


def _shared_labels(values: np.ndarray, labels: dict[str, str]) -> np.ndarray:
    """``values`` with each distinct label replaced by the one string object kept for it."""
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    shared = np.empty(len(distinct), dtype=object)
    shared[:] = [labels.setdefault(label, label) for label in distinct]
    return shared[codes]


def _fetched_ahead(cursor: Any, size: int) -> Iterator[list[Any]]:
    """``cursor.fetchmany(size)`` chunks, the next one fetched on a thread while the caller
    works on the current one: SQLite computes rows (its aggregates included) and PostgreSQL's
    driver receives them without holding the GIL, so reading and parsing overlap on two cores.
    The caller must not use the cursor until the iteration ends (the thread is joined then)."""
    chunks: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(size)
                chunks.put(rows)
                if not rows:
                    return
        except BaseException as error:  # handed to the caller, raised there
            chunks.put(error)

    fetcher = threading.Thread(target=fetch, name="fetch-ahead", daemon=True)
    fetcher.start()
    try:
        while True:
            chunk = chunks.get()
            if isinstance(chunk, BaseException):
                raise chunk
            if not chunk:
                return
            yield chunk
    finally:
        stop.set()
        while fetcher.is_alive():  # unblock a fetcher waiting to put, then let it end
            with suppress(queue.Empty):
                chunks.get(timeout=0.05)
        fetcher.join()


class StateColumns(NamedTuple):
    """Signal states as write_detection writes them, column by column: lists of one length,
    best in the table's key order (product, event, measure), which touches each page once."""

    product: list[str]
    event: list[str]
    measure: list[str]
    status: list[str]
    since: list[str]
    reference: list[float]
    failures: list[int]
    last_a: list[int]
    last_level: list[float | None]


def state_columns(states: dict[tuple[str, str, str], dict[str, Any]]) -> StateColumns:
    """:class:`StateColumns` of states keyed by (product, event, measure)."""
    fields = ("status", "since", "reference", "failures", "last_a", "last_level")
    return StateColumns(
        *([key[k] for key in states] for k in range(3)),
        *([state[name] for state in states.values()] for name in fields),
    )


def _joined_json(arrays: list[str]) -> list[Any]:
    """The elements of several JSON array texts (none empty), parsed as one array."""
    return orjson.loads("[" + ",".join(text[1:-1] for text in arrays) + "]")


def _encoded(labels: np.ndarray, codes: dict[str, int]) -> np.ndarray:
    """Each label's code (int32), new labels numbered on in order of first appearance."""
    positions, distinct = pd.factorize(labels)
    known = np.fromiter(
        (codes.setdefault(label, len(codes)) for label in distinct.tolist()),
        dtype=np.int32,
        count=len(distinct),
    )
    return known[positions]


def _sorted_labels(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The labels sorted by code point (object array), and each given label's rank."""
    order = sorted(range(len(labels)), key=labels.__getitem__)
    ranked = np.empty(len(labels), dtype=object)
    ranked[:] = [labels[k] for k in order]
    rank = np.empty(len(labels), dtype=np.int32)
    rank[order] = np.arange(len(labels), dtype=np.int32)
    return ranked, rank


class Dialect:
    """What differs between the SQL engines."""

    name = "sql"
    schema: Sequence[str] = ()
    for_update = ""  # row locks for a read-then-write (PostgreSQL); SQLite's write lock is one

    def sql(self, statement: str) -> str:
        return statement

    def json_array(self, column: str) -> str:
        """An aggregate giving the group's values of ``column`` as JSON array text. Every
        aggregate of one query takes the group's rows in the same order."""
        return f"json_group_array({column})"

    def in_clause(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def write_rows(self, cursor: Any, spec: Rows, rows: list[Sequence[Any]]) -> None:
        self._write_flat(cursor, spec, list(chain.from_iterable(rows)), len(rows))

    def write_columns(self, cursor: Any, spec: Rows, columns: Sequence[list[Any]]) -> None:
        """Rows given column by column: lists of plain Python values, all of one length."""
        width, size = len(columns), len(columns[0])
        flat: list[Any] = [None] * (width * size)
        for k, column in enumerate(columns):
            flat[k::width] = column
        self._write_flat(cursor, spec, flat, size)

    def _write_flat(self, cursor: Any, spec: Rows, flat: list[Any], size: int) -> None:
        """Write ``size`` rows whose values follow each other in ``flat``. Many rows a
        statement: executemany's cost per statement (reset, the Python loop) is most of a
        row's; 64 rows each write 191k signal states in 0.45 s instead of 0.70 s."""
        width = len(spec.columns)
        per = max(1, min(_ROWS_PER_STATEMENT, _SQLITE_VARIABLES // width))
        whole = size - size % per

        def pieces(begin: int, end: int, rows: int) -> list[list[Any]]:
            step = rows * width
            return [flat[start : start + step] for start in range(begin * width, end * width, step)]

        if whole:
            cursor.executemany(self.sql(spec.values_statement(per)), pieces(0, whole, per))
        if whole < size:
            cursor.executemany(self.sql(spec.values_statement()), pieces(whole, size, 1))


@dataclass(frozen=True)
class Rows:
    """A write of many rows: ``INSERT INTO table (columns) ... [conflict]``, rendered by each
    dialect (SQLite: executemany over VALUES of 64 rows; PostgreSQL: one statement over
    ``unnest`` of one array per column — one round trip and one plan for the whole batch).
    ``types`` are the PostgreSQL types of the columns. The rows of one write must not repeat
    a conflict key (PostgreSQL refuses to update a row twice in one statement)."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    conflict: str = ""

    def values_statement(self, rows: int = 1) -> str:
        """The INSERT of ``rows`` rows."""
        marks = ", ".join([f"({', '.join('?' * len(self.columns))})"] * rows)
        columns = ", ".join(self.columns)
        return f"INSERT INTO {self.table} ({columns}) VALUES {marks} {self.conflict}"


def _running_sum(table: str, key: tuple[str, ...], column: str, *, marked: bool = False) -> Rows:
    """An upsert adding to a running count; ``marked`` ones also record the batch (``seq``)
    that last changed the row, which the detector's reads of changes select on."""
    mark, set_mark = ((), "") if not marked else (("seq",), ", seq = excluded.seq")
    return Rows(
        table,
        (*key, column, *mark),
        ("text",) * len(key) + ("bigint",) * (1 + len(mark)),
        f"ON CONFLICT ({', '.join(key)}) "
        f"DO UPDATE SET {column} = {table}.{column} + excluded.{column}{set_mark}",
    )


_UPSERT_PAIRS = _running_sum("pair_counts", ("scope", "product", "event"), "a", marked=True)
_UPSERT_PRODUCTS = _running_sum("product_counts", ("scope", "stratum", "product"), "n", marked=True)
_UPSERT_EVENTS = _running_sum("event_counts", ("scope", "stratum", "event"), "n", marked=True)
_UPSERT_TOTALS = _running_sum("scope_totals", ("scope", "stratum"), "n", marked=True)
_UPSERT_PAIR_PERIODS = _running_sum(
    "pair_period_counts", ("scope", "product", "event", "period"), "a"
)
_UPSERT_PRODUCT_PERIODS = _running_sum(
    "product_period_counts", ("scope", "product", "stratum", "period"), "n"
)
_UPSERT_EVENT_PERIODS = _running_sum(
    "event_period_counts", ("scope", "event", "stratum", "period"), "n"
)
_UPSERT_TOTAL_PERIODS = _running_sum("total_period_counts", ("scope", "stratum", "period"), "n")
_UPSERT_PLACES = _running_sum(
    "place_counts", ("scope", "period", "region", "institution", "products"), "n"
)
_COUNT_TABLES = (
    "pair_counts",
    "product_counts",
    "event_counts",
    "scope_totals",
    "pair_period_counts",
    "product_period_counts",
    "event_period_counts",
    "total_period_counts",
    "place_counts",
)
_INSERT_VERSIONS = Rows(
    "case_versions",
    ("owner", "case_id", "version", "report_id", "received", "outcome", "location", "recorded_at"),
    ("text", "text", "bigint", "text", "text", "text", "text", "text"),
)
_UPSERT_CASES = Rows(
    "cases",
    (
        "owner",
        "case_id",
        "status",
        "version",
        "report_id",
        "duplicate_of",
        "duplicate_of_owner",
        "contribution",
        "report",
        "received",
        "updated_at",
    ),
    ("text", "text", "text", "bigint", "text", "text", "text", "text", "text", "text", "text"),
    "ON CONFLICT (owner, case_id) DO UPDATE SET status = excluded.status, "
    "version = excluded.version, report_id = excluded.report_id, "
    "duplicate_of = excluded.duplicate_of, duplicate_of_owner = excluded.duplicate_of_owner, "
    "contribution = excluded.contribution, "
    "report = COALESCE(excluded.report, cases.report), "
    "received = CASE WHEN excluded.report IS NULL THEN cases.received ELSE excluded.received END, "
    "updated_at = excluded.updated_at",
)
_INSERT_SUSPICIONS = Rows(
    "suspected_duplicates",
    (
        "survivor_owner",
        "survivor_case_id",
        "suspect_owner",
        "suspect_case_id",
        "status",
        "found_at",
    ),
    ("text",) * 6,
    "ON CONFLICT (survivor_owner, survivor_case_id, suspect_owner, suspect_case_id) DO NOTHING",
)
_INSERT_REJECT = Rows(
    "rejects",
    ("received_at", "source", "location", "field", "value", "reason", "payload"),
    ("text",) * 7,
)
_BUMP_MARK = (
    "INSERT INTO store_settings (name, value) VALUES (?, '1') ON CONFLICT (name) DO UPDATE "
    "SET value = CAST(CAST(store_settings.value AS BIGINT) + 1 AS TEXT)"
)
_UPSERT_OFFSET = Rows(
    "consumer_offsets",
    ("topic", "partition", "next_offset"),
    ("text", "integer", "bigint"),
    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = "
    "CASE WHEN excluded.next_offset > consumer_offsets.next_offset "
    "THEN excluded.next_offset ELSE consumer_offsets.next_offset END",
)


class SqlStore(AccessStore, SeriesStore, TrailStore, TermStore, ExposureStore):
    """The store over a DB-API connection; subclasses open it and name the dialect."""

    def __init__(self, url: str, connection: Any, dialect: Dialect) -> None:
        self.url, self._connection, self._dialect = url, connection, dialect
        self._migrate()

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, exclusive: bool = False, write: bool = False) -> Iterator[Any]:
        """A transaction; nested ones join the one already open on this connection.
        ``exclusive``: serialised with batch writers; ``write``: will write (SQLite locks)."""
        raise NotImplementedError

    @contextmanager
    def write_transaction(self) -> Iterator[Any]:
        """A transaction that writes (SQLite: it takes the write lock at once). The store's
        own methods called inside it join it, so a caller can make several writes and their
        audit row one commit (see pvsignal.audit.recorded)."""
        with self._transaction(write=True) as cursor:
            yield cursor

    def _execute(self, cursor: Any, statement: str, parameters: Sequence[Any] = ()) -> Any:
        return cursor.execute(self._dialect.sql(statement), parameters)

    def _executemany(self, cursor: Any, statement: str, rows: list[Sequence[Any]]) -> None:
        if rows:
            cursor.executemany(self._dialect.sql(statement), rows)

    def _write_rows(self, cursor: Any, spec: Rows, rows: list[Sequence[Any]]) -> None:
        if rows:
            self._dialect.write_rows(cursor, spec, rows)

    def _write_columns(self, cursor: Any, spec: Rows, columns: Sequence[list[Any]]) -> None:
        if columns[0]:
            self._dialect.write_columns(cursor, spec, columns)

    def _query(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._transaction() as cursor:
            self._execute(cursor, statement, parameters)
            return list(cursor.fetchall())

    def _migrate(self) -> None:
        with self._transaction() as cursor:
            self._execute(cursor, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            self._execute(cursor, "SELECT MAX(version) FROM schema_version")
            current = cursor.fetchone()[0] or 0
            for number, statements in enumerate(self._dialect.schema, start=1):
                if number <= current:
                    continue
                for statement in statements.split(";"):
                    if statement.strip():
                        self._execute(cursor, statement)
                if number == _OWNERS_MIGRATION:
                    self._assign_owners(cursor)
                if number == _PERIODS_MIGRATION:
                    self._backfill_periods(cursor)
                if number == _PLACES_MIGRATION:
                    self._backfill_places(cursor)
                self._execute(cursor, "INSERT INTO schema_version (version) VALUES (?)", (number,))

    def _assign_owners(self, cursor: Any) -> None:
        """Migration 6 on a store of unowned cases: a case belongs to its stored report's
        sender organisation (the rule for files and Kafka); a placeholder withdrawn before it
        arrived, to the owner of the case that named it; a duplicate withdrawn by another
        owner's case under the old rules keeps that link, now naming the survivor's owner."""
        self._execute(cursor, "SELECT case_id, report, duplicate_of FROM cases")
        rows = cursor.fetchall()
        owners = {case_id: _stored_owner(report) for case_id, report, _ in rows if report}
        updates = []
        for case_id, _, duplicate_of in rows:
            survivor_owner = owners.get(duplicate_of, UNATTRIBUTED) if duplicate_of else None
            owner = owners.get(case_id, survivor_owner or UNATTRIBUTED)
            linked = survivor_owner if survivor_owner not in (None, owner) else None
            updates.append((owner, linked, case_id))
        self._executemany(
            cursor,
            "UPDATE cases SET owner = ?, duplicate_of_owner = ? WHERE owner = '' AND case_id = ?",
            updates,
        )

    def _backfill_periods(self, cursor: Any) -> None:
        """Migration 8 on a store with cases: each case's received date and month from its
        stored report, into its row and its contribution, and the period counts of every
        counting case (the sums over months equal the running sums kept so far)."""
        self._execute(
            cursor,
            "SELECT owner, case_id, contribution, report FROM cases WHERE report IS NOT NULL",
        )
        rows = cursor.fetchall()
        deltas, updates = Deltas(), []
        for owner, case_id, contribution, report in rows:
            received = _stored_received(report)
            stored = None if contribution is None else Contribution.from_json(contribution)
            if stored is not None:
                stored = stored._replace(period=_month_of(received))
                deltas.add(stored, +1)
            updates.append((received, None if stored is None else stored.to_json(), owner, case_id))
        self._executemany(
            cursor,
            "UPDATE cases SET received = ?, contribution = ? WHERE owner = ? AND case_id = ?",
            updates,
        )
        run = self._write_rows
        run(cursor, _UPSERT_PAIR_PERIODS, [(*k, v) for k, v in deltas.pair_periods.items() if v])
        run(
            cursor,
            _UPSERT_PRODUCT_PERIODS,
            [(*k, v) for k, v in deltas.product_periods.items() if v],
        )
        run(cursor, _UPSERT_EVENT_PERIODS, [(*k, v) for k, v in deltas.event_periods.items() if v])
        run(cursor, _UPSERT_TOTAL_PERIODS, [(*k, v) for k, v in deltas.total_periods.items() if v])

    def _backfill_places(self, cursor: Any) -> None:
        """Migration 14 on a store with cases: the place each counting case's stored report
        states, into its contribution, and the place counts of every such case."""
        self._execute(
            cursor,
            "SELECT owner, case_id, contribution, report FROM cases "
            "WHERE contribution IS NOT NULL AND report IS NOT NULL",
        )
        deltas, updates = Deltas(), []
        for owner, case_id, contribution, report in cursor.fetchall():
            document = orjson.loads(report)
            sender = document.get("sender") or {}
            place = place_of(document.get("region"), sender.get("institution_id"))
            stored = Contribution.from_json(contribution)._replace(
                region=place[0], institution=place[1]
            )
            deltas.add(stored, +1)
            updates.append((stored.to_json(), owner, case_id))
        self._executemany(
            cursor, "UPDATE cases SET contribution = ? WHERE owner = ? AND case_id = ?", updates
        )
        self._write_rows(cursor, _UPSERT_PLACES, [(*k, v) for k, v in deltas.places.items() if v])

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            self._query("SELECT 1")
        except Exception:  # any failure means "not reachable"
            return False
        return True

    # -- products ---------------------------------------------------------------------------

    def save_products(self, products: Iterable[RegisteredProduct]) -> int:
        rows = [(p.product_id, p.model_dump_json()) for p in products]
        with self._transaction() as cursor:
            self._executemany(
                cursor,
                "INSERT INTO products (product_id, doc) VALUES (?, ?) "
                "ON CONFLICT (product_id) DO UPDATE SET doc = excluded.doc",
                rows,
            )
            self._execute(cursor, _BUMP_MARK, (PRODUCTS_WRITTEN,))
        return len(rows)

    def load_products(self) -> list[RegisteredProduct]:
        return [
            RegisteredProduct.model_validate_json(doc)
            for (doc,) in self._query("SELECT doc FROM products ORDER BY product_id")
        ]

    # -- institutions -----------------------------------------------------------------------

    def save_institutions(self, institutions: Iterable[Institution]) -> int:
        rows = [(i.institution_id, i.model_dump_json()) for i in institutions]
        with self._transaction() as cursor:
            self._executemany(
                cursor,
                "INSERT INTO institutions (institution_id, doc) VALUES (?, ?) "
                "ON CONFLICT (institution_id) DO UPDATE SET doc = excluded.doc",
                rows,
            )
            self._execute(cursor, _BUMP_MARK, (PRODUCTS_WRITTEN,))
        return len(rows)

    def load_institutions(self) -> list[Institution]:
        return [
            Institution.model_validate_json(doc)
            for (doc,) in self._query("SELECT doc FROM institutions ORDER BY institution_id")
        ]

    # -- cases ------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[BatchSession]:
        """One batch's transaction: load the cases it touches, apply, write — atomically.

        Batch writers are serialised (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock),
        so two consumers can never both take a case for new, even when the versions of one
        case reach different consumers.
        """
        with self._transaction(exclusive=True) as cursor:
            yield BatchSession(self, cursor)

    def load_cases(self, case_ids: Iterable[str]) -> dict[CaseKey, CaseState]:
        """The states of these case ids, of every owner."""
        with self._transaction() as cursor:
            return BatchSession(self, cursor).load_cases(case_ids)

    def case(self, case_id: str, owner: str = UNATTRIBUTED) -> CaseState | None:
        return self.load_cases([case_id]).get(CaseKey(owner, case_id))

    def count_cases(self) -> dict[str, int]:
        rows = self._query("SELECT status, COUNT(*) FROM cases GROUP BY status")
        return {status: int(n) for status, n in rows}

    def active_reports(self) -> list[tuple[str, str, str]]:
        """(owner, case_id, latest report as received) of every case that counts."""
        return self._query("SELECT owner, case_id, report FROM cases WHERE status = 'active'")

    def replace_counts(self, deltas: Deltas, contributions: dict[CaseKey, Contribution]) -> None:
        """Replace every count, and the cases' contributions, in one transaction (a rebuild
        after the scopes or the registry changed)."""
        with self._transaction(exclusive=True) as cursor:
            for table in _COUNT_TABLES:
                self._execute(cursor, f"DELETE FROM {table}")
            # Deleted rows leave no mark to read changes from: detectors reload the scope.
            self._execute(cursor, _BUMP_MARK, (COUNTS_REBUILT,))
            self._executemany(
                cursor,
                "UPDATE cases SET contribution = ? WHERE owner = ? AND case_id = ?",
                [(c.to_json(), *key) for key, c in contributions.items()],
            )
            BatchSession(self, cursor).write(BatchWrite(deltas=deltas))

    def owners(self) -> list[str]:
        """Every organisation that owns a case."""
        return [owner for (owner,) in self._query("SELECT DISTINCT owner FROM cases")]

    def rename_owners(self, renamed: dict[str, str]) -> None:
        """Move every case of an owner to its new name (the institution registry now resolves
        the sender name to a registered id), with the links naming it, in one transaction.

        Raises
        ------
        InputError
            When both names hold the same case id: that would merge two cases.
        """
        with self._transaction(exclusive=True) as cursor:
            for old, new in renamed.items():
                self._execute(
                    cursor,
                    "SELECT case_id FROM cases WHERE owner = ? AND case_id IN "
                    "(SELECT case_id FROM cases WHERE owner = ?) LIMIT 3",
                    (old, new),
                )
                clashes = [case_id for (case_id,) in cursor.fetchall()]
                if clashes:
                    raise InputError(
                        f"organisation {old!r} now resolves to {new!r}, but both own case ids "
                        f"{clashes}: resolve the registry entry or the cases first"
                    )
                for statement in _RENAME_OWNER:
                    self._execute(cursor, statement, (new, old))

    # -- suspected duplicates across owners -------------------------------------------------

    def suspicions(
        self, *, status: str | None = None, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Suspected duplicates in id order, after the given id, optionally of one status."""
        where, parameters = "suspicion_id > ?", [after]
        if status is not None:
            where += " AND status = ?"
            parameters.append(status)
        rows = self._query(
            f"SELECT {_SUSPICION_COLUMNS} FROM suspected_duplicates WHERE {where} "
            "ORDER BY suspicion_id LIMIT ?",
            (*parameters, limit),
        )
        return [_suspicion(row) for row in rows]

    def suspicion(self, suspicion_id: int) -> dict[str, Any] | None:
        rows = self._query(
            f"SELECT {_SUSPICION_COLUMNS} FROM suspected_duplicates WHERE suspicion_id = ?",
            (suspicion_id,),
        )
        return _suspicion(rows[0]) if rows else None

    def setting(self, name: str) -> str | None:
        rows = self._query("SELECT value FROM store_settings WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def set_setting(self, name: str, value: str) -> None:
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "INSERT INTO store_settings (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # -- counts -----------------------------------------------------------------------------

    def scopes(self) -> list[str]:
        return [
            scope
            for (scope,) in self._query(
                "SELECT DISTINCT scope FROM scope_totals WHERE n > 0 ORDER BY scope"
            )
        ]

    def release_memory(self) -> None:
        """Free caches a large read filled (SQLite's page cache; nothing elsewhere)."""

    def scope_counts(self, scope: str, *, ordered: bool = True) -> ScopeCounts:
        """Every count of the scope; pairs ordered by product and event unless ``ordered`` is
        False (the detector's reads: the sort was most of PostgreSQL's time).

        Ordered reads (the API's snapshot, exports) hold each label once (see
        :meth:`_shared_columns`); the detector's, made after every batch, read at once: their
        speed matters more there than what the read leaves resident."""
        order = " ORDER BY product, event" if ordered else ""
        with self._transaction() as cursor:
            read_pairs = self._shared_columns if ordered else self._columns
            pairs = read_pairs(
                cursor,
                f"SELECT product, event, a FROM pair_counts WHERE scope = ? AND a > 0{order}",
                scope,
                3,
            )
            margins = self._margins(cursor, scope)
        return ScopeCounts(pairs[0], pairs[1], pairs[2].astype(np.float64), *margins)

    def coded_counts(self, scope: str) -> CodedCounts:
        """Every count of the scope, its pairs by label code (see :class:`CodedCounts`).

        The pairs are read one row per product, their events and counts aggregated into JSON
        arrays by the database: a tenth of the time of a row per pair, and no Python object
        per pair beyond the parsed event labels of a few products at a time."""
        event_codes: dict[str, int] = {}
        products: list[str] = []
        sizes: list[int] = []
        events: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        statement = (
            f"SELECT product, count(*), {self._dialect.json_array('event')}, "
            f"{self._dialect.json_array('a')} FROM pair_counts WHERE scope = ? AND a > 0 "
            "GROUP BY product"
        )
        with self._transaction() as cursor:
            self._execute(cursor, statement, (scope,))
            for rows in _fetched_ahead(cursor, _FETCH_PRODUCTS):
                products += [row[0] for row in rows]
                sizes += [row[1] for row in rows]
                labels = np.array(_joined_json([row[2] for row in rows]), dtype=object)
                events.append(_encoded(labels, event_codes))
                counts.append(np.array(_joined_json([row[3] for row in rows]), dtype=np.float64))
            margins = self._margins(cursor, scope)
        product_labels, product_rank = _sorted_labels(products)
        event_labels, event_rank = _sorted_labels(list(event_codes))
        product_code = np.repeat(product_rank, sizes)
        event_code = event_rank[np.concatenate(events)] if events else np.empty(0, dtype=np.int32)
        a = np.concatenate(counts) if counts else np.empty(0)
        key = product_code.astype(np.int64) * max(event_labels.size, 1) + event_code
        if not np.all(key[1:] > key[:-1]):  # the database's order is not the code points'
            order = np.argsort(key, kind="stable")
            product_code, event_code, a = product_code[order], event_code[order], a[order]
        return CodedCounts(product_labels, event_labels, product_code, event_code, a, *margins)

    def _margins(self, cursor: Any, scope: str) -> tuple[tuple[np.ndarray, ...], ...]:
        """The scope's product and event margins (label, stratum, n) and stratum totals."""
        products = self._columns(
            cursor,
            "SELECT product, stratum, n FROM product_counts WHERE scope = ? AND n > 0",
            scope,
            3,
        )
        events = self._columns(
            cursor,
            "SELECT event, stratum, n FROM event_counts WHERE scope = ? AND n > 0",
            scope,
            3,
        )
        totals = self._columns(
            cursor, "SELECT stratum, n FROM scope_totals WHERE scope = ? AND n > 0", scope, 2
        )
        return (
            (products[0], products[1], products[2].astype(np.float64)),
            (events[0], events[1], events[2].astype(np.float64)),
            (totals[0], totals[1].astype(np.float64)),
        )

    def observed_pairs(self, scope: str) -> int:
        """How many of the scope's pairs have a report (counted here, not read)."""
        query = "SELECT COUNT(*) FROM pair_counts WHERE scope = ? AND a > 0"
        return int(self._query(query, (scope,))[0][0])

    def counts_mark(self) -> CountsMark:
        """Where the counts stand: the last batch written and the number of rebuilds. Read it
        before the counts: every row a batch up to this mark changed is then read, now or by
        the next ``count_changes`` after it."""
        with self._transaction() as cursor:
            return CountsMark(
                self._mark(cursor, BATCHES_WRITTEN), self._mark(cursor, COUNTS_REBUILT)
            )

    def _mark(self, cursor: Any, name: str) -> int:
        self._execute(cursor, "SELECT value FROM store_settings WHERE name = ?", (name,))
        row = cursor.fetchone()
        return 0 if row is None else int(row[0])

    def count_changes(self, scope: str, after: int) -> ScopeCounts:
        """The scope's counts that batches after mark ``after`` changed, with their current
        values (zeros included: a count that fell to 0 is a change)."""
        with self._transaction() as cursor:
            pairs, products, events, totals = (
                self._columns(
                    cursor,
                    f"SELECT {columns} FROM {table} WHERE scope = ? AND seq > ?",
                    scope,
                    columns.count(",") + 1,
                    after,
                )
                for table, columns in (
                    ("pair_counts", "product, event, a"),
                    ("product_counts", "product, stratum, n"),
                    ("event_counts", "event, stratum, n"),
                    ("scope_totals", "stratum, n"),
                )
            )
        return ScopeCounts(
            pairs[0],
            pairs[1],
            pairs[2],
            (products[0], products[1], products[2]),
            (events[0], events[1], events[2]),
            (totals[0], totals[1]),
        )

    def _columns(
        self, cursor: Any, statement: str, scope: str, width: int, *more: Any
    ) -> list[np.ndarray]:
        """The rows as columns: labels (object arrays), then the count (float64)."""
        self._execute(cursor, statement, (scope, *more))
        rows = cursor.fetchall()
        if not rows:
            return [np.empty(0, dtype=object) for _ in range(width - 1)] + [np.empty(0)]
        # One 2-D object array, then column views: faster than transposing with zip.
        table = np.array(rows, dtype=object)
        return [table[:, k] for k in range(width - 1)] + [table[:, -1].astype(np.float64)]

    def _shared_columns(
        self, cursor: Any, statement: str, scope: str, width: int
    ) -> list[np.ndarray]:
        """:meth:`_columns`, read a chunk at a time, and each label held once (every row of a
        product refers to one string): a scope of millions of pairs never holds millions of
        row tuples and strings at once, which the allocator would keep resident afterwards.
        """
        self._execute(cursor, statement, (scope,))
        labels: dict[str, str] = {}
        parts: list[list[np.ndarray]] = [[] for _ in range(width)]
        for rows in _fetched_ahead(cursor, _FETCH_ROWS):
            table = np.array(rows, dtype=object)
            del rows
            for k in range(width - 1):
                parts[k].append(_shared_labels(table[:, k], labels))
            parts[-1].append(table[:, -1].astype(np.float64))
        if not parts[-1]:
            return [np.empty(0, dtype=object) for _ in range(width - 1)] + [np.empty(0)]
        return [np.concatenate(part) for part in parts]

    # -- signals, history, alerts -----------------------------------------------------------

    def signal_states(self, scope: str) -> dict[tuple[str, str, str], dict[str, Any]]:
        """(product, event, measure) -> status, since, reference, failures, last_a, last_level."""
        rows = self._query(
            "SELECT product, event, measure, status, since, reference, failures, last_a, "
            "last_level FROM signal_states WHERE scope = ?",
            (scope,),
        )
        names = ("status", "since", "reference", "failures", "last_a", "last_level")
        return {(p, e, m): dict(zip(names, rest, strict=True)) for p, e, m, *rest in rows}

    def signal_state_columns(self, scope: str) -> dict[str, np.ndarray]:
        """The scope's signal states as object columns: product, event, measure, status and
        since (what the API's snapshot holds of them)."""
        names = ("product", "event", "measure", "status", "since")
        rows = self._query(
            f"SELECT {', '.join(names)} FROM signal_states WHERE scope = ?", (scope,)
        )
        table = np.array(rows, dtype=object).reshape(len(rows), len(names))
        return {name: table[:, k] for k, name in enumerate(names)}

    def write_detection(
        self,
        scope: str,
        states: dict[tuple[str, str, str], dict[str, Any]] | StateColumns,
        history: list[tuple[str, str, int, dict[str, Any]]],
        alerts: list[dict[str, Any]],
        now: str,
        *,
        review_deadlines: dict[str, int] | None = None,
        lease: Lease | None = None,
        mark: tuple[str, str] | None = None,
    ) -> None:
        """Signal states, history points and alerts of one update, in one transaction, with
        the reviews those alerts reopen (see pvsignal.review.reopen) and their audit rows.
        A detection shard passes its ``lease``: the write is refused (LeaseLostError) unless
        the shard still holds it with that epoch. ``mark`` (setting name, value) is stored
        with the write: a detector keeping states in memory learns from it whether another
        wrote since. ``states``: keyed by (product, event, measure), or as columns."""
        columns = state_columns(states) if isinstance(states, dict) else states
        size = len(columns.product)
        with self._transaction(write=bool(alerts) or lease is not None) as cursor:
            if lease is not None:
                self._check_lease(cursor, lease)
            if mark is not None:
                self.set_setting(*mark)
            self._write_columns(cursor, _UPSERT_SIGNAL, [[scope] * size, *columns, [now] * size])
            self._write_rows(
                cursor,
                _INSERT_HISTORY,
                [(scope, p, e, now, a, orjson.dumps(stats).decode()) for p, e, a, stats in history],
            )
            self._write_rows(
                cursor,
                _INSERT_ALERT,
                [
                    (
                        now,
                        scope,
                        x["product_id"],
                        x["pt"],
                        PAIR_MEASURE,
                        x["transition"],
                        encode_changes(x["changes"]),
                        x["mah_id"],
                        orjson.dumps(x).decode(),
                    )
                    for x in alerts
                ],
            )
            if alerts:
                self.reopen_reviews(
                    cursor, scope, alerts, now, review_deadlines or DEFAULT_DEADLINE_DAYS
                )

    # -- detection shards -------------------------------------------------------------------

    def acquire_lease(self, shard: str, holder: str, seconds: float) -> Lease | None:
        """Take or renew a detection shard's lease for ``seconds``: granted when the shard is
        free, its lease expired or it is the holder's already; None while another holds it.
        Each takeover raises the epoch, so a previous holder's writes are fenced off."""
        now = dt.datetime.now(dt.UTC)
        until = (now + dt.timedelta(seconds=seconds)).isoformat()
        with self._transaction(write=True) as cursor:
            self._execute(
                cursor,
                "INSERT INTO detection_leases (shard, holder, epoch, expires_at) "
                "VALUES (?, ?, 0, ?) ON CONFLICT (shard) DO NOTHING",
                (shard, holder, now.isoformat()),
            )
            self._execute(
                cursor,
                "SELECT holder, epoch, expires_at FROM detection_leases WHERE shard = ?"
                + self._dialect.for_update,
                (shard,),
            )
            current, epoch, expires_at = cursor.fetchone()
            if current != holder or epoch == 0:
                if current != holder and expires_at > now.isoformat():
                    return None
                epoch += 1
            self._execute(
                cursor,
                "UPDATE detection_leases SET holder = ?, epoch = ?, expires_at = ? WHERE shard = ?",
                (holder, epoch, until, shard),
            )
            return Lease(shard, holder, int(epoch))

    def _check_lease(self, cursor: Any, lease: Lease) -> None:
        self._execute(
            cursor,
            "SELECT holder, epoch, expires_at FROM detection_leases WHERE shard = ?"
            + self._dialect.for_update,
            (lease.shard,),
        )
        row = cursor.fetchone()
        now = dt.datetime.now(dt.UTC).isoformat()
        if row is None or (row[0], int(row[1])) != (lease.holder, lease.epoch) or row[2] <= now:
            raise LeaseLostError(
                f"detection shard {lease.shard!r}: the lease of {lease.holder!r} "
                f"(epoch {lease.epoch}) is no longer held; another detector owns the shard"
            )

    def pending_alerts(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Alerts not yet published, oldest first, with their ids in the payload."""
        rows = self._query(
            "SELECT alert_id, product, payload FROM alerts "
            "WHERE published_at IS NULL ORDER BY alert_id LIMIT ?",
            (limit,),
        )
        return [
            {
                "alert_id": int(i),
                "product_id": product,
                "payload": {"alert_id": int(i), **stored_alert(payload)},
            }
            for i, product, payload in rows
        ]

    def mark_alerts_published(self, alert_ids: list[int]) -> None:
        now = dt.datetime.now(dt.UTC).isoformat()
        with self._transaction() as cursor:
            self._executemany(
                cursor,
                "UPDATE alerts SET published_at = ? WHERE alert_id = ?",
                [(now, int(i)) for i in alert_ids],
            )

    def alerts(
        self,
        *,
        scope: str | None = None,
        product: str | None = None,
        event: str | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Past alerts (newest last) with optional filters."""
        where, parameters = ["alert_id > ?"], [after]
        for column, value in (("scope", scope), ("product", product), ("event", event)):
            if value is not None:
                where.append(f"{column} = ?")
                parameters.append(value)
        rows = self._query(
            f"SELECT alert_id, payload, published_at FROM alerts WHERE "
            f"{' AND '.join(where)} ORDER BY alert_id LIMIT ?",
            (*parameters, limit),
        )
        return [
            {"alert_id": int(i), **stored_alert(payload), "published_at": published}
            for i, payload, published in rows
        ]

    def history(self, scope: str, product: str, event: str) -> list[dict[str, Any]]:
        """The trend of one pair: statistics at each recorded point, oldest first."""
        rows = self._query(
            "SELECT at, statistics FROM signal_history WHERE scope = ? AND "
            "product = ? AND event = ? ORDER BY id",
            (scope, product, event),
        )
        return [{"at": at, **orjson.loads(statistics)} for at, statistics in rows]

    # -- rejects, offsets, fits -------------------------------------------------------------

    def rejects(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT id, received_at, source, location, field, value, reason "
            "FROM rejects ORDER BY id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        names = ("id", "received_at", "source", "location", "field", "value", "reason")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def count_rejects(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM rejects")[0][0])

    def offsets(self, topic: str) -> dict[int, int]:
        rows = self._query(
            "SELECT partition, next_offset FROM consumer_offsets WHERE topic = ?", (topic,)
        )
        return {int(partition): int(offset) for partition, offset in rows}

    def record_fit(self, scope: str, report: dict[str, Any]) -> None:
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "INSERT INTO fits (scope, fitted_at, report) VALUES (?, ?, ?)",
                (
                    scope,
                    dt.datetime.now(dt.UTC).isoformat(),
                    orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                ),
            )

    def fits(self, scope: str | None = None, *, last: int | None = None) -> list[dict[str, Any]]:
        """Recorded MGPS fits, oldest first; ``last`` keeps only the newest that many."""
        where, parameters = ("WHERE scope = ?", [scope]) if scope else ("", [])
        limit = ""
        if last is not None:
            limit, parameters = " LIMIT ?", [*parameters, last]
        rows = self._query(
            f"SELECT scope, fitted_at, report FROM fits {where} ORDER BY id DESC{limit}",
            parameters,
        )
        return [
            {"scope": s, "fitted_at": at, **orjson.loads(report)}
            for s, at, report in reversed(rows)
        ]


_UPSERT_SIGNAL = Rows(
    "signal_states",
    (
        "scope",
        "product",
        "event",
        "measure",
        "status",
        "since",
        "reference",
        "failures",
        "last_a",
        "last_level",
        "updated_at",
    ),
    ("text",) * 6 + ("double precision", "integer", "bigint", "double precision", "text"),
    "ON CONFLICT (scope, product, event, measure) DO UPDATE SET status = excluded.status, "
    "since = excluded.since, reference = excluded.reference, failures = excluded.failures, "
    "last_a = excluded.last_a, last_level = excluded.last_level, updated_at = excluded.updated_at",
)
_INSERT_HISTORY = Rows(
    "signal_history",
    ("scope", "product", "event", "at", "a", "statistics"),
    ("text", "text", "text", "text", "bigint", "text"),
)
_INSERT_ALERT = Rows(
    "alerts",
    (
        "created_at",
        "scope",
        "product",
        "event",
        "measure",
        "transition",
        "changes",
        "mah_id",
        "payload",
    ),
    ("text",) * 9,
)


_OWNERS_MIGRATION = 6
_PERIODS_MIGRATION = 8
_PLACES_MIGRATION = 14
_RENAME_OWNER = (
    "UPDATE cases SET owner = ? WHERE owner = ?",
    "UPDATE cases SET duplicate_of_owner = ? WHERE duplicate_of_owner = ?",
    "UPDATE suspected_duplicates SET survivor_owner = ? WHERE survivor_owner = ?",
    "UPDATE suspected_duplicates SET suspect_owner = ? WHERE suspect_owner = ?",
)
_SUSPICION_COLUMNS = (
    "suspicion_id, survivor_owner, survivor_case_id, suspect_owner, suspect_case_id, status, "
    "found_at, decided_by, decided_at, note"
)


def _stored_owner(report_json: str) -> str:
    """The sender organisation a stored report names (files' and Kafka's owner rule)."""
    sender = orjson.loads(report_json).get("sender") or {}
    organisation = (sender.get("institution_id") or "").strip()
    return organisation or UNATTRIBUTED


def _stored_received(report_json: str) -> str | None:
    """C.1.5 of a stored JSON report (YYYY-MM-DD), None when it states none."""
    received = orjson.loads(report_json).get("received")
    return received[:10] if isinstance(received, str) and len(received) >= 10 else None


def _month_of(received: str | None) -> str:
    return UNKNOWN_PERIOD if received is None else received[:7]


def _suspicion(row: Sequence[Any]) -> dict[str, Any]:
    found = dict(zip(_SUSPICION_COLUMNS.split(", "), row, strict=True))
    return {
        "suspicion_id": int(found.pop("suspicion_id")),
        "survivor": {
            "owner": found.pop("survivor_owner"),
            "case_id": found.pop("survivor_case_id"),
        },
        "suspect": {"owner": found.pop("suspect_owner"), "case_id": found.pop("suspect_case_id")},
        **found,
    }


def _case_row(state: CaseState, now: str) -> tuple[Any, ...]:
    contribution = None if state.contribution is None else state.contribution.to_json()
    return (
        state.owner,
        state.case_id,
        state.status.value,
        state.version,
        state.report_id,
        state.duplicate_of,
        state.duplicate_of_owner,
        contribution,
        state.report_json,
        state.received,
        now,
    )


_CASE_COLUMNS = (
    "owner, case_id, status, version, report_id, duplicate_of, duplicate_of_owner, contribution"
)


def _case_from_row(row: Sequence[Any]) -> CaseState:
    # Without the stored payload: a batch never needs it, and a write keeps it (COALESCE).
    owner, case_id, status, version, report_id, duplicate_of, duplicate_of_owner, contribution = row
    return CaseState(
        case_id,
        Status(status),
        version,
        report_id,
        duplicate_of,
        None if contribution is None else Contribution.from_json(contribution),
        owner=owner,
        duplicate_of_owner=duplicate_of_owner,
    )


class BatchSession:
    """The store as seen from inside one batch transaction."""

    def __init__(self, store: SqlStore, cursor: Any) -> None:
        self._store, self._cursor = store, cursor

    def load_cases(self, case_ids: Iterable[str]) -> dict[CaseKey, CaseState]:
        """The states of these case ids, of every owner (links across owners need them)."""
        ids = sorted(set(case_ids))
        states: dict[CaseKey, CaseState] = {}
        dialect, cursor = self._store._dialect, self._cursor
        for start in range(0, len(ids), _CHUNK):
            clause, parameters = dialect.in_clause("case_id", ids[start : start + _CHUNK])
            self._store._execute(
                cursor, f"SELECT {_CASE_COLUMNS} FROM cases WHERE {clause}", parameters
            )
            for row in cursor.fetchall():
                state = _case_from_row(row)
                states[state.key] = state
        return states

    def save_receipt(
        self, receipt: dict[str, Any], idempotency_key: str | None, body_digest: str
    ) -> None:
        """A submission's receipt, landing with the batch it describes or not at all."""
        self._store.insert_receipt(self._cursor, receipt, idempotency_key, body_digest)

    def append_audit(self, actor: Actor, entry: Entry) -> None:
        """An audit row landing with the batch it describes (a submission's)."""
        self._store.append_audit(self._cursor, actor, [entry])

    def decide_suspicion(
        self, suspicion_id: int, status: str, decided_by: str, note: str | None
    ) -> bool:
        """Record a regulator's decision on an open suspicion; False when it was not open."""
        self._store._execute(
            self._cursor,
            "UPDATE suspected_duplicates SET status = ?, decided_by = ?, decided_at = ?, "
            "note = ? WHERE suspicion_id = ? AND status = 'open'",
            (status, decided_by, dt.datetime.now(dt.UTC).isoformat(), note, suspicion_id),
        )
        return self._cursor.rowcount == 1

    def offsets(self, topic: str) -> dict[int, int]:
        """The stored next offsets of the topic's partitions, read inside the transaction."""
        self._store._execute(
            self._cursor,
            "SELECT partition, next_offset FROM consumer_offsets WHERE topic = ?",
            (topic,),
        )
        return {int(p): int(o) for p, o in self._cursor.fetchall()}

    def write(self, batch: BatchWrite) -> None:
        """Write the batch's case states, count deltas (those that did not cancel out),
        rejects and offsets. Batch writers hold the store's write lock (see SqlStore.batch),
        so row order cannot deadlock them."""
        now = dt.datetime.now(dt.UTC).isoformat()
        deltas = batch.deltas
        run = self._store._write_rows
        cursor = self._cursor
        self._store._execute(cursor, _BUMP_MARK, (BATCHES_WRITTEN,))
        seq = self._store._mark(cursor, BATCHES_WRITTEN)
        run(cursor, _UPSERT_CASES, [_case_row(state, now) for state in batch.cases])
        run(cursor, _UPSERT_PAIRS, [(*k, v, seq) for k, v in deltas.pairs.items() if v])
        run(cursor, _UPSERT_PRODUCTS, [(*k, v, seq) for k, v in deltas.products.items() if v])
        run(cursor, _UPSERT_EVENTS, [(*k, v, seq) for k, v in deltas.events.items() if v])
        run(cursor, _UPSERT_TOTALS, [(*k, v, seq) for k, v in deltas.totals.items() if v])
        run(cursor, _UPSERT_PAIR_PERIODS, [(*k, v) for k, v in deltas.pair_periods.items() if v])
        run(
            cursor,
            _UPSERT_PRODUCT_PERIODS,
            [(*k, v) for k, v in deltas.product_periods.items() if v],
        )
        run(cursor, _UPSERT_EVENT_PERIODS, [(*k, v) for k, v in deltas.event_periods.items() if v])
        run(cursor, _UPSERT_TOTAL_PERIODS, [(*k, v) for k, v in deltas.total_periods.items() if v])
        run(cursor, _UPSERT_PLACES, [(*k, v) for k, v in deltas.places.items() if v])
        run(cursor, _INSERT_VERSIONS, [(*v, now) for v in batch.versions])
        run(
            cursor,
            _INSERT_REJECT,
            [
                (now, r.source, r.location, r.field, r.value, r.reason, r.payload)
                for r in batch.rejects
            ],
        )
        run(
            cursor,
            _UPSERT_OFFSET,
            [(topic, partition, offset) for (topic, partition), offset in batch.offsets.items()],
        )
        run(
            cursor,
            _INSERT_SUSPICIONS,
            [(*s.survivor, *s.suspect, "open", now) for s in batch.suspicions],
        )
