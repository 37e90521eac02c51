"""API throughput and latency: reports accepted per second, GET /v1/signals p99 at 1M pairs.

Run:  .venv/bin/python -m benchmarks.api [--reports 100000] [--pairs 1000000]

Each measurement runs `pvsignal serve` in a child process (one uvicorn worker, the in-process
engine on) and talks HTTP to it from this process over 127.0.0.1:

1. Ingest: simulated reports posted as NDJSON batches of 5,000 lines, one after the other;
   accepted/s = lines answered / wall time (validation, case semantics, counting, receipts;
   detection runs in the same worker, debounced, while posts continue).
2. Signals: a store holding ``--pairs`` product-event pairs over ~50,000 registered products
   (heavy-tailed counts, detection run once so signal states exist); after a warm-up, a few
   hundred GETs of each query shape, one at a time; p50/p99 of the wall time per request.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import numpy as np

from api.auth import issue_key
from detectors.counting import distinct
from pvsignal.detection import Detector
from pvsignal.products import RegisteredProduct
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.store import open_store
from tests.support.postgres import free_port

_PATHWAYS = ("innovative", "lecheng_special_import", "gba_hkmacao_connect", "conventional")
_KINDS = ("drug", "biologic", "device", "vaccine")


class Server:
    """`pvsignal serve` in a child process, on a free port."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        environment = {**os.environ, "PVSIGNAL_LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pvsignal.cli",
                "serve",
                "--store",
                url,
                "--port",
                str(self.port),
            ],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.base}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def ingest_throughput(folder: Path, reports: int) -> tuple[float, int, float]:
    """(accepted reports/s, reports, seconds) for NDJSON batches of 5,000."""
    simulation = simulate(SimulationConfig(reports=reports, seed=3))
    url = f"sqlite:///{folder}/ingest.db"
    store = open_store(url)
    store.save_products(simulation.products)
    key, _ = issue_key(store, "hospital", "H-BENCH")
    store.close()
    lines = list(simulation.lines())
    bodies = [b"\n".join(lines[i : i + 5_000]) for i in range(0, len(lines), 5_000)]
    server = Server(url)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
        with httpx.Client(base_url=server.base, headers=headers, timeout=120) as client:
            began = time.perf_counter()
            answered = 0
            for body in bodies:
                response = client.post("/v1/reports", content=body)
                response.raise_for_status()
                answered += response.json()["records"]
            seconds = time.perf_counter() - began
    finally:
        server.stop()
    return answered / seconds, answered, seconds


def synthetic_store(url: str, pairs: int, seed: int = 0) -> tuple[int, str, str]:
    """A store with about ``pairs`` pairs in scope 'all'; (pairs, regulator key, MAH key)."""
    rng = np.random.default_rng(seed)
    products, events = max(pairs // 20, 50), max(pairs // 125, 30)
    keys = np.empty(0, dtype=np.int64)
    while keys.size < pairs:  # draw (product, PT) until enough distinct pairs exist
        draws = int((pairs - keys.size) * 1.5) + 1_000
        drawn = _zipf(rng, draws, products, 1.05).astype(np.int64) * events + _zipf(
            rng, draws, events, 0.9
        )
        keys = distinct(np.concatenate([keys, drawn]))
    keys = np.sort(rng.choice(keys, pairs, replace=False))
    pair_p, pair_e = keys // events, keys % events
    a = rng.geometric(0.55, keys.size)  # most pairs have one case, a few many
    strong = rng.random(keys.size) < 0.002  # disproportionate pairs: signals to find
    a[strong] += rng.integers(5, 60, int(strong.sum()))
    n_product = np.bincount(pair_p, weights=a, minlength=products) + 1
    n_event = np.bincount(pair_e, weights=a, minlength=events) + 1
    total = int(a.sum() * 1.2)
    store = open_store(url)
    registry = [
        RegisteredProduct(
            product_id=f"P-{i:06d}",
            names=[f"product {i}"],
            kind=_KINDS[(i // len(_PATHWAYS)) % len(_KINDS)],
            pathway=_PATHWAYS[i % len(_PATHWAYS)],
            mah_id=f"MAH-{i % 300:03d}",
        )
        for i in range(products)
    ]
    store.save_products(registry)
    regulator, _ = issue_key(store, "regulator", None)
    mah, _ = issue_key(store, "mah", "MAH-007")
    store.close()
    write_counts(
        url,
        (f"P-{i:06d}" for i in pair_p.tolist()),
        (f"PT-{i:05d}" for i in pair_e.tolist()),
        a.tolist(),
        {f"P-{i:06d}": int(n) for i, n in enumerate(n_product.tolist())},
        {f"PT-{i:05d}": int(n) for i, n in enumerate(n_event.tolist())},
        total,
    )
    store = open_store(url)
    Detector(store, ScopeConfig()).update(["all"])  # signal states and a recorded fit
    store.close()
    return int(keys.size), regulator, mah


def write_counts(
    url: str,
    pair_product: Iterable[str],
    pair_event: Iterable[str],
    a: Iterable[int],
    n_product: dict[str, int],
    n_event: dict[str, int],
    total: int,
) -> None:
    """Write scope 'all''s counts straight into a SQLite store (one stratum), as ingesting
    reports that make them would."""
    stratum = "unknown|U|unknown"
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        connection.executemany(
            "INSERT INTO pair_counts VALUES ('all', ?, ?, ?, 0)",
            zip(pair_product, pair_event, a, strict=True),
        )
        connection.executemany(
            "INSERT INTO product_counts VALUES ('all', ?, ?, ?, 0)",
            [(stratum, label, n) for label, n in n_product.items()],
        )
        connection.executemany(
            "INSERT INTO event_counts VALUES ('all', ?, ?, ?, 0)",
            [(stratum, label, n) for label, n in n_event.items()],
        )
        connection.execute("INSERT INTO scope_totals VALUES ('all', ?, ?, 0)", (stratum, total))


def _zipf(rng: np.random.Generator, size: int, categories: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, categories + 1) ** exponent
    return rng.choice(categories, size=size, p=weights / weights.sum())


QUERIES = {
    "regulator, first page (sort -eb05, 100 rows)": ("regulator", {}),
    "regulator, open EBGM signals, a >= 3": (
        "regulator",
        {"measure": "ebgm", "status": "open", "min_a": 3},
    ),
    "regulator, pathway + kind, sort -prr": (
        "regulator",
        {"pathway": "lecheng_special_import", "kind": "drug", "sort": "-prr"},
    ),
    "regulator, one product": ("regulator", {"product_id": "P-000123"}),
    "MAH (own products only), sort -eb05": ("mah", {}),
    "MAH, one PT, sort a": ("mah", {"pt": "PT-00003", "sort": "a"}),
}


def signals_latency(folder: Path, pairs: int, repeats: int) -> list[tuple[str, float, float, int]]:
    url = f"sqlite:///{folder}/signals.db"
    began = time.perf_counter()
    made, regulator, mah = synthetic_store(url, pairs)
    print(f"store with {made:,} pairs built in {time.perf_counter() - began:.1f} s", flush=True)
    keys = {"regulator": regulator, "mah": mah}
    server = Server(url)
    results = []
    try:
        with httpx.Client(base_url=server.base, timeout=300) as client:
            for name, (who, params) in QUERIES.items():
                headers = {"Authorization": f"Bearer {keys[who]}"}
                first = client.get("/v1/signals", params=params, headers=headers)  # warm-up
                first.raise_for_status()
                cursor = first.json()["next_cursor"]
                timings = []
                for i in range(repeats):
                    query = dict(params)
                    if cursor and i % 2:  # every other request follows the cursor
                        query["cursor"] = cursor
                    started = time.perf_counter()
                    response = client.get("/v1/signals", params=query, headers=headers)
                    timings.append(time.perf_counter() - started)
                    response.raise_for_status()
                total = first.json()["total"]
                results.append(
                    (
                        name,
                        float(np.percentile(timings, 50)),
                        float(np.percentile(timings, 99)),
                        total,
                    )
                )
    finally:
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}; server: one uvicorn worker over 127.0.0.1"
    )
    with tempfile.TemporaryDirectory(prefix="pvsignal-bench-api-") as folder:
        rate, answered, seconds = ingest_throughput(Path(folder), args.reports)
        print(
            f"POST /v1/reports NDJSON (5,000 per batch): {answered:,} reports in {seconds:.1f} s "
            f"= {rate:,.0f} reports/s accepted (target >= 5,000/s)",
            flush=True,
        )
        for name, p50, p99, total in signals_latency(Path(folder), args.pairs, args.repeats):
            print(
                f"GET /v1/signals {name}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
                f"({total:,} matching)"
            )
        print("target: p99 < 100 ms for a filtered, paginated page")


if __name__ == "__main__":
    main()
