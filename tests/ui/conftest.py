"""The dashboard under test: `pvsignal serve` on a simulated store, driven by a real Chromium
(Debian's, through Playwright; never a downloaded browser), one browser per session.

The store is the demo's simulation (planted signals, a Lecheng one first) with a key per role
and a second MAH; screenshots of each page go to ``test-artifacts/ui/`` (gitignored).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role, issue_key
from api.demo import load_demo
from pvsignal.store import open_store
from tests.api.conftest import test_settings
from tests.support.postgres import free_port
from tests.support.server import Server, serve_command

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
E2B_BATCH = ROOT / "tests" / "pvsignal" / "readers" / "data" / "e2b_batch.xml"
E2B_HOSPITAL = "Boao Lecheng Designated Hospital 01"  # a sender of that batch
FAST = {  # settings of the served process: alerts reach the browser within a fraction of a second
    "PVSIGNAL_LOG_LEVEL": "WARNING",  # its stderr is a pipe read only if it fails to start
    "PVSIGNAL_DETECT_DEBOUNCE_SECONDS": "0.05",
    "PVSIGNAL_ALERTS_POLL_SECONDS": "0.1",
    "PVSIGNAL_SIGNALS_FRESHNESS_SECONDS": "0.05",
    "PVSIGNAL_REGISTRY_FRESHNESS_SECONDS": "0.05",
}


@dataclass(frozen=True)
class Demo:
    url: str
    keys: dict[str, str]  # regulator, mah_a, mah_b, hospital, admin, pilot_owner, pilot_other
    mah_a: str
    mah_b: str
    products_of: dict[str, set[str]]  # MAH -> its product ids
    pathway_of: dict[str, str]
    names_of: dict[str, list[str]]
    planted: list[tuple[str, str]]
    monitored: tuple[str, str]  # the pilot's planted pair, under a sequential test

    def foreign_products(self, mah: str) -> set[str]:
        return {p for m, ps in self.products_of.items() if m != mah for p in ps}


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    url = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'demo.db'}"
    loaded = load_demo(url, reports=5000, seed=7)
    store = open_store(url)
    try:
        products = store.load_products()
        pathway_of = {p.product_id: p.pathway.value for p in products}
        names_of = {p.product_id: list(p.names) for p in products}
        products_of: dict[str, set[str]] = {}
        for p in products:
            products_of.setdefault(p.mah_id or "", set()).add(p.product_id)
        owner = {p.product_id: p.mah_id for p in products}
        mah_b = next(owner[p] for p, _ in loaded.planted if owner[p] != loaded.mah_id)
        keys = {
            "regulator": loaded.regulator_key,
            "mah_a": loaded.mah_key or "",
            "mah_b": issue_key(store, Role.mah, mah_b, "second MAH")[0],
            "hospital": issue_key(store, Role.hospital, E2B_HOSPITAL, "E2B hospital")[0],
            "admin": loaded.admin_key,
            # The pilot's monitored products: LC-P01 (planted, signalled) of MAH-001, LC-P02
            # of MAH-002.
            "pilot_owner": issue_key(store, Role.mah, owner[loaded.monitored[0]], "pilot")[0],
            "pilot_other": issue_key(store, Role.mah, owner["LC-P02"], "pilot other")[0],
        }
    finally:
        store.close()
    return Demo(
        url,
        keys,
        loaded.mah_id or "",
        mah_b,
        products_of,
        pathway_of,
        names_of,
        loaded.planted,
        loaded.monitored,
    )


@contextlib.contextmanager
def serve_cli(url: str, **environment: str) -> Iterator[Server]:
    """`pvsignal serve --store URL` in a process of its own, answering /readyz."""
    port = free_port()
    command = [sys.executable, "-m", "pvsignal.cli", "serve", "--store", url, "--port", str(port)]
    with serve_command(command, port, {**FAST, **environment}) as served:
        yield served


@pytest.fixture(scope="session")
def server(demo: Demo) -> Iterator[Server]:
    with serve_cli(demo.url) as served:
        yield served


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed at /usr/bin/chromium (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def sign_in(browser: object, base: str, key: str, **context_options: object) -> object:
    """A fresh browser context signed in with ``key`` through the form; its page."""
    context = browser.new_context(base_url=base, **context_options)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto("/ui/login")
    page.fill("input[name=api_key]", key)
    page.get_by_role("button", name=re.compile("Sign in|登录")).click()
    page.wait_for_url(re.compile(r"/ui/(?!login)"))
    return page


def shoot(page: object, name: str) -> Path:
    """A full-page screenshot kept as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


@pytest.fixture
def app_on(demo: Demo, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """A TestClient on a copy of the demo store, with settings overrides."""
    copy = tmp_path / "demo.db"
    shutil.copy(demo.url.removeprefix("sqlite:///"), copy)
    clients = []

    def start(**overrides: object) -> TestClient:
        client = TestClient(create_app(test_settings(f"sqlite:///{copy}", **overrides)))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)
