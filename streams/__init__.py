"""Kafka in and out (kafka-python): reports consumed exactly once, poison dead-lettered,
alerts published once. Imports pvsignal; pvsignal never imports streams.

- ``streams.codec``: message -> wire-format records, or poison with its reason.
- ``streams.dlq``: poison to ``pvsignal.reports.dlq`` with error and source headers.
- ``streams.consumer``: the loop (reports, or exposures with ``--records exposures``), its
  checkpoint against the store's offsets, the service.
- ``streams.alerts``: the detector's outbox to ``pvsignal.alerts``, each alert once.
- ``streams.metrics``: Prometheus metrics and the /metrics, /readyz, /livez endpoint.
- ``streams.cli``: ``pvsignal consume``.
"""

# The topics, by default (each is configurable).
REPORTS_TOPIC = "pvsignal.reports"
DLQ_TOPIC = "pvsignal.reports.dlq"
ALERTS_TOPIC = "pvsignal.alerts"
EXPOSURES_TOPIC = "pvsignal.exposures"
EXPOSURES_DLQ_TOPIC = "pvsignal.exposures.dlq"
