"""Shared fixtures: the real public data beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.postgres import cluster

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder {SHARED_DATA} is missing (see README)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL cluster for the whole session (its maintenance URL)."""
    with cluster() as url:
        yield url
