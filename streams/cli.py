"""``pvsignal consume``: the Kafka consumer as a command.

``add_consume_command(commands)`` registers it on the ``pvsignal`` CLI's subparsers;
``python -m streams.cli consume ...`` runs the same command without the rest of the CLI.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from pvsignal.argtypes import level, positive_int, seconds
from pvsignal.errors import InputError
from pvsignal.scopes import load_scope_config
from pvsignal.store import DEFAULT_URL
from streams import (
    ALERTS_TOPIC,
    DLQ_TOPIC,
    EXPOSURES_DLQ_TOPIC,
    EXPOSURES_TOPIC,
    REPORTS_TOPIC,
)
from streams.codec import DEFAULT_MAX_BYTES, RECORDS

if TYPE_CHECKING:
    from pvsignal.settings import KafkaSettings


def add_consume_command(commands: argparse._SubParsersAction) -> None:
    """Register ``consume`` on the CLI's subparsers."""
    parser = commands.add_parser(
        "consume",
        help="consume reports from Kafka into the store, detect, publish alerts",
        description="Consume reports (JSON, or E2B(R3) XML batches by content-type header) "
        "from Kafka into the store, each exactly once; send poison to the dead-letter topic; "
        "keep signals current and publish each transition once to the alerts topic. "
        "Runs until SIGTERM or SIGINT, then finishes its batch, leaves the group and exits 0.",
    )
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="Kafka brokers (default $PVSIGNAL_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--records",
        choices=RECORDS,
        default="reports",
        help="what the topic carries: reports (default), or exposure records (active "
        "monitoring: their sequential tests are updated after each batch)",
    )
    parser.add_argument(
        "--topic",
        help=f"default {REPORTS_TOPIC}, or {EXPOSURES_TOPIC} with --records exposures",
    )
    parser.add_argument("--group", default="pvsignal", help="consumer group (default pvsignal)")
    parser.add_argument(
        "--no-group",
        action="store_true",
        help="take every partition without a consumer group (a single process)",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("PVSIGNAL_STORE_URL", DEFAULT_URL),
        help=f"store URL (default $PVSIGNAL_STORE_URL or {DEFAULT_URL})",
    )
    parser.add_argument("--scope-config", type=Path, help="YAML file declaring the scopes")
    parser.add_argument(
        "--batch-size", type=positive_int, default=2_000, help="records per poll and transaction"
    )
    parser.add_argument("--metrics-port", type=int, help="serve /metrics, /readyz, /livez here")
    parser.add_argument(
        "--dlq-topic", help=f"default {DLQ_TOPIC}, or {EXPOSURES_DLQ_TOPIC} for exposures"
    )
    parser.add_argument("--alerts-topic", default=ALERTS_TOPIC, help=f"default {ALERTS_TOPIC}")
    parser.add_argument(
        "--max-message-bytes",
        type=positive_int,
        default=DEFAULT_MAX_BYTES,
        help=f"larger messages are poison (default {DEFAULT_MAX_BYTES})",
    )
    parser.add_argument(
        "--detect-interval",
        type=seconds,
        default=0.1,
        metavar="SECONDS",
        help="least time between detector runs (default 0.1; 0: after every batch)",
    )
    parser.add_argument(
        "--detect-share",
        type=level,
        default=0.25,
        metavar="SHARE",
        help="while behind (more waiting than applied), the most of the consumer's time the "
        "detector may take, between 0 and 1 (default 0.25): after a run of t seconds the "
        "next waits t*(1-SHARE)/SHARE longer",
    )
    parser.add_argument(
        "--no-detect",
        action="store_true",
        help="ingest only: do not run the detector (alerts already in the outbox still go out)",
    )
    parser.add_argument(
        "--no-publish",
        action="store_true",
        help="never publish the outbox's alerts (the reports consumer's leader does): for an "
        "exposures consumer beside it, so that one process alone publishes",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=positive_int,
        help="consumer group session timeout (kafka-python's default otherwise)",
    )
    security = parser.add_argument_group(
        "Kafka TLS and SASL",
        "Each option overrides its PVSIGNAL_KAFKA_* variable (e.g. PVSIGNAL_KAFKA_SSL_CAFILE); "
        "the SASL password and a key's password are read only from PVSIGNAL_KAFKA_SASL_PASSWORD "
        "and PVSIGNAL_KAFKA_SSL_KEY_PASSWORD, never from the command line.",
    )
    security.add_argument(
        "--security-protocol", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    )
    security.add_argument("--ssl-cafile", type=Path, help="the brokers' CA bundle (PEM)")
    security.add_argument("--ssl-certfile", type=Path, help="client certificate (PEM, mTLS)")
    security.add_argument("--ssl-keyfile", type=Path, help="client private key (PEM, mTLS)")
    security.add_argument("--sasl-mechanism", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    security.add_argument("--sasl-username")
    parser.set_defaults(run=run_consume)


_SECURITY_OPTIONS = (
    "bootstrap",
    "security_protocol",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "sasl_mechanism",
    "sasl_username",
)


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    """PVSIGNAL_KAFKA_* overridden by the options given; an invalid combination is refused
    with the setting's name."""
    from pvsignal.settings import KafkaSettings

    overrides = {name: getattr(args, name) for name in _SECURITY_OPTIONS}
    try:
        settings = KafkaSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(
            ("kafka_" + ".".join(map(str, e["loc"])) + ": " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in error.errors()
        )
        raise InputError(f"settings: {problems}") from None
    if settings.bootstrap is None:
        raise InputError("kafka_bootstrap: give --bootstrap or set PVSIGNAL_KAFKA_BOOTSTRAP")
    return settings


STARTED = "pvsignal consume: started; SIGTERM or SIGINT stops it after the current batch"


def run_consume(args: argparse.Namespace) -> int:
    # The consumer's imports (kafka, the detectors, scipy) are paid only by `consume`.
    from streams.connection import client_options
    from streams.consumer import ConsumerConfig, StreamConsumer
    from streams.metrics import StreamMetrics, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    kafka = kafka_settings(args)
    exposures = args.records == "exposures"
    config = ConsumerConfig(
        bootstrap=kafka.bootstrap,
        topic=args.topic or (EXPOSURES_TOPIC if exposures else REPORTS_TOPIC),
        records=args.records,
        group=None if args.no_group else args.group,
        dlq_topic=args.dlq_topic or (EXPOSURES_DLQ_TOPIC if exposures else DLQ_TOPIC),
        alerts_topic=args.alerts_topic,
        batch_size=args.batch_size,
        max_message_bytes=args.max_message_bytes,
        detect=not args.no_detect,
        publish=not args.no_publish,
        detect_seconds=args.detect_interval,
        detect_share=args.detect_share,
        kafka={}
        if args.session_timeout_ms is None
        else {"session_timeout_ms": args.session_timeout_ms},
        client=client_options(kafka),
    )
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        # The handler only sets the event: the loop finishes its batch, then closes.
        signal.signal(number, lambda *_: stop.set())
    # From here a SIGTERM stops cleanly (exit 0); whoever supervises may wait for this line.
    print(STARTED, flush=True)
    metrics = StreamMetrics(CollectorRegistry())
    consumer = StreamConsumer(
        config,
        store_url=args.store,
        scopes=load_scope_config(args.scope_config),
        metrics=metrics,
    )
    if args.metrics_port is not None:
        serve(args.metrics_port, metrics.registry, lambda: consumer.ready)
    consumer.run(stop)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pvsignal", description="pvsignal's Kafka consumer.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_consume_command(commands)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
