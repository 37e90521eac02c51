"""Prometheus metrics of one app, in its own registry (so tests and apps never share series).

Names follow Prometheus practice: ``pvsignal_`` prefix, base units, ``_total`` on counters.
Labels come from small closed sets; HTTP series are labelled by route template, never by path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pvsignal.cases import Outcome
from pvsignal.detection import SIGNIFICANCE
from pvsignal.priors import SOURCES as PRIOR_SOURCES

REJECT_REASONS = ("invalid", "unreadable")
DELIVERY_RESULTS = ("delivered", "retried", "failed")
UNMATCHED = "unmatched"


class Metrics:
    """The app's instruments."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "pvsignal_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "pvsignal_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.reports_ingested = Counter(
            "pvsignal_reports_ingested_total",
            "Valid report versions applied, by case outcome.",
            ["outcome"],
            registry=r,
        )
        self.reports_rejected = Counter(
            "pvsignal_reports_rejected_total",
            "Records rejected before case semantics, by reason.",
            ["reason"],
            registry=r,
        )
        self.last_report = Gauge(
            "pvsignal_last_report_processed_timestamp_seconds",
            "Unix time at which the last batch of reports was applied.",
            registry=r,
        )
        self.detector_run = Histogram(
            "pvsignal_detector_run_seconds",
            "Duration of one detection update over the touched scopes.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.alerts = Counter(
            "pvsignal_alerts_total",
            "Signal transitions raised by the in-process detector, by transition.",
            ["transition"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "pvsignal_webhook_deliveries_total",
            "Webhook delivery attempts, by result.",
            ["result"],
            registry=r,
        )
        self.sse_clients = Gauge(
            "pvsignal_sse_clients", "Clients connected to the alert stream.", registry=r
        )
        self.cache_refresh = Histogram(
            "pvsignal_signals_cache_refresh_seconds",
            "Time to rebuild one scope's in-memory statistics.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        # Scopes are a small configured set (never product or event ids): a fine label.
        self.fit_on_bound = Gauge(
            "pvsignal_mgps_fit_parameters_on_bound",
            "Hyperparameters of the scope's MGPS prior that sit on a bound of the fit's search "
            "(0 is healthy; more means the prior, and so EBGM, is not well determined).",
            ["scope"],
            registry=r,
        )
        self.prior_source = Gauge(
            "pvsignal_mgps_prior_source",
            "1 for where the scope's MGPS prior comes from now (fitted on the scope, borrowed "
            "from a parent scope, given in the configuration), 0 for the others.",
            ["scope", "source"],
            registry=r,
        )
        self._preinitialise()

    def _preinitialise(self) -> None:
        for outcome in Outcome:
            self.reports_ingested.labels(outcome.value)
        for reason in REJECT_REASONS:
            self.reports_rejected.labels(reason)
        for transition in SIGNIFICANCE:  # the transitions that alert
            self.alerts.labels(transition)
        for result in DELIVERY_RESULTS:
            self.webhook_deliveries.labels(result)

    def prior_in_use(self, scope: str, source: str) -> None:
        for known in PRIOR_SOURCES:
            self.prior_source.labels(scope, known).set(1 if known == source else 0)

    def known_routes(self, routes: list[tuple[str, str]]) -> None:
        """Create the latency series of every (method, route template) at zero."""
        for method, route in routes:
            self.http_duration.labels(method, route)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
