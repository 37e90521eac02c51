"""Statistics of a scope computed from the store: the same columns as `pvsignal analyze`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.mgps import Hyperparameters
from detectors.mgps_fit import fit_hyperparameters
from pvsignal.casetable import CodedPairs, PairTable
from pvsignal.columns import ScopeColumns
from pvsignal.errors import InputError
from pvsignal.priors import PriorDecision, decide, needs_own_fit, recorded_under
from pvsignal.scopes import ScopeConfig
from pvsignal.scoring import PairCounts, ScoringConfig, score
from pvsignal.store import CodedCounts, ScopeCounts, SqlStore


@dataclass(frozen=True)
class ScopeStatistics:
    """Every pair of a scope with its statistics, the prior used and how it was obtained."""

    scope: str
    pairs: CodedPairs
    statistics: dict[str, np.ndarray]
    theta: Hyperparameters
    fit: dict[str, Any]


def pair_table(counts: ScopeCounts, *, stratify: bool = True) -> PairTable:
    """Assemble labelled pair counts, margins and (stratified) expected counts."""
    return ScopeColumns.load(counts).table(stratify=stratify)


def coded_pairs(counts: CodedCounts, *, stratify: bool = True) -> CodedPairs:
    """:func:`pair_table` of counts read by label code (``SqlStore.coded_counts``)."""
    columns = ScopeColumns()
    columns.products.encode(counts.products)  # codes 0.. in the counts' order, then margins'
    columns.events.encode(counts.events)
    columns.apply(ScopeCounts(_NONE, _NONE, np.empty(0), *_margins(counts)))
    n_product, n_event, n_total, e, strata = columns.expectation(
        counts.product_code, counts.event_code, stratify
    )
    return CodedPairs(
        counts.products,
        counts.events,
        counts.product_code,
        counts.event_code,
        PairCounts(counts.a, n_product, n_event, np.float64(n_total), e),
        int(n_total),
        strata,
    )


_NONE = np.empty(0, dtype=object)


def _margins(counts: CodedCounts) -> tuple[tuple[np.ndarray, ...], ...]:
    return counts.product_rows, counts.event_rows, counts.totals


@dataclass(frozen=True)
class ScopePrior:
    """Every pair of a scope with its counts, and the MGPS prior to score them with."""

    scope: str
    pairs: CodedPairs
    theta: Hyperparameters
    fit: dict[str, Any]


def prepared_scope(
    store: SqlStore,
    scope: str,
    *,
    theta: Hyperparameters | None = None,
    record_fit: bool = True,
    scopes: ScopeConfig | None = None,
    recorded: bool = False,
) -> ScopePrior:
    """The scope's pair counts and the MGPS prior its configuration chooses (fitted, borrowed
    or given: :func:`scope_prior`), or ``theta`` when given; the choice recorded.

    With ``recorded``, the scope's last recorded prior is taken when it was decided under
    the scope's configured choice (what the detector and the API score with; the detector
    refits as cases accrue), so that no fit is made again. Stratification is the
    configuration's (default: on)."""
    scopes = scopes or ScopeConfig()
    pairs = _scope_pairs(store, scope, scopes.stratify)
    if pairs is None:
        known = ", ".join(store.scopes()) or "none yet"
        raise InputError(f"scope {scope!r} has no counted pairs (scopes with data: {known})")
    last = store.fits(scope, last=1) if theta is None and recorded else []
    if last and recorded_under(last[-1], scopes.prior_of(scope)):
        report = last[-1]
        theta = Hyperparameters(**report["theta"])
    elif theta is None:
        decision = scope_prior(store, scopes, scope, pairs)
        report = {"cases": pairs.reports, **decision.report}
        theta = decision.theta
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
    record_fit: bool = True,
    scopes: ScopeConfig | None = None,
) -> ScopeStatistics:
    """Score every pair of the scope under the prior :func:`prepared_scope` chooses."""
    prior = prepared_scope(store, scope, theta=theta, record_fit=record_fit, scopes=scopes)
    statistics = score(prior.pairs.counts, prior.theta, config or ScoringConfig())
    return ScopeStatistics(scope, prior.pairs, statistics, prior.theta, prior.fit)


def scope_prior(
    store: SqlStore, scopes: ScopeConfig, scope: str, pairs: PairTable | CodedPairs
) -> PriorDecision:
    """The scope's prior as its configuration chooses, fitting what the choice needs: its
    own fit and, when it borrows, its parent's prior (decided the same way, recursively)."""
    choice = scopes.prior_of(scope)
    parent_name = choice.parent_of(scope)
    parent = None
    if parent_name is not None and choice.source in ("auto", "borrow"):
        parent_pairs = _scope_pairs(store, parent_name, scopes.stratify)
        if parent_pairs is not None:
            parent = functools.partial(scope_prior, store, scopes, parent_name, parent_pairs)
    size = int(pairs.counts.a.size)
    own = None
    if needs_own_fit(choice, size, parent_available=parent is not None):
        fit = fit_hyperparameters(pairs.counts.a, pairs.counts.expected)
        own = (fit, {"theta_source": "fitted", **fit.report()})
    return decide(scope, choice, pairs=size, own=own, parent=parent)


def _scope_pairs(store: SqlStore, scope: str, stratify: bool) -> CodedPairs | None:
    counts = store.coded_counts(scope)
    return None if counts.a.size == 0 else coded_pairs(counts, stratify=stratify)
