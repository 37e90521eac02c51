"""`pvsignal analyze`: a case table in, every pair's statistics and the MGPS fit out."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.mgps import Hyperparameters
from detectors.mgps_fit import Squash, fit_hyperparameters, negative_log_likelihood
from pvsignal.casetable import CodedPairs, Columns, count_pairs, read_case_table
from pvsignal.errors import InputError
from pvsignal.export import PairExport
from pvsignal.priors import ALL, PriorChoice, decide
from pvsignal.scoring import ScoringConfig


@dataclass(frozen=True)
class AnalyzeRequest:
    """Everything `pvsignal analyze` was asked to do."""

    cases: Path
    out: Path
    columns: Columns
    sep: str = ","
    theta: Hyperparameters | None = None
    squash: bool = False
    config: ScoringConfig = field(default_factory=ScoringConfig)


@dataclass(frozen=True)
class AnalyzeSummary:
    """What was read, counted, fitted and written."""

    rows: int
    rejected: int
    reports: int
    pairs: int
    signals: dict[str, int]
    out: Path
    fit_path: Path
    rejects_path: Path | None
    warnings: tuple[str, ...] = ()


def parse_theta(text: str) -> Hyperparameters:
    """Parse ``a1,b1,a2,b2,p`` into checked hyperparameters, naming what is wrong."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 5:
        raise InputError(
            f"--theta must be five comma-separated numbers a1,b1,a2,b2,p; "
            f"got {len(parts)} in {text!r}"
        )
    values = []
    for name, part in zip(Hyperparameters._fields, parts, strict=True):
        try:
            values.append(float(part))
        except ValueError:
            raise InputError(f"--theta {name} is not a number: {part!r}") from None
    try:
        return Hyperparameters.checked(*values)
    except ValueError as error:
        raise InputError(f"--theta: {error}") from None


def fit_path_for(out: Path) -> Path:
    """``PAIRS.csv`` -> ``PAIRS.fit.json`` next to it."""
    return out.with_name(f"{out.stem}.fit.json")


def rejects_path_for(out: Path) -> Path:
    return out.with_name(f"{out.stem}.rejects.csv")


def analyze(request: AnalyzeRequest) -> AnalyzeSummary:
    """Read, count, fit (unless theta is given), score and write; return a summary."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    table = read_case_table(request.cases, request.columns, sep=request.sep)
    lap("read")
    pairs = count_pairs(table)
    lap("count")
    fit_report = _fit(pairs, request)
    theta = Hyperparameters(**fit_report["theta"])
    lap("fit")
    request.out.parent.mkdir(parents=True, exist_ok=True)
    with request.out.open("wb") as sink:  # scored a chunk at a time as it is written
        signals = PairExport(pairs, theta, request.config).write_csv(sink)
    rejects_path = None
    if not table.rejects.empty:
        rejects_path = rejects_path_for(request.out)
        table.rejects.to_csv(rejects_path, index=False)
    lap("score_and_write")
    document = {
        **fit_report,
        "counts": {
            "rows_read": len(table.rows) + len(table.rejects),
            "rows_rejected": len(table.rejects),
            "reports": pairs.reports,
            "pairs": int(pairs.counts.a.size),
            "strata": pairs.strata,
            "products": _distinct_labels(pairs.products, pairs.product_code),
            "events": _distinct_labels(pairs.events, pairs.event_code),
        },
        "signals": signals,
        "config": _config_report(request.config),
        "timings_seconds": timings,
    }
    fit_path = fit_path_for(request.out)
    fit_path.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    return AnalyzeSummary(
        rows=len(table.rows) + len(table.rejects),
        rejected=len(table.rejects),
        reports=pairs.reports,
        pairs=int(pairs.counts.a.size),
        signals=signals,
        out=request.out,
        fit_path=fit_path,
        rejects_path=rejects_path,
        warnings=tuple(fit_report.get("warnings", ())),
    )


def _distinct_labels(labels: np.ndarray, code: np.ndarray) -> int:
    """How many distinct labels the pairs name (codes index ``labels``: a count per code
    finds the named ones in one pass, where np.unique would hash every pair's code)."""
    named = np.bincount(code, minlength=len(labels)) > 0
    return int(pd.unique(labels[named]).size)


def _fit(pairs: CodedPairs, request: AnalyzeRequest) -> dict[str, object]:
    """The table's prior, chosen as a store's scope's is (pvsignal.priors.decide): given, or
    fitted (a case table has no parent scope to borrow from)."""
    a, e = pairs.counts.a, pairs.counts.expected
    if request.theta is not None:
        choice = PriorChoice(source="given", theta=request.theta._asdict())
        decision = decide(ALL, choice, pairs=int(a.size), own=None, parent=None)
        return {
            **decision.report,
            "neg_log_likelihood": negative_log_likelihood(request.theta, a, e),
        }
    fit = fit_hyperparameters(a, e, squashing=Squash() if request.squash else None)
    own = (fit, {"theta_source": "fitted", **fit.report()})
    return decide(ALL, PriorChoice(), pairs=int(a.size), own=own, parent=None).report


def _config_report(config: ScoringConfig) -> dict[str, object]:
    return asdict(config)


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
