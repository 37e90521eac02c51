"""`pvsignal analyze` on a FAERS-like case table, against the same whole job with vigipy.

Run:  .venv/bin/pip install -e ".[bench]" && .venv/bin/python -m benchmarks.analyze [--rows N]
      [--cases PATH]

``--cases PATH`` writes the case table there if it is not there already and keeps it, so that
later runs (of other code, say) read the same file.

The case table (one row per report x product x event, Zipf-distributed over 8,000 products and
20,000 PTs; benchmarks.synthetic) is written to a temporary CSV. Both jobs run in this process,
one after the other, from that file to a CSV of every pair's statistics:

- pvsignal: ``analyze`` (read, count distinct reports, fit the MGPS prior, score every measure
  with its bounds, write the export and fit.json);
- vigipy: pandas reads the file, distinct reports are counted with pandas (vigipy takes counts,
  not case rows), then vigipy's PRR, ROR, BCPNN and GPS (prior fitted) over the flattened
  table, and pandas writes the results.

The machine is shared: the ratio of the two, from the same run, carries the result.
"""

from __future__ import annotations

import os

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.detectors import best_of  # noqa: E402
from benchmarks.synthetic import case_table_rows, write_case_table  # noqa: E402
from pvsignal.analyze import AnalyzeRequest, analyze  # noqa: E402
from pvsignal.casetable import Columns  # noqa: E402


def pvsignal_job(cases: Path, out: Path) -> dict[str, float]:
    """The whole `pvsignal analyze` job; its own per-stage timings."""
    request = AnalyzeRequest(cases=cases, out=out, columns=Columns("id", "product", "event"))
    analyze(request)
    return json.loads(out.with_name(f"{out.stem}.fit.json").read_text())["timings_seconds"]


def vigipy_job(cases: Path, out: Path) -> None:
    """The same job with vigipy: read, count distinct reports, four measures, write."""
    from vigipy import bcpnn, gps, prr, ror
    from vigipy.utils.Container import DataContainer

    frame = pd.read_csv(cases, dtype=str, keep_default_na=False)
    a = frame.drop_duplicates().groupby(["product", "event"]).size()
    n_product = frame[["id", "product"]].drop_duplicates().groupby("product").size()
    n_event = frame[["id", "event"]].drop_duplicates().groupby("event").size()
    products = a.index.get_level_values(0)
    events = a.index.get_level_values(1)
    data = pd.DataFrame(
        {
            "events": a.to_numpy(dtype=float),
            "product_aes": n_product.reindex(products).to_numpy(dtype=float),
            "count_across_brands": n_event.reindex(events).to_numpy(dtype=float),
            "ae_name": np.asarray(events),
            "product_name": np.asarray(products),
        }
    )
    container = DataContainer(data=data, N=int(frame["id"].nunique()))
    common = {"min_events": 1, "decision_metric": "signals", "decision_thres": 0.05}
    results = [
        prr(container, **common),
        ror(container, **common),
        bcpnn(container, MC=False, **common),
        gps(container, **common),
    ]
    pd.concat([result.all_signals for result in results], axis=1).to_csv(out)


def _load() -> str:
    """The 1-minute load average: the machine is shared, and every figure carries it."""
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-vigipy", action="store_true")
    parser.add_argument("--cases", type=Path, help="case table CSV: written if absent, then kept")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="pvsignal-bench-analyze-") as folder:
        cases = args.cases or Path(folder) / "cases.csv"
        began = time.perf_counter()
        if cases.exists():
            print(f"case table: {cases}, as written before")
        else:
            rows = write_case_table(case_table_rows(args.rows), cases)
            print(f"case table: {rows:,} rows written in {time.perf_counter() - began:.1f} s")
        best, stages = best_of(args.repeat, lambda: pvsignal_job(cases, Path(folder) / "pairs.csv"))
        shown = ", ".join(f"{name} {seconds:.2f}" for name, seconds in stages.items())
        print(
            f"pvsignal analyze: {best:.2f} s (best of {args.repeat}; last run: {shown}; "
            f"load average {_load()})"
        )
        if args.no_vigipy:
            return
        began = time.perf_counter()
        vigipy_job(cases, Path(folder) / "vigipy.csv")
        seconds = time.perf_counter() - began
        print(
            f"vigipy, same job: {seconds:.2f} s -> pvsignal is {seconds / best:.1f}x faster "
            f"(target >= 20x; load average {_load()})"
        )


if __name__ == "__main__":
    main()
