"""The cost of the terminology mapping step (pvsignal.terminology.events) in counting.

Run:  .venv/bin/python -m benchmarks.terms [--reports 100000]

Over the reports of a simulated stream (parsed once), the mapping step's time per report:
the old counting key (the reaction's ``event_key`` as sent) as the peer; normalised labels
without MedDRA; resolution through a MedDRA dictionary (the synthetic tree of
tests/support/meddra.py with the simulator's PT names added as PTs, so that terms resolve) at
PT and SOC level; and, for scale, the whole ``Ingestor.contribution`` of a report. Then the
bulk import of the same lines into SQLite, with the mapping step and with the peer's key
swapped in (same process, same run): their ratio is what the step costs an import.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pvsignal.ingest import BatchCollector, Ingestor, batches
from pvsignal.readers import RawRecord
from pvsignal.reports import Report
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate import GENERAL_PTS, KIND_PTS, SimulationConfig, simulate
from pvsignal.store import open_store
from pvsignal.terminology.dictionary import Dictionary, Level, Paths
from pvsignal.terminology.events import EventTerms
from pvsignal.terminology.meddra import read_release
from pvsignal.terminology.normalise import TermLabels
from tests.support.meddra import write_release


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


def dictionary_with(names: list[str], folder: Path) -> Dictionary:
    """The synthetic release, with the simulator's PT names added as PTs of one HLT."""
    release = read_release(write_release(folder))
    for i, name in enumerate(names):
        code = f"{95000000 + i}"
        release.pts[code] = (name, "90000004")
        release.llts[code] = (name, code, True)
        release.paths.append((code, "90000205", "90000104", "90000004", True))
    return Dictionary.of([release])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=100_000)
    args = parser.parse_args()
    config = SimulationConfig(
        reports=args.reports, seed=1, start=dt.date(2024, 1, 1), end=dt.date(2025, 12, 31)
    )
    lines = list(simulate(config).lines())
    reports = [Report.model_validate_json(line) for line in lines]
    names = sorted({*GENERAL_PTS, *(pt for pts in KIND_PTS.values() for pt in pts)})
    with tempfile.TemporaryDirectory() as folder:
        dictionary = dictionary_with(names, Path(folder) / "meddra")
        steps = {
            "old key (event_key as sent)": lambda: [
                tuple(dict.fromkeys([r.event_key for r in report.reactions])) for report in reports
            ],
            "labels, no MedDRA": _mapping(EventTerms(TermLabels()), reports, Level.pt),
            "MedDRA, pt level": _mapping(EventTerms(TermLabels(), dictionary), reports, Level.pt),
            "MedDRA, soc level": _mapping(EventTerms(TermLabels(), dictionary), reports, Level.soc),
        }
        store = open_store(f"sqlite:///{folder}/contribution.db")
        engine = Ingestor(store, ScopeConfig())
        steps["whole contribution (no MedDRA)"] = lambda: [engine.contribution(r) for r in reports]
        print(f"{len(reports)} reports, {sum(len(r.reactions) for r in reports)} reactions")
        print("step | µs per report (best of 3)")
        for name, work in steps.items():
            print(f"{name} | {best_of(3, work) / len(reports) * 1e6:.2f}")
        store.close()
        # Alternated, best of 3 each: the machine is shared.
        with_step, peer = [], []
        for run in range(3):
            with_step.append(_import(lines, Path(folder) / f"with{run}.db", peer=False))
            peer.append(_import(lines, Path(folder) / f"peer{run}.db", peer=True))
        print(
            f"bulk import into SQLite (best of 3): with the mapping step {min(with_step):.2f} s, "
            f"old key {min(peer):.2f} s, ratio {min(with_step) / min(peer):.3f}"
        )


def _mapping(terms: EventTerms, reports: list[Report], level: Level) -> Callable[[], object]:
    return lambda: [terms.keys(report.reactions, level, Paths.primary) for report in reports]


def _import(lines: list[bytes], path: Path, *, peer: bool) -> float:
    store = open_store(f"sqlite:///{path}")
    engine = Ingestor(store, ScopeConfig(), batch_size=50_000)
    if peer:
        engine.terms.keys = lambda reactions, *level: tuple(  # type: ignore[method-assign]
            dict.fromkeys([r.event_key for r in reactions])
        )
    records = [RawRecord(f"l:{i}", line) for i, line in enumerate(lines)]
    collector = BatchCollector()  # as `pvsignal ingest` runs: no collection inside a batch
    began = time.perf_counter()
    for batch in batches(records, 50_000):
        engine.apply(batch)
        collector.after_batch()
    seconds = time.perf_counter() - began
    collector.close()
    store.close()
    return seconds


if __name__ == "__main__":
    main()
