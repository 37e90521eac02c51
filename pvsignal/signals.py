"""Statistics of a scope computed from the store: the same columns as `pvsignal analyze`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from detectors.mgps import Hyperparameters
from detectors.mgps_fit import fit_hyperparameters
from detectors.table import expected
from pvsignal.casetable import PairTable, stratified_expectation
from pvsignal.errors import InputError
from pvsignal.scoring import PairCounts, ScoringConfig, score
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
    products, product_stratum, product_n = counts.product_rows
    events, event_stratum, event_n = counts.event_rows
    total_stratum, total_n = counts.totals
    strata = pd.Index(total_stratum)
    product_index = pd.Index(pd.unique(products))
    event_index = pd.Index(pd.unique(events))
    per_product = _dense(
        product_index.get_indexer(products),
        strata.get_indexer(product_stratum),
        product_n,
        (len(product_index), len(strata)),
    )
    per_event = _dense(
        event_index.get_indexer(events),
        strata.get_indexer(event_stratum),
        event_n,
        (len(event_index), len(strata)),
    )
    pair_product = product_index.get_indexer(counts.pair_product)
    pair_event = event_index.get_indexer(counts.pair_event)
    n_product = per_product.sum(axis=1)[pair_product]
    n_event = per_event.sum(axis=1)[pair_event]
    n_total = float(total_n.sum())
    if stratify and len(strata) > 1:
        e = stratified_expectation(per_product, per_event, total_n, pair_product, pair_event)
    else:
        e = expected(n_product, n_event, n_total)
    return PairTable(
        product=counts.pair_product,
        event=counts.pair_event,
        counts=PairCounts(
            a=counts.a,
            n_product=n_product,
            n_event=n_event,
            n_total=np.float64(n_total),
            expected=e,
        ),
        reports=int(n_total),
        strata=len(strata),
    )


def _dense(
    rows: np.ndarray, columns: np.ndarray, values: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    flat = rows.astype(np.int64) * shape[1] + columns
    return np.bincount(flat, weights=values, minlength=shape[0] * shape[1]).reshape(shape)


@dataclass(frozen=True)
class ScopePrior:
    """Every pair of a scope with its counts, and the MGPS prior to score them with."""

    scope: str
    pairs: PairTable
    theta: Hyperparameters
    fit: dict[str, Any]


def scope_prior(
    store: SqlStore,
    scope: str,
    *,
    theta: Hyperparameters | None = None,
    stratify: bool = True,
    record_fit: bool = True,
) -> ScopePrior:
    """The scope's pair counts; the MGPS prior fitted (and recorded) unless theta is given."""
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
    return ScopePrior(scope, pairs, theta, report)


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
    prior = scope_prior(store, scope, theta=theta, stratify=stratify, record_fit=record_fit)
    statistics = score(prior.pairs.counts, prior.theta, config or ScoringConfig())
    return ScopeStatistics(scope, prior.pairs, statistics, prior.theta, prior.fit)
