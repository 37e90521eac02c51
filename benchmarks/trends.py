"""Trend and case-series latencies at N simulated reports (SQLite).

Run:  PYTHONPATH=. .venv/bin/python -m benchmarks.trends [--reports 20000]
At 1M reports (the issue's target: one pair's 5-year monthly trend under 50 ms), run with
``--reports 1000000 --end 2028-12-31``: the import takes ~2 minutes per 1M on one core.

Prints the median of repeated calls of: the store read plus scoring of one pair's monthly
trend (the busiest pair), a first page (100) of its case series, and one case's detail.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from pvsignal.case_access import CaseAccess, CaseQuery, Level, case_series
from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.signals import scope_statistics
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.store import open_store
from pvsignal.trends import pair_trend


def _median_ms(call, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2028, 12, 31))
    args = parser.parse_args()
    simulation = simulate(
        SimulationConfig(reports=args.reports, seed=1, start=dt.date(2024, 1, 1), end=args.end)
    )
    with tempfile.TemporaryDirectory(prefix="pvsignal-trends-") as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'store.db'}")
        store.save_products(simulation.products)
        ingestor = Ingestor(store, ScopeConfig())
        began = time.perf_counter()
        batch: list[RawRecord] = []
        for i, line in enumerate(simulation.lines()):
            batch.append(RawRecord(f"sim:{i}", line))
            if len(batch) == 5000:
                ingestor.apply(batch)
                batch = []
        if batch:
            ingestor.apply(batch)
        print(f"imported {args.reports:,} reports in {time.perf_counter() - began:.1f} s")
        scored = scope_statistics(store, "all")
        theta = scored.theta
        busiest = int(scored.pairs.counts.a.argmax())
        pair = (str(scored.pairs.product[busiest]), str(scored.pairs.event[busiest]))
        trend = pair_trend(store.period_counts("all", *pair), period="month", theta=theta)
        print(
            f"busiest pair {pair}: a = {int(trend.statistics['a'][-1])}, {len(trend.labels)} months"
        )
        ms = _median_ms(
            lambda: pair_trend(store.period_counts("all", *pair), period="month", theta=theta)
        )
        print(f"trend (store read + scoring), monthly: {ms:.1f} ms")
        access = CaseAccess(Level.full, b"k")
        query = CaseQuery("all", *pair)
        ms = _median_ms(lambda: case_series(store, access, query, limit=100), repeat=5)
        print(f"case series, first page of 100 (pair), regulator: {ms:.1f} ms")
        mah = CaseAccess(Level.restricted, b"k", products=frozenset({pair[0]}))
        ms = _median_ms(
            lambda: [mah.mask(c) for c in case_series(store, mah, CaseQuery("all"))[0]], repeat=5
        )
        print(f"case series, first page of 100 (all of one MAH product), masked: {ms:.1f} ms")
        first = case_series(store, access, CaseQuery("all"), limit=1)[0][0]
        ms = _median_ms(
            lambda: (
                store.stored_case(first.owner, first.case_id),
                store.case_versions(first.owner, first.case_id),
            )
        )
        print(f"case detail with version history: {ms:.2f} ms")
        store.close()


if __name__ == "__main__":
    main()
