"""The API served by uvicorn in a process of its own: its memory and event loop are its own,
and it can be killed."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.postgres import free_port

ROOT = Path(__file__).resolve().parents[2]

SERVER = """
import sys, uvicorn
from api.app import create_app
from tests.api.conftest import test_settings
uvicorn.run(create_app(test_settings(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    keys: dict[str, str]

    def memory(self, field: str) -> int:
        """VmRSS (now) or VmHWM (the peak since the last reset), in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} for the server")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


@contextlib.contextmanager
def serve(url: str, keys: dict[str, str]) -> Iterator[Server]:
    """The app on ``url``, answering /readyz before this yields; stopped (or found killed) after."""
    port = free_port()
    with serve_command([sys.executable, "-c", SERVER, url, str(port)], port) as server:
        yield Server(server.process, server.base, keys)


@contextlib.contextmanager
def serve_command(
    command: list[str], port: int, environment: dict[str, str] | None = None
) -> Iterator[Server]:
    """A server process listening on ``port`` (``PYTHONPATH`` is this tree), once it answers
    /readyz; stopped (or found killed) after."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(environment or {})}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield Server(process, base, {})
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
