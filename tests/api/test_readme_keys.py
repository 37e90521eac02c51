"""The README's key flow, as written, against the store `scripts/demo` serves."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import _print_demo
from api.demo import load_demo
from pvsignal.cli import main
from tests.api.conftest import test_settings

REPO = Path(__file__).resolve().parents[2]


def _demo_store() -> str:
    [url] = re.findall(r"--store (\S+)", (REPO / "scripts" / "demo").read_text())
    return url


def _readme_key_commands(url: str) -> list[list[str]]:
    lines = [
        line.split("#")[0]
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith(".venv/bin/pvsignal keys create") and f"--store {url}" in line
    ]
    return [shlex.split(line)[1:] for line in lines]


def test_the_readme_key_flow_works_against_the_demo(tmp_path, monkeypatch, capsys):
    url = _demo_store()
    commands = _readme_key_commands(url)
    assert len(commands) >= 2, f"the README makes keys with --store {url}, the demo's store"
    monkeypatch.chdir(tmp_path)  # the demo's store is relative to the checkout
    Path("out").mkdir()
    demo = load_demo(url, reports=1_500)
    _print_demo(demo, url, "127.0.0.1", 8000)
    printed = capsys.readouterr().out
    demo_keys = {
        "regulator": demo.regulator_key,
        "mah": demo.mah_key,
        "hospital": demo.hospital_key,
        "admin": demo.admin_key,
    }
    for role, key in demo_keys.items():
        assert key and key in printed, role
    assert f"pvsignal keys create --store {url}" in printed

    made = []
    for command in commands:
        assert main(command) == 0, command
        made.append(capsys.readouterr().out.strip())
    with TestClient(create_app(test_settings(url))) as client:

        def status(key: str, path: str) -> int:
            return client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code

        for key in made:
            assert status(key, "/v1/signals?limit=5") == 200
        assert status(demo_keys["regulator"], "/v1/signals?limit=5") == 200
        assert status(demo_keys["mah"], "/v1/products") == 200
        assert status(demo_keys["hospital"], "/v1/receipts") == 200
        assert status(demo_keys["admin"], "/v1/keys") == 200


@pytest.mark.parametrize("role", ["regulator", "admin"])
def test_keys_made_without_store_go_where_serve_looks(role, tmp_path, monkeypatch, capsys):
    """Without --store both commands use $PVSIGNAL_STORE_URL, so a key made there works."""
    url = f"sqlite:///{tmp_path}/own.db"
    monkeypatch.setenv("PVSIGNAL_STORE_URL", url)
    assert main(["keys", "create", "--role", role]) == 0
    key = capsys.readouterr().out.strip()
    with TestClient(create_app(test_settings(url))) as client:
        answer = client.get("/v1/products", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
