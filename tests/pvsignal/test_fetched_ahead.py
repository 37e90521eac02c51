"""Reading a cursor a chunk ahead on a thread (pvsignal.store.sql._fetched_ahead)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from pvsignal.store.sql import _fetched_ahead


def _cursor(rows: int) -> sqlite3.Cursor:
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    connection.execute("CREATE TABLE t (k INTEGER)")
    connection.executemany("INSERT INTO t VALUES (?)", [(k,) for k in range(rows)])
    return connection.execute("SELECT k FROM t ORDER BY k")


@pytest.mark.parametrize("rows", [0, 1, 7, 8, 1_000])
def test_the_chunks_are_fetchmany_s_in_order(rows):
    chunks = list(_fetched_ahead(_cursor(rows), 8))
    assert [len(chunk) for chunk in chunks] == [8] * (rows // 8) + ([rows % 8] if rows % 8 else [])
    assert [k for chunk in chunks for (k,) in chunk] == list(range(rows))


def test_a_reader_that_stops_early_leaves_no_fetching_thread_behind():
    cursor = _cursor(1_000)
    for chunk in _fetched_ahead(cursor, 8):
        assert chunk[0] == (0,)
        break
    assert not [t for t in threading.enumerate() if t.name == "fetch-ahead"]
    assert cursor.fetchone() is not None  # the cursor is the caller's again


def test_an_error_while_fetching_is_raised_to_the_reader():
    class Failing:
        def fetchmany(self, size):
            raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        list(_fetched_ahead(Failing(), 8))
