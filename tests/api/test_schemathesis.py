"""Property-based requests from the OpenAPI schema against a live server: never a 5xx.

Bounded: 25 examples per operation, no deadline per example; the whole run takes a few
seconds. Webhook URLs may only name 127.0.0.1, so generated subscriptions call nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings

from api.app import create_app
from tests.api.conftest import Seed, copy_world, test_settings
from tests.support.postgres import free_port


@pytest.fixture(scope="module")
def live_api(seeded: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    url = copy_world(seeded, tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(test_settings(url)),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", seeded.keys["admin"]
    server.should_exit = True
    thread.join(30)


def test_no_request_makes_the_server_fail(live_api: tuple[str, str]):
    base, key = live_api
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 15
    failures: list[str] = []
    for operation in operations:
        if operation.path == "/v1/alerts/stream":
            continue  # the live stream never ends by itself; test_sse.py covers it
        _explore(operation, base, key, failures)
    assert not failures, "\n".join(failures)


def _explore(operation, base: str, key: str, failures: list[str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def check(case) -> None:
        response = case.call(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path}: {response.text[:300]}")

    check()
