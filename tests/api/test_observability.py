"""Metrics (promtool-valid, by route template), request ids, JSON logs, problem details."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.logs import JsonFormatter
from tests.api.conftest import World


def test_metrics_pass_promtool(world: World):
    world.get("regulator", "/v1/signals/all/A1/Hepatic failure")
    text = world.client.get("/metrics").text
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (scripts/test installs Debian's prometheus)")
        pytest.skip("promtool is not installed")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_http_metrics_use_route_templates_never_paths(world: World):
    world.get("regulator", "/v1/signals/all/A1/Hepatic failure")
    world.get("regulator", "/v1/products/B2")
    world.client.get("/no/such/path/42")
    routes = set()
    for family in text_string_to_metric_families(world.client.get("/metrics").text):
        if family.name == "pvsignal_http_requests":
            routes |= {sample.labels["route"] for sample in family.samples}
    assert "/v1/signals/{scope}/{product_id}/{pt:path}" in routes
    assert "/v1/products/{product_id}" in routes
    assert "unmatched" in routes
    assert not any("A1" in route or "42" in route for route in routes)


def test_latency_series_exist_for_every_route_before_any_request(world: World):
    families = {
        f.name: f for f in text_string_to_metric_families(world.client.get("/metrics").text)
    }
    routes = {
        s.labels.get("route") for s in families["pvsignal_http_request_duration_seconds"].samples
    }
    assert "/v1/subscriptions/{subscription_id}/deliveries" in routes
    outcomes = {s.labels["outcome"] for s in families["pvsignal_reports_ingested"].samples}
    assert {"new", "follow_up", "stale", "resent", "nullified", "refused"} <= outcomes


def test_request_ids_are_echoed_and_logged_as_json(world: World, caplog):
    with caplog.at_level(logging.INFO, logger="api.access"):
        response = world.client.get(
            "/v1/products", headers={**world.headers("mah_a"), "X-Request-ID": "trace-123"}
        )
    assert response.headers["x-request-id"] == "trace-123"
    [record] = [r for r in caplog.records if r.name == "api.access"]
    line = orjson.loads(JsonFormatter().format(record))
    assert line["request_id"] == "trace-123"
    assert line["route"] == "/v1/products" and line["status"] == 200
    assert line["principal"].startswith("mah:MAH-A:")
    assert "pvs_" not in str(line), "keys never reach the logs"
    made = world.client.get("/livez").headers["x-request-id"]
    assert len(made) == 32


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("DELETE", "/v1/signals", 405), ("GET", "/v1/fits?limit=-1", 422)],
)
def test_errors_are_problem_details(world: World, method: str, path: str, status: int):
    response = world.client.request(method, path, headers=world.headers("regulator"))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["type"].startswith("urn:pvsignal:problem:")
    assert problem["instance"] == path.split("?")[0]
    assert problem["request_id"] == response.headers["x-request-id"]


def test_readiness_reports_the_store_and_kafka_offsets(seeded, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from pvsignal.store import BatchWrite, open_store
    from tests.api.conftest import copy_world, test_settings

    url = copy_world(seeded, tmp_path / "ready.db")
    store = open_store(url)
    with store.batch() as session:
        session.write(BatchWrite(offsets={("pvsignal.reports", 0): 40, ("pvsignal.reports", 1): 7}))
    store.close()
    settings = test_settings(url, kafka_bootstrap="127.0.0.1:9092")

    def lag(offsets: dict[int, int]) -> dict[int, int]:
        return {partition: 50 - offset for partition, offset in offsets.items()}

    with TestClient(create_app(settings, lag_probe=lag)) as client:
        ready = client.get("/readyz").json()
    assert ready["kafka"]["next_offsets"] == {"0": 40, "1": 7}
    assert ready["kafka"]["total_lag"] == 10 + 43


def test_request_duration_of_livez_lands_in_a_sub_second_bucket(world: World):
    def livez_buckets() -> dict[str, float]:
        text = world.client.get("/metrics").text
        [family] = [
            f
            for f in text_string_to_metric_families(text)
            if f.name == "pvsignal_http_request_duration_seconds"
        ]
        return {
            s.labels["le"]: s.value
            for s in family.samples
            if s.name.endswith("_bucket") and s.labels["route"] == "/livez"
        }

    before = livez_buckets()
    assert world.client.get("/livez").status_code == 200
    after = livez_buckets()
    assert after["1.0"] - before.get("1.0", 0.0) == 1, after
