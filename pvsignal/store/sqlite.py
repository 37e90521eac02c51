"""SQLite store: the embedded default. One file, WAL mode, nothing to install."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pvsignal.store.schema import migrations
from pvsignal.store.sql import Dialect, SqlStore


class SqliteDialect(Dialect):
    name = "sqlite"
    schema = migrations("INTEGER PRIMARY KEY AUTOINCREMENT", "WITHOUT ROWID")


class SqliteStore(SqlStore):
    """``sqlite:///path/to/file.db`` (or ``sqlite://`` for a private in-memory store)."""

    def __init__(self, url: str, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) per batch.
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in (
            # 16 KiB pages (new files only; must precede WAL): a batch's random count upserts
            # dirty a page each, and larger pages mean a third fewer WAL frames per commit.
            "page_size = 16384",
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "foreign_keys = ON",
            "temp_store = MEMORY",
            "wal_autocheckpoint = 8192",
            "cache_size = -262144",
            "busy_timeout = 30000",
        ):
            connection.execute(f"PRAGMA {pragma}")
        self._open: Any = None  # the cursor of the transaction in progress
        super().__init__(url, connection, SqliteDialect())

    def release_memory(self) -> None:
        """Free this connection's page cache (after a large read, such as a whole scope's
        counts, that a long-lived connection would otherwise keep resident)."""
        self._connection.execute("PRAGMA shrink_memory")

    @contextmanager
    def _transaction(self, *, exclusive: bool = False, write: bool = False) -> Iterator[Any]:
        # IMMEDIATE takes the write lock at once, so a batch's read-apply-write is serialised
        # with other writers; plain reads use a deferred (shared) transaction. A transaction
        # opened inside another joins it (the outer one commits or rolls back the whole).
        if self._open is not None:
            yield self._open
            return
        cursor = self._connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if exclusive or write else "BEGIN")
        self._open = cursor
        try:
            yield cursor
        except BaseException:
            self._open = None
            cursor.execute("ROLLBACK")
            raise
        self._open = None
        cursor.execute("COMMIT")
