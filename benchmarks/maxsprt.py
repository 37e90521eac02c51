"""Speed of the exact Poisson MaxSPRT: critical values for T=100, M=1..6, against Monte Carlo.

Run:  .venv/bin/python -m benchmarks.maxsprt

Prints, per minimum number of events M, the wall-clock time of one critical value computed from
scratch (the cache cleared), and of one exact evaluation of alpha at that critical value; the
peer is the Monte Carlo estimate of the same alpha (what EmpiricalCalibration's
``computeCvPoisson`` does instead of the exact chain), on --streams simulated null streams in the
same run, with its standard error. Also the cost of one ``update`` of a running test.
"""

from __future__ import annotations

import os

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.detectors import best_of  # noqa: E402
from detectors import sequential  # noqa: E402


def monte_carlo_alpha(
    length: float, min_events: int, cv: float, streams: int, rng: np.random.Generator
) -> float:
    """Share of simulated null streams whose k-th event (k >= M) arrives by min(a_k, T)."""
    counts = np.arange(min_events, int(length + 10 * np.sqrt(length)) + 40)
    deadline = np.minimum(sequential.signal_thresholds(counts, cv), length)
    signals = 0
    for chunk in np.array_split(np.arange(streams), max(1, streams // 10_000)):
        arrivals = np.cumsum(rng.exponential(size=(chunk.size, counts[-1])), axis=1)
        signals += int((arrivals[:, min_events - 1 :] <= deadline).any(axis=1).sum())
    return signals / streams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--length", type=float, default=100.0, help="surveillance length T")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--streams", type=int, default=100_000, help="Monte Carlo streams")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(f"T={args.length:g}, alpha={args.alpha:g}; best of {args.repeat}")
    rng = np.random.default_rng(2026)
    for m in range(1, 7):

        def fresh(m: int = m) -> float:
            sequential._critical_value.cache_clear()
            return sequential.critical_value(args.length, m, args.alpha)

        cv_seconds, cv = best_of(args.repeat, fresh)
        exact_seconds, exact = best_of(
            args.repeat, lambda m=m, cv=cv: sequential.rejection_probability(args.length, m, cv)
        )
        mc_seconds, estimate = best_of(
            1, lambda m=m, cv=cv: monte_carlo_alpha(args.length, m, cv, args.streams, rng)
        )
        error = np.sqrt(estimate * (1 - estimate) / args.streams)
        print(
            f"M={m}: CV {cv:.10f} in {cv_seconds * 1e3:6.1f} ms; exact alpha {exact:.10f} "
            f"in {exact_seconds * 1e3:5.1f} ms; Monte Carlo ({args.streams:,} streams) "
            f"{estimate:.4f} ± {error:.4f} in {mc_seconds * 1e3:6.0f} ms "
            f"({mc_seconds / exact_seconds:.0f}x the exact evaluation)"
        )
    state = sequential.start(args.length, 4, args.alpha)
    began = time.perf_counter()
    for i in range(10_000):
        sequential.update(state, 0.01 * (i % 100), i % 2)
    per_update = (time.perf_counter() - began) / 10_000
    print(f"update of a running test (alpha spent included): {per_update * 1e6:.1f} us")


if __name__ == "__main__":
    main()
