"""Detection after a batch at national scale: the incremental detector against a full rescoring.

Run:  .venv/bin/python -m benchmarks.detect [--pairs 400000] [--batch 2000] [--runs 3]
      [--shards 2]

Builds a FAERS-like store (Zipf-distributed products and PTs over 8,000 products and 20,000
PTs, 1-4 products and 1-6 PTs per report, six strata) of about ``--pairs`` pairs, written as
counts in one batch (no case documents: detection reads counts only). Then:

- ``cold``: the incremental detector's first run (reads the scope whole, fits the prior, scores
  and evaluates every pair);
- after each of ``--runs`` batches of ``--batch`` new reports: the incremental detector's run,
  then a full rescoring (``DetectionConfig(incremental=False)``, same prior) over the same
  counts in a copy of the store (detectors sharing a store would read each other's writes
  as a reason to reload); their ratio;
- with ``--shards N``: the same batches with N shard detectors, each owning a hash range of
  products (run one after the other here: the figure is the per-shard run time).
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks.synthetic import simulate_rows
from pvsignal.detection import DetectionConfig, Detector
from pvsignal.scopes import ScopeConfig
from pvsignal.store import BatchWrite, open_store

PRODUCTS, EVENTS, STRATA = 8_000, 20_000, 6


def reports(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """The slots of n simulated reports (benchmarks.synthetic) and each report's stratum."""
    rows = simulate_rows(n, PRODUCTS, EVENTS, seed=int(rng.integers(2**62)))
    slots = (rows.report, rows.product, rows.event, rows.product_report, rows.product_slot)
    return (*slots, rows.event_report, rows.event_slot, rng.integers(0, STRATA, n))


def counts(rng: np.random.Generator, n: int) -> dict[str, dict]:
    """The count deltas of n new reports, keyed as the store's tables (scope 'all')."""
    pair_report, pair_product, pair_event, product_report, product, event_report, event, stratum = (
        reports(rng, n)
    )
    pairs = np.unique((pair_product.astype(np.int64) * EVENTS + pair_event) * n + pair_report)
    keys, a = np.unique(pairs // n, return_counts=True)
    by_product = np.unique(product_report.astype(np.int64) * PRODUCTS + product)
    by_event = np.unique(event_report.astype(np.int64) * EVENTS + event)
    margins = {}
    for name, distinct, size, label in (
        ("products", by_product, PRODUCTS, "P"),
        ("events", by_event, EVENTS, "E"),
    ):
        item, report = distinct % size, distinct // size
        key, n_key = np.unique(item * STRATA + stratum[report], return_counts=True)
        margins[name] = {
            ("all", f"S{k % STRATA}", f"{label}{k // STRATA}"): int(v)
            for k, v in zip(key.tolist(), n_key.tolist(), strict=True)
        }
    totals = np.bincount(stratum, minlength=STRATA)
    return {
        "pairs": {
            ("all", f"P{k // EVENTS}", f"E{k % EVENTS}"): int(v)
            for k, v in zip(keys.tolist(), a.tolist(), strict=True)
        },
        "products": margins["products"],
        "events": margins["events"],
        "totals": {("all", f"S{s}"): int(v) for s, v in enumerate(totals.tolist())},
    }


def write(store, deltas: dict[str, dict]) -> None:
    empty: dict = {}
    table = SimpleNamespace(
        **deltas,
        pair_periods=empty,
        product_periods=empty,
        event_periods=empty,
        total_periods=empty,
    )
    with store.batch() as session:
        session.write(BatchWrite(deltas=table))


def build(url: str, target_pairs: int, seed: int) -> int:
    """Fill the store with reports until it has about ``target_pairs`` pairs; the reports."""
    rng = np.random.default_rng(seed)
    store = open_store(url)
    made, pairs = 0, set()
    chunk = 100_000
    while len(pairs) < target_pairs:
        deltas = counts(rng, chunk)
        pairs.update(deltas["pairs"])
        write(store, deltas)
        made += chunk
    store.close()
    return made


def _copy(folder: Path, name: str):
    """A copy of the built store (its WAL checkpointed first), opened."""
    source = open_store(f"sqlite:///{folder}/detect.db")
    source._query("PRAGMA wal_checkpoint(TRUNCATE)")
    source.close()
    shutil.copy(folder / "detect.db", folder / f"{name}.db")
    return open_store(f"sqlite:///{folder}/{name}.db")


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shards", type=int, default=0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    url = f"sqlite:///{folder}/detect.db"
    print(f"python {platform.python_version()}, {platform.machine()}; SQLite stores in {folder}")
    began = time.perf_counter()
    made = build(url, args.pairs, args.seed)
    store = open_store(url)
    pairs = store._query("SELECT COUNT(*) FROM pair_counts")[0][0]
    print(f"built {made:,} reports, {pairs:,} pairs in {time.perf_counter() - began:.1f} s")

    scopes = ScopeConfig()
    incremental = Detector(store, scopes, DetectionConfig())
    began = time.perf_counter()
    incremental.update(["all"])
    cold = time.perf_counter() - began
    evaluated, known = incremental.evaluated["all"]
    print(
        f"cold run (load, fit, score and evaluate {known:,} pairs): {cold:.2f} s, "
        f"RSS {_rss_gb():.2f} GB"
    )

    copies = {name: _copy(folder, name) for name in ("reference", "shards")}
    reference = Detector(copies["reference"], scopes, DetectionConfig(incremental=False))
    reference._theta, reference._fitted_at = dict(incremental._theta), dict(incremental._fitted_at)
    shards = [
        Detector(copies["shards"], scopes, DetectionConfig(), shard=(k, args.shards))
        for k in range(args.shards)
    ]
    for shard in shards:
        shard._theta, shard._fitted_at = dict(incremental._theta), dict(incremental._fitted_at)
        shard.update(["all"])
    rng = np.random.default_rng(args.seed + 1)
    fast, full, sharded = [], [], []
    for run in range(args.runs):
        batch = counts(rng, args.batch)
        for each in (store, *copies.values()):
            write(each, batch)
        began = time.perf_counter()
        incremental.update(["all"])
        fast.append(time.perf_counter() - began)
        evaluated, known = incremental.evaluated["all"]
        times = []
        for shard in shards:
            began = time.perf_counter()
            shard.update(["all"])
            times.append(time.perf_counter() - began)
        if times:
            sharded.append(max(times))
        began = time.perf_counter()
        reference.update(["all"])
        full.append(time.perf_counter() - began)
        print(
            f"batch {run + 1} of {args.batch:,} reports: incremental {fast[-1]:.3f} s "
            f"({evaluated:,} of {known:,} pairs evaluated), full rescoring {full[-1]:.2f} s"
            + (f", slowest of {args.shards} shards {sharded[-1]:.3f} s" if shards else "")
        )
    ratio = statistics.median(full) / statistics.median(fast)
    print(
        f"median after a {args.batch:,}-report batch: incremental {statistics.median(fast):.3f} s, "
        f"full rescoring {statistics.median(full):.2f} s: {ratio:.1f}x faster; "
        f"peak RSS {_rss_gb():.2f} GB"
    )
    store.close()


if __name__ == "__main__":
    main()
