"""A small pool of store connections for request handlers and background workers.

One SQLite or psycopg connection must not run two transactions at once, and handlers run in a
thread pool: each block of work borrows a connection of its own. A connection that failed with
an unexpected error is closed rather than handed out again.

Closing the pool closes the idle connections at once and each borrowed one when its block
ends: a worker thread that outlives its cancelled task (``asyncio.to_thread`` cannot stop
it) must never find its connection closed under it, which crashes the SQLite module.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from api.problems import ApiError
from pvsignal.errors import PvsignalError
from pvsignal.store import SqlStore, open_store


class StorePool:
    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self._idle: queue.LifoQueue[SqlStore] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle_or_lent: list[SqlStore] = []
        self._closed = False

    @contextmanager
    def store(self) -> Iterator[SqlStore]:
        """Borrow a connection for the duration of the block."""
        with self._slots:
            try:
                store = self._idle.get_nowait()
            except queue.Empty:
                store = self._connect()
            try:
                yield store
            except (ApiError, PvsignalError):
                self._give_back(store)
                raise
            except BaseException:
                self._discard(store)
                raise
            else:
                self._give_back(store)

    def _connect(self) -> SqlStore:
        store = open_store(self.url)
        with self._lock:
            self._idle_or_lent.append(store)
        return store

    def _give_back(self, store: SqlStore) -> None:
        with self._lock:
            if not self._closed:
                self._idle.put(store)
                return
        self._discard(store)

    def _discard(self, store: SqlStore) -> None:
        with self._lock:
            if store in self._idle_or_lent:
                self._idle_or_lent.remove(store)
        with contextlib.suppress(Exception):  # already broken: nothing more to release
            store.close()

    def close(self) -> None:
        """Close the idle connections now; borrowed ones close when given back."""
        with self._lock:
            self._closed = True
        while True:
            try:
                store = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(store)
