"""Prometheus metrics of the stream service, and its /metrics, /readyz and /livez endpoint.

Names follow ../shared/STYLE.md: ``pvsignal_`` prefix, base units, ``_total`` on counters
(prometheus-client appends it). Labels come from closed sets and are pre-initialised, so every
series exists at 0 from the start.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from pvsignal.detection import SIGNIFICANCE
from pvsignal.priors import SOURCES as PRIOR_SOURCES
from pvsignal.priors import PriorDecision
from streams.codec import POISON_REASONS

# A valid report the case semantics refuse (a version of a withdrawn case) is rejected, but
# it is not poison: resending it would not help, so it is not dead-lettered.
REJECT_REASONS = (*POISON_REASONS, "refused")
_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StreamMetrics:
    """Every metric of the consumer, registered in the given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.consumed = Counter(
            "pvsignal_reports_consumed",
            "Kafka messages taken for processing (redeliveries below the stored offset excluded)",
            registry=registry,
        )
        self.applied = Counter(
            "pvsignal_reports_applied",
            "Reports applied to their case (new, follow-up, stale, resent or nullification)",
            registry=registry,
        )
        self.redelivered = Counter(
            "pvsignal_reports_redelivered",
            "Messages below the store's offset (redelivered after a crash or rebalance), skipped",
            registry=registry,
        )
        self.rejected = Counter(
            "pvsignal_reports_rejected",
            "Reports refused, by reason (poison reasons, or refused by the case semantics)",
            ["reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "pvsignal_reports_dead_lettered",
            "Poison messages sent to the dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        )
        self.lag = Gauge(
            "pvsignal_consumer_lag",
            "Messages between the consumer's position and the end of the partition",
            ["topic", "partition"],
            registry=registry,
        )
        self.batch_duration = Histogram(
            "pvsignal_batch_duration_seconds",
            "Time to process one polled batch: decode, dead letters, checkpoint, commit",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.checkpoint_duration = Histogram(
            "pvsignal_checkpoint_duration_seconds",
            "Time of one batch's store transaction (cases, counts, rejects and offsets)",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.detector_run = Histogram(
            "pvsignal_detector_run_seconds",
            "Time to bring the touched scopes' statistics and signal states up to date",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.last_processed = Gauge(
            "pvsignal_last_report_processed_timestamp_seconds",
            "Unix time of the last checkpoint that applied reports",
            registry=registry,
        )
        self.alerts_emitted = Counter(
            "pvsignal_alerts_emitted",
            "Alerts published to the alerts topic, by signal transition",
            ["transition"],
            registry=registry,
        )
        self.ready = Gauge(
            "pvsignal_consumer_ready",
            "1 when the consumer is positioned and its broker and store answer, else 0",
            registry=registry,
        )
        self.prior_source = Gauge(
            "pvsignal_mgps_prior_source",
            "1 for where the scope's MGPS prior comes from now (fitted on the scope, borrowed "
            "from a parent scope, given in the configuration), 0 for the others",
            ["scope", "source"],
            registry=registry,
        )
        self.prior_on_bound = Gauge(
            "pvsignal_mgps_fit_parameters_on_bound",
            "Hyperparameters of the scope's MGPS prior in use that sit on a bound of the fit's "
            "search (0 is healthy)",
            ["scope"],
            registry=registry,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        for reason in POISON_REASONS:
            self.dead_lettered.labels(reason)
        for transition in SIGNIFICANCE:  # the transitions that alert
            self.alerts_emitted.labels(transition)

    def observe_priors(self, decisions: Mapping[str, PriorDecision]) -> None:
        """Each scope's prior source (one series per source, 1 for the one in use)."""
        for scope, decision in decisions.items():
            for source in PRIOR_SOURCES:
                self.prior_source.labels(scope, source).set(1 if source == decision.source else 0)
            self.prior_on_bound.labels(scope).set(len(decision.on_bound))

    def track_partitions(self, topic: str, partitions: Iterable[int]) -> None:
        """Lag series for newly owned partitions (0 until measured)."""
        for partition in partitions:
            self.lag.labels(topic, str(partition))

    def untrack_partitions(self, topic: str, partitions: Iterable[int]) -> None:
        for partition in partitions:
            with contextlib.suppress(KeyError):  # never measured
                self.lag.remove(topic, str(partition))

    def set_lag(self, topic: str, partition: int, end: int | None, position: int | None) -> None:
        # The Tansu broker's ListOffsets can under-report the end: never show negative lag.
        if end is not None and position is not None:
            self.lag.labels(topic, str(partition)).set(max(0, end - position))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(
    port: int, registry: CollectorRegistry, ready: Callable[[], bool], host: str = "0.0.0.0"
) -> WSGIServer:
    """Serve /metrics, /readyz (503 while not ready) and /livez on a daemon thread."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/livez":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            if ready():
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ready\n"]
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"not ready\n"]
        return metrics_app(environ, start_response)

    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
