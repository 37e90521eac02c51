"""The PrometheusRule passes promtool, and every metric a rule or dashboard panel uses exists in
the live /metrics of an API (TestClient, lifespan run) and of a consumer's metrics endpoint."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from pvsignal.settings import Settings
from streams.metrics import StreamMetrics, serve
from tests.helm.conftest import PRODUCTION, by_kind, render
from tests.support.postgres import free_port

# Series Prometheus makes itself for every target, not exposed by an application.
PROMETHEUS_OWN = {"up"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
_FUNCTIONS = {
    "sum", "max", "min", "rate", "increase", "deriv", "histogram_quantile", "by", "and",
    "label_values", "humanizeDuration", "humanizePercentage",
}  # fmt: skip


def _exposed(text: str) -> set[str]:
    """Every sample name the exposition can hold: each family's names by its type."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def _metric_names(expression: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expression)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_by = re.sub(r"\bby\s*\([^)]*\)", "", without_labels)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_by)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    return {n for n in names if n not in _FUNCTIONS and not re.fullmatch(r"e?[0-9.]+", n)}


@pytest.fixture(scope="module")
def production(chart):
    return render(chart, PRODUCTION)


@pytest.fixture(scope="module")
def rule_groups(production):
    (rule,) = by_kind(production, "PrometheusRule").values()
    return rule["spec"]["groups"]


@pytest.fixture(scope="module")
def dashboard(production):
    config_map = by_kind(production, "ConfigMap")["pv-pvsignal-dashboard"]
    return json.loads(config_map["data"]["pvsignal.json"])


@pytest.fixture(scope="module")
def live_metrics(tmp_path_factory) -> set[str]:
    """Names in the /metrics of a running API and of a consumer's metrics endpoint."""
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'store.db'}"
    with TestClient(create_app(Settings(store_url=url))) as client:
        answer = client.get("/metrics")
        assert answer.status_code == 200
        names = _exposed(answer.text)
    metrics = StreamMetrics(CollectorRegistry())
    port = free_port()
    server = serve(port, metrics.registry, lambda: True, host="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            names |= _exposed(answer.read().decode())
    finally:
        server.shutdown()
    return names


def test_promtool_accepts_the_rules(rule_groups, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian: prometheus) is needed; scripts/test installs it"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wanted = {
        "PvsignalConsumerLagGrowing",
        "PvsignalDeadLettersArriving",
        "PvsignalDetectorSlowerThanInterval",
        "PvsignalConsumerNotReady",
        "PvsignalApiNotReady",
        "PvsignalWebhookDeliveriesFailing",
        "PvsignalMgpsFitOnBound",
    }
    alerts = {rule["alert"] for group in rule_groups for rule in group["rules"]}
    assert wanted <= alerts


def test_every_rule_metric_exists_in_live_metrics(rule_groups, live_metrics):
    used = set()
    for group in rule_groups:
        for rule in group["rules"]:
            used |= _metric_names(rule["expr"])
    assert used, "no metric found in the rules"
    assert used - PROMETHEUS_OWN - live_metrics == set()


def test_every_dashboard_metric_exists_in_live_metrics(dashboard, live_metrics):
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= _metric_names(target["expr"])
    assert used - live_metrics == set()
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("ingest", "lag", "dead letters", "alerts", "detector", "latency", "errors",
                  "webhook"):  # fmt: skip
        assert topic in titles
