"""A small world for the API tests: three MAHs, pilot-import products, an unregistered product,
planted signals for each, keys for every role — seeded once, copied per module."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import issue_key
from pvsignal.detection import Detector
from pvsignal.ingest import Ingestor
from pvsignal.products import RegisteredProduct
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.settings import Settings
from pvsignal.store import SqlStore, open_store

PRODUCTS = [
    RegisteredProduct(
        product_id="A1",
        names=["alphamab", "阿尔法单抗"],
        kind="biologic",
        pathway="lecheng_special_import",
        mah_id="MAH-A",
    ),
    RegisteredProduct(
        product_id="A2",
        names=["alphacel"],
        kind="cell_gene_therapy",
        pathway="rare_disease_pilot",
        mah_id="MAH-A",
    ),
    RegisteredProduct(
        product_id="B1",
        names=["betanib"],
        kind="drug",
        pathway="gba_hkmacao_connect",
        mah_id="MAH-B",
    ),
    RegisteredProduct(
        product_id="B2", names=["betastent"], kind="device", pathway="innovative", mah_id="MAH-B"
    ),
    RegisteredProduct(
        product_id="C1", names=["gammadrug"], kind="drug", pathway="conventional", mah_id="MAH-C"
    ),
]
UNREGISTERED = "unregistered:mysterium"
OWNED = {"MAH-A": {"A1", "A2"}, "MAH-B": {"B1", "B2"}, "MAH-C": {"C1"}}
PLANTED = {
    "A1": "Hepatic failure",
    "A2": "Cytokine release syndrome",
    "B1": "Interstitial lung disease",
    "B2": "Device failure",
    "mysterium": "Agranulocytosis",
}
GENERAL = ["Headache", "Nausea", "Fatigue", "Dizziness", "Rash", "Pyrexia", "Cough", "Insomnia"]
NAMES = {"A1": "alphamab", "A2": "alphacel", "B1": "betanib", "B2": "betastent", "C1": "gammadrug"}


def report(case_id: str, product: str, pts: list[str], version: int = 1, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "case_id": case_id,
            "report_id": f"R-{case_id}-{version}",
            "version": version,
            "received": "2026-03-01",
            "region": "CN-HI",
            "patient": {"age_years": 50, "sex": "F"},
            "products": [{"name": product, "role": "suspect"}],
            "reactions": [{"pt": pt} for pt in pts],
            **extra,
        }
    )


def world_reports(batch: int) -> list[bytes]:
    """Background cases over every product, and (in batch 1) the planted pairs."""
    rng = random.Random(batch)
    names = [*NAMES.values(), "mysterium"]
    lines = [
        report(f"BG-{batch}-{i}", rng.choice(names), rng.sample(GENERAL, rng.randint(1, 2)))
        for i in range(300)
    ]
    if batch == 1:
        for product, pt in PLANTED.items():
            name = NAMES.get(product, product)
            lines += [report(f"SIG-{product}-{i}", name, [pt]) for i in range(8)]
            # The planted PT now and then with other products: finite PRR and ROR.
            others = [n for n in names if n != name]
            lines += [report(f"OTH-{product}-{i}", rng.choice(others), [pt]) for i in range(2)]
    return lines


@dataclass(frozen=True)
class Seed:
    path: Path
    keys: dict[str, str]


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    path = tmp_path_factory.mktemp("seed") / "world.db"
    store = open_store(f"sqlite:///{path}")
    keys = seed_world(store)
    store.close()
    return Seed(path, keys)


def seed_world(store: SqlStore) -> dict[str, str]:
    """Register the products, ingest the world's reports, detect, and issue a key per role."""
    store.save_products(PRODUCTS)
    ingestor = Ingestor(store, ScopeConfig(), source="seed")
    detector = Detector(store, ScopeConfig())
    for batch in (1, 2):
        lines = world_reports(batch)
        records = [RawRecord(f"seed:{batch}:{i}", line) for i, line in enumerate(lines)]
        touched = ingestor.apply(records).summary.touched_scopes
        detector.update(touched)
    keys = {
        "hospital": issue_key(store, "hospital", "H-1")[0],
        "hospital2": issue_key(store, "hospital", "H-2")[0],
        "mah_a": issue_key(store, "mah", "MAH-A")[0],
        "mah_b": issue_key(store, "mah", "MAH-B")[0],
        "regulator": issue_key(store, "regulator", None)[0],
        "admin": issue_key(store, "admin", None)[0],
    }
    return keys


def test_settings(store_url: str, **overrides: Any) -> Settings:
    """Settings with short intervals, webhooks only to 127.0.0.1."""
    values: dict[str, Any] = {
        "store_url": store_url,
        "detect_debounce_seconds": 0.05,
        "alerts_poll_seconds": 0.1,
        "webhook_poll_seconds": 0.1,
        "signals_freshness_seconds": 0.05,
        "registry_freshness_seconds": 0.05,
        "webhook_backoff_seconds": 0.2,
        "webhook_jitter": 0.0,
        "webhook_allowed_hosts": ("127.0.0.1",),
        "webhook_allow_private": True,
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # a helper, not a test


@dataclass
class World:
    client: TestClient
    keys: dict[str, str]
    url: str

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def get(self, who: str, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.headers(who), **kwargs)

    @property
    def runtime(self) -> Any:
        return self.client.app.state.runtime

    def settle(self) -> None:
        """Wait until detection has run and its alerts were fanned out."""
        scheduler = self.runtime.scheduler
        if scheduler is not None:
            assert scheduler.wait_idle(30)
        self.client.portal.call(self.runtime.feed.step)


def copy_world(seed: Seed, target: Path) -> str:
    shutil.copy(seed.path, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def world(seeded: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = copy_world(seeded, tmp_path_factory.mktemp("world") / "world.db")
    with TestClient(create_app(test_settings(url))) as client:
        yield World(client, seeded.keys, url)


@pytest.fixture
def fresh_world(seeded: Seed, tmp_path: Path) -> Iterator[World]:
    """A world of its own, for tests that change it."""
    url = copy_world(seeded, tmp_path / "world.db")
    with TestClient(create_app(test_settings(url))) as client:
        yield World(client, seeded.keys, url)
