"""Stores for the core's tests: SQLite and a real PostgreSQL 15 cluster, same contract."""

from __future__ import annotations

import itertools

import pytest

from pvsignal.store import open_store
from tests.support.postgres import create_database

_names = itertools.count()


@pytest.fixture
def new_store(postgres_server, tmp_path):
    """A factory of empty stores of the given kind ('sqlite' or 'postgresql')."""
    opened = []

    def make(kind: str):
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path}/store-{next(_names)}.db"
        else:
            url = create_database(postgres_server, f"test_{next(_names)}")
        store = open_store(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, new_store):
    return new_store(request.param)
