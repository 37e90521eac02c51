"""The connection pool at shutdown: a worker thread outliving its cancelled task keeps a
usable connection until it gives it back (closing it under the thread crashed SQLite)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from api.pool import StorePool


def test_closing_the_pool_waits_for_the_lent_connection(tmp_path):
    pool = StorePool(f"sqlite:///{tmp_path}/store.db", 2)
    with pool.store() as idle:
        pass
    lent, go_on, closed = [], threading.Event(), threading.Event()
    answers = []

    def worker():
        with pool.store() as store:
            lent.append(store)
            closed.wait(10)
            answers.append(store.latest_alert_id())  # after pool.close(): still open

    thread = threading.Thread(target=worker)
    thread.start()
    while not lent:
        go_on.wait(0.01)
    pool.close()
    closed.set()
    thread.join(10)
    assert answers == [0]
    assert lent[0] is idle  # the idle one was lent (LIFO), so nothing else was open
    with pytest.raises(sqlite3.ProgrammingError):  # given back after close: closed then
        lent[0].latest_alert_id()


def test_idle_connections_close_at_once(tmp_path):
    pool = StorePool(f"sqlite:///{tmp_path}/store.db", 2)
    with pool.store() as store:
        pass
    pool.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.latest_alert_id()
