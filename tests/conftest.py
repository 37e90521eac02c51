"""Fixtures for the whole suite: the public data excerpts of tests/data, a PostgreSQL cluster."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from tests.support.postgres import cluster

TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def public_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The public adverse-event excerpts (CAERS, VAERS, FAERS) committed under tests/data.

    Large files are committed as ``NAME.gz``; each is decompressed once per session into a
    temporary folder, so readers see the files under their published names and layout
    (``caers/caers.csv``, ``vaers/2020VAERSVAX.csv``...). See tests/data/README.md.
    """
    root = tmp_path_factory.mktemp("public_data")
    for source in sorted(p for p in TEST_DATA.rglob("*") if p.is_file()):
        relative = source.relative_to(TEST_DATA)
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".gz":
            with gzip.open(source, "rb") as packed, target.with_suffix("").open("wb") as plain:
                shutil.copyfileobj(packed, plain)
        else:
            shutil.copyfile(source, target)
    return root


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL cluster for the whole session (its maintenance URL)."""
    with cluster() as url:
        yield url
