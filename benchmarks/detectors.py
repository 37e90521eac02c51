"""Speed of the detectors: scoring and fitting over a million pairs, and CAERS, against vigipy.

Run:  .venv/bin/pip install -e ".[bench]" && .venv/bin/python -m benchmarks.detectors

Prints figures (best of --repeat runs, wall clock, one thread) and ratios against vigipy on the
same table in the same run; the machines are shared and noisy, so the ratios carry the result.
"""

from __future__ import annotations

import os

# One core: pin the BLAS pools before numpy loads (the vectorised code is single-threaded anyway).
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.synthetic import simulate_pairs  # noqa: E402
from detectors.mgps import Hyperparameters  # noqa: E402
from detectors.mgps_fit import Squash, fit_hyperparameters  # noqa: E402
from pvsignal.casetable import Columns, count_pairs, read_case_table  # noqa: E402
from pvsignal.scoring import PairCounts, score  # noqa: E402

# The committed CAERS excerpt (tests/data/README.md); pandas reads the gzip file as it is.
CAERS = Path(__file__).resolve().parents[1] / "tests" / "data" / "caers" / "caers.csv.gz"


def best_of(repeat: int, action: Callable[[], object]) -> tuple[float, object]:
    """Smallest wall-clock time of ``repeat`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - began)
    return min(times), result


def vigipy_container(counts: PairCounts):
    """The same pairs as a vigipy DataContainer (flattened table, no dense contingency)."""
    from vigipy.utils.Container import DataContainer

    size = counts.a.size
    data = pd.DataFrame(
        {
            "events": counts.a,
            "product_aes": counts.n_product,
            "count_across_brands": counts.n_event,
            "ae_name": np.arange(size).astype(str),
            "product_name": np.arange(size).astype(str),
        }
    )
    return DataContainer(data=data, N=int(np.max(counts.n_total)))


def vigipy_score(container, theta: Hyperparameters) -> None:
    """vigipy's PRR, ROR, BCPNN and GPS (prior given) over every pair: the same measures."""
    from vigipy import bcpnn, gps, prr, ror

    common = {"min_events": 1, "decision_metric": "signals", "decision_thres": 0.05}
    prr(container, **common)
    ror(container, **common)
    bcpnn(container, MC=False, **common)
    gps(container, prior_param=list(theta), **common)


def vigipy_fit(container) -> object:
    from vigipy import gps

    return gps(container, min_events=1, decision_metric="signals", decision_thres=0.05)


def caers_pairs() -> PairCounts:
    table = read_case_table(CAERS, Columns(id="id", product="var1", event="var2"))
    return count_pairs(table).counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-vigipy", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, numpy {np.__version__}"
    )

    pairs = simulate_pairs(args.pairs, seed=0)
    n = pairs.a.size
    print(
        f"\nsimulated table: {n:,} pairs, {np.mean(pairs.a == 1):.0%} with a = 1, "
        f"max a = {int(pairs.a.max()):,}, {int(pairs.n_total):,} reports"
    )

    fit_seconds, fit = best_of(args.repeat, lambda: fit_hyperparameters(pairs.a, pairs.expected))
    print(
        f"fit theta, exact ({fit.points:,} distinct points): {fit_seconds:.2f} s  "
        f"-logL {fit.neg_log_likelihood:.3f}, starts agreeing {fit.starts_agreeing}/"
        f"{fit.starts}, on bound {list(fit.on_bound) or 'none'}"
    )
    squash_seconds, squashed = best_of(
        args.repeat, lambda: fit_hyperparameters(pairs.a, pairs.expected, squashing=Squash())
    )
    report = squashed.squashing
    print(
        f"fit theta, squashed ({report.points_after:,} points): {squash_seconds:.2f} s  "
        f"-logL on all pairs {report.neg_log_likelihood_full:.3f} "
        f"(+{report.neg_log_likelihood_full - fit.neg_log_likelihood:.4f} vs exact)"
    )

    theta = fit.theta
    score_seconds, _ = best_of(args.repeat, lambda: score(pairs, theta))
    print(
        f"score all measures and bounds, theta given: {score_seconds:.2f} s "
        f"({n / score_seconds / 1e6:.2f} M pairs/s)"
    )

    caers = caers_pairs()
    caers_seconds, caers_fit = best_of(
        args.repeat, lambda: fit_hyperparameters(caers.a, caers.expected)
    )
    print(
        f"\nCAERS ({caers.a.size:,} pairs): fit {caers_seconds:.3f} s, "
        f"-logL {caers_fit.neg_log_likelihood:.4f} (openEBGM publishes 4162.456)"
    )

    if args.no_vigipy:
        return
    container = vigipy_container(pairs)
    vigipy_seconds, _ = best_of(1, lambda: vigipy_score(container, theta))
    print(
        f"\nvigipy, same {n:,} pairs, same measures, prior given: {vigipy_seconds:.2f} s "
        f"-> pvsignal is {vigipy_seconds / score_seconds:.1f}x faster"
    )
    caers_container = vigipy_container(caers)
    vigipy_fit_seconds, _ = best_of(1, lambda: vigipy_fit(caers_container))
    print(
        f"vigipy GPS fit on CAERS: {vigipy_fit_seconds:.2f} s -> pvsignal fit is "
        f"{vigipy_fit_seconds / caers_seconds:.1f}x faster"
    )


if __name__ == "__main__":
    main()
