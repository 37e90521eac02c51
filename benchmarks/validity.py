"""Planted-signal recovery: how often, how falsely and how early each measure flags.

Run:  PYTHONPATH=. .venv/bin/python -m benchmarks.validity [--checkpoints 40]

For each scope size (500, 5,000 and 50,000 simulated reports; several seeds for the small
sizes so that enough signals are planted) the simulated stream (``pvsignal simulate``: its
planted signals are the truth) is counted in arrival order by the real ingest (follow-ups,
nullifications, duplicates) into a throwaway SQLite store and, at evenly spaced checkpoints,
every pair is scored at once (``pvsignal.signals.pair_table`` + ``pvsignal.scoring.score``,
the detector's own functions). Per measure it prints:

- found: the share of planted signals flagged at the end of the stream;
- false /1k pairs: flagged pairs at the end that are neither planted nor one of the
  simulator's characteristic product-PT associations (real by design), per 1,000 pairs;
- median a: the pair's report count at the first checkpoint that flagged it (found signals;
  an upper bound, as the count is seen at checkpoints only).

MGPS is scored twice: ``ebgm (own)`` with the scope's own maximum-likelihood fit, and
``ebgm (auto)`` with the prior pvsignal.priors.decide chooses for a scope whose parent has
a national database's prior (openEBGM's published CAERS fit, given): the own fit when
interior, else the parent's. Each stream's last decision is printed.
"""

from __future__ import annotations

import os

# One core: pin the BLAS pools before numpy loads (L-BFGS-B's calls contend with them: a fit
# is over ten times slower on this 2-core machine without).
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from detectors.mgps_fit import fit_hyperparameters  # noqa: E402
from pvsignal.ingest import Ingestor  # noqa: E402
from pvsignal.priors import (  # noqa: E402
    CAERS_THETA,
    PriorChoice,
    PriorDecision,
    decide,
    needs_own_fit,
)
from pvsignal.readers import RawRecord  # noqa: E402
from pvsignal.scopes import ScopeConfig  # noqa: E402
from pvsignal.scoring import score  # noqa: E402
from pvsignal.signals import pair_table  # noqa: E402
from pvsignal.simulate import Simulation, SimulationConfig, simulate  # noqa: E402
from pvsignal.store import open_store  # noqa: E402

SIZES = {500: range(1, 13), 5_000: range(1, 4), 50_000: range(1, 2)}  # reports: seeds
NATIONAL = CAERS_THETA  # the national prior the simulated scope's parent has
MEASURES = ("prr", "ror", "ic", "ebgm (own)", "ebgm (auto)")


@dataclass
class Tally:
    planted: int = 0
    found: int = 0
    false_alerts: int = 0
    pairs: int = 0
    detected_at: list[float] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.planted += other.planted
        self.found += other.found
        self.false_alerts += other.false_alerts
        self.pairs += other.pairs
        self.detected_at += other.detected_at


def _flags(counts, own, decision: PriorDecision) -> dict[str, np.ndarray]:
    """Every measure's flags at one checkpoint (the frequentist ones do not need a prior)."""
    with_own = score(counts, own.theta)
    flags = {m: with_own[f"signal_{m}"] for m in ("prr", "ror", "ic")}
    flags["ebgm (own)"] = with_own["signal_ebgm"]
    auto = with_own if decision.source == "fitted" else score(counts, decision.theta)
    flags["ebgm (auto)"] = auto["signal_ebgm"]
    return flags


def _national() -> PriorDecision:
    choice = PriorChoice(source="given", theta=NATIONAL._asdict())
    return decide("all", choice, pairs=0, own=None, parent=None)


def _stream(simulation: Simulation, checkpoints: int) -> tuple[dict[str, Tally], str]:
    planted = {(s.product_id, s.pt) for s in simulation.signals}
    known = simulation.characteristic
    lines = list(simulation.lines())
    first: dict[str, dict[tuple[str, str], float]] = {m: {} for m in MEASURES}
    bounds = np.linspace(0, len(lines), checkpoints + 1).astype(int)
    with tempfile.TemporaryDirectory(prefix="pvsignal-validity-") as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'store.db'}")
        store.save_products(simulation.products)
        ingestor = Ingestor(store, ScopeConfig())
        for lo, hi in itertools.pairwise(bounds):
            ingestor.apply([RawRecord(f"sim:{i}", lines[i]) for i in range(lo, hi)])
            pairs = pair_table(store.scope_counts("all", ordered=False))
            counts = pairs.counts
            own = fit_hyperparameters(counts.a, counts.expected)
            decision = decide(
                "pilot",
                PriorChoice(),
                pairs=int(counts.a.size),
                own=(own, own.report()) if needs_own_fit(PriorChoice(), counts.a.size) else None,
                parent=_national,
            )
            flags = _flags(counts, own, decision)
            labels = list(zip(pairs.product.tolist(), pairs.event.tolist(), strict=True))
            for measure, flagged in flags.items():
                seen = first[measure]
                for i in np.flatnonzero(flagged):
                    if labels[i] in planted and labels[i] not in seen:
                        seen[labels[i]] = float(counts.a[i])
        store.close()
    tallies = {}
    for measure, flagged in flags.items():
        at_end = {labels[i] for i in np.flatnonzero(flagged)}
        found = at_end & planted
        tallies[measure] = Tally(
            planted=len(planted),
            found=len(found),
            false_alerts=len(at_end - planted - known),
            pairs=len(labels),
            detected_at=[first[measure][pair] for pair in found],
        )
    return tallies, f"{decision.report['decision']} ({decision.report['reason']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", type=int, default=40)
    args = parser.parse_args()
    began = time.perf_counter()
    rows = []
    for size, seeds in SIZES.items():
        total = {m: Tally() for m in MEASURES}
        decisions = []
        for seed in seeds:
            tallies, decision = _stream(
                simulate(SimulationConfig(reports=size, seed=seed)), args.checkpoints
            )
            for measure, tally in tallies.items():
                total[measure].add(tally)
            decisions.append(decision)
        print(f"{size:,} reports x {len(seeds)} streams; last prior: {decisions[-1]}", flush=True)
        rows += [(size, len(seeds), measure, total[measure]) for measure in MEASURES]
    print()
    print(
        "| reports | measure | planted | found | false alerts /1k pairs | median a at first flag |"
    )
    print("|---|---|---|---|---|---|")
    for size, streams, measure, t in rows:
        median = statistics.median(t.detected_at) if t.detected_at else float("nan")
        print(
            f"| {size:,} (x{streams}) | {measure} | {t.planted} | {t.found / t.planted:.0%} | "
            f"{1000 * t.false_alerts / t.pairs:.1f} | {median:g} |"
        )
    print(f"\n{time.perf_counter() - began:.0f} s, {args.checkpoints} checkpoints per stream")


if __name__ == "__main__":
    main()
