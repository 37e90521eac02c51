"""`pvsignal serve --demo` as a newcomer runs it: a real process, real HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from tests.support.postgres import free_port


def test_serve_demo_answers_over_http(tmp_path):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "pvsignal.cli",
        "serve",
        "--demo",
        "--demo-reports",
        "3000",
        "--store",
        f"sqlite:///{tmp_path}/demo.db",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        keys = {}
        deadline = time.monotonic() + 60
        while "regulator" not in keys or "mah" not in keys:
            assert time.monotonic() < deadline, "no keys printed"
            line = server.stdout.readline()
            assert line, server.stderr.read()
            if line.startswith("regulator key:"):
                keys["regulator"] = line.split()[-1]
            elif line.startswith("MAH key"):
                keys["mah"] = line.split()[-1]
                mah_id = line.split("(")[1].split(",")[0]
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
            time.sleep(0.1)
        regulator = {"Authorization": f"Bearer {keys['regulator']}"}
        page = httpx.get(f"{base}/v1/signals", params={"status": "open"}, headers=regulator)
        assert page.status_code == 200 and page.json()["total"] > 0
        mah = {"Authorization": f"Bearer {keys['mah']}"}
        rows = httpx.get(f"{base}/v1/signals", params={"limit": 1000}, headers=mah).json()
        assert rows["signals"] and {r["product"]["mah_id"] for r in rows["signals"]} == {mah_id}
        assert httpx.get(f"{base}/v1/signals").status_code == 401
        assert "pvsignal_http_requests_total" in httpx.get(f"{base}/metrics").text
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    assert server.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.stderr.read()
