"""PostgreSQL store (psycopg 3): the production store, shared by several consumers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from pvsignal.store.schema import migrations
from pvsignal.store.sql import Dialect, Rows, SqlStore

# Key of the advisory lock that serialises batch writers ("pvsig" in ASCII).
_BATCH_LOCK = 0x7076736967


class PostgresDialect(Dialect):
    name = "postgresql"
    for_update = " FOR UPDATE"
    schema = migrations(
        "BIGSERIAL PRIMARY KEY",
        widen_case_version="ALTER TABLE cases ALTER COLUMN version TYPE BIGINT",
    )

    def sql(self, statement: str) -> str:
        # The shared statements use qmark placeholders; psycopg uses the format style.
        return statement.replace("?", "%s")

    def json_array(self, column: str) -> str:
        return f"json_agg({column})::text"

    def in_clause(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def write_rows(self, cursor: Any, spec: Rows, rows: list[Sequence[Any]]) -> None:
        self.write_columns(cursor, spec, [list(column) for column in zip(*rows, strict=True)])

    def write_columns(self, cursor: Any, spec: Rows, columns: Sequence[list[Any]]) -> None:
        # One statement over one array per column: the server plans and runs it once for the
        # whole batch, instead of once per row (5x faster for a batch's count upserts).
        arrays = ", ".join(f"%b::{kind}[]" for kind in spec.types)
        cursor.execute(
            f"INSERT INTO {spec.table} ({', '.join(spec.columns)}) "
            f"SELECT * FROM unnest({arrays}) {spec.conflict}",
            list(columns),
        )


class PostgresStore(SqlStore):
    """``postgresql://user@host:port/database``."""

    def __init__(self, url: str) -> None:
        connection = psycopg.connect(url, autocommit=True)
        super().__init__(url, connection, PostgresDialect())

    @contextmanager
    def _transaction(self, *, exclusive: bool = False, write: bool = False) -> Iterator[Any]:
        # A transaction opened inside another is a savepoint of it (psycopg nests them); an
        # exclusive one takes the batch lock there, held until the outer transaction ends.
        with self._connection.transaction(), self._connection.cursor() as cursor:
            if exclusive:
                # Batch writers take one transaction-scoped advisory lock (see SqlStore.batch).
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_BATCH_LOCK,))
            yield cursor
