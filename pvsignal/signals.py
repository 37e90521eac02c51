"""Statistics of a scope computed from the store: the same columns as `pvsignal analyze`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.mgps import Hyperparameters
from detectors.mgps_fit import fit_hyperparameters
from pvsignal.casetable import PairTable
from pvsignal.columns import ScopeColumns
from pvsignal.errors import InputError
from pvsignal.scoring import ScoringConfig, score
from pvsignal.store import ScopeCounts, SqlStore


@dataclass(frozen=True)
class ScopeStatistics:
    """Every pair of a scope with its statistics, the prior used and how it was obtained."""

    scope: str
    pairs: PairTable
    statistics: dict[str, np.ndarray]
    theta: Hyperparameters
    fit: dict[str, Any]


def pair_table(counts: ScopeCounts, *, stratify: bool = True) -> PairTable:
    """Assemble labelled pair counts, margins and (stratified) expected counts."""
    return ScopeColumns.load(counts).table(stratify=stratify)


def scope_statistics(
    store: SqlStore,
    scope: str,
    *,
    theta: Hyperparameters | None = None,
    config: ScoringConfig | None = None,
    stratify: bool = True,
    record_fit: bool = True,
) -> ScopeStatistics:
    """Score every pair of the scope; fit (and record) the MGPS prior unless theta is given."""
    counts = store.scope_counts(scope)
    if counts.a.size == 0:
        known = ", ".join(store.scopes()) or "none yet"
        raise InputError(f"scope {scope!r} has no counted pairs (scopes with data: {known})")
    pairs = pair_table(counts, stratify=stratify)
    if theta is None:
        fit = fit_hyperparameters(pairs.counts.a, pairs.counts.expected)
        report = {"theta_source": "fitted", **fit.report()}
        theta = fit.theta
        if record_fit:
            store.record_fit(scope, report)
    else:
        report = {"theta_source": "given", "theta": theta._asdict()}
    statistics = score(pairs.counts, theta, config or ScoringConfig())
    return ScopeStatistics(scope, pairs, statistics, theta, report)
