"""Metric names, pre-initialised label sets, defensive lag, and the probe endpoints."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from detectors.mgps import Hyperparameters
from pvsignal.detection import SIGNIFICANCE
from pvsignal.priors import PriorDecision
from streams.codec import POISON_REASONS
from streams.metrics import REJECT_REASONS, StreamMetrics, serve
from tests.support.postgres import free_port


def test_known_label_sets_exist_at_zero():
    registry = CollectorRegistry()
    StreamMetrics(registry)
    for reason in REJECT_REASONS:
        assert registry.get_sample_value("pvsignal_reports_rejected_total", {"reason": reason}) == 0
    for reason in POISON_REASONS:
        labels = {"reason": reason}
        assert registry.get_sample_value("pvsignal_reports_dead_lettered_total", labels) == 0
    for transition in SIGNIFICANCE:
        labels = {"transition": transition}
        assert registry.get_sample_value("pvsignal_alerts_emitted_total", labels) == 0
    for name in (
        "pvsignal_reports_consumed_total",
        "pvsignal_reports_applied_total",
        "pvsignal_batch_duration_seconds_count",
        "pvsignal_checkpoint_duration_seconds_count",
        "pvsignal_detector_run_seconds_count",
        "pvsignal_last_report_processed_timestamp_seconds",
        "pvsignal_consumer_ready",
    ):
        assert registry.get_sample_value(name) == 0, name


def test_lag_is_never_negative_and_follows_owned_partitions():
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    metrics.track_partitions("reports", [0, 1])
    lag = "pvsignal_consumer_lag"
    assert registry.get_sample_value(lag, {"topic": "reports", "partition": "1"}) == 0
    metrics.set_lag("reports", 0, end=31, position=40)  # Tansu under-reports the end
    assert registry.get_sample_value(lag, {"topic": "reports", "partition": "0"}) == 0
    metrics.set_lag("reports", 0, end=50, position=40)
    assert registry.get_sample_value(lag, {"topic": "reports", "partition": "0"}) == 10
    metrics.untrack_partitions("reports", [0, 7])
    assert registry.get_sample_value(lag, {"topic": "reports", "partition": "0"}) is None


def test_endpoints_serve_metrics_readiness_and_liveness():
    registry, ready = CollectorRegistry(), [False]
    StreamMetrics(registry)
    port = free_port()
    server = serve(port, registry, lambda: ready[0], host="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(f"{base}/metrics") as response:
            assert b"pvsignal_reports_consumed_total 0.0" in response.read()
        with urllib.request.urlopen(f"{base}/livez") as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/readyz")
        assert refused.value.code == 503
        ready[0] = True
        with urllib.request.urlopen(f"{base}/readyz") as response:
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_each_scopes_prior_source_is_shown_with_its_bounds():
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    theta = Hyperparameters(1, 1, 2, 2, 0.1)
    metrics.observe_priors(
        {
            "all": PriorDecision(theta, "fitted", {"on_bound": ["alpha1", "beta2"]}),
            "pilot": PriorDecision(theta, "borrowed", {"on_bound": []}),
        }
    )

    def value(scope, source):
        labels = {"scope": scope, "source": source}
        return registry.get_sample_value("pvsignal_mgps_prior_source", labels)

    assert [value("pilot", s) for s in ("fitted", "borrowed", "given")] == [0, 1, 0]
    assert [value("all", s) for s in ("fitted", "borrowed", "given")] == [1, 0, 0]
    bound = "pvsignal_mgps_fit_parameters_on_bound"
    assert registry.get_sample_value(bound, {"scope": "all"}) == 2
    assert registry.get_sample_value(bound, {"scope": "pilot"}) == 0
