"""FROZEN COPY of api/snapshots.py before the columnar snapshot (commit 11e3adc): the reference
the equality test (tests/api/test_signal_listing_equality.py) compares today's answers with.
Do not edit, do not use outside that test."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from detectors.mgps import Hyperparameters
from detectors.mgps_fit import fit_hyperparameters
from pvsignal.detection import MEASURES
from pvsignal.scoring import EXPORT_COLUMNS, ScoringConfig, score
from pvsignal.signals import pair_table
from pvsignal.store import SqlStore

STATUSES = ("new", "ongoing", "strengthened", "weakened", "closed")
OPEN_STATUSES = STATUSES[:4]
STATISTICS = EXPORT_COLUMNS[2:]
log = logging.getLogger("api.signals")


@dataclass(frozen=True)
class MeasureStates:
    """The signal states of one measure: pair index (sorted), status code, since (µs UTC)."""

    index: np.ndarray
    status: np.ndarray  # int8 code into STATUSES
    since: np.ndarray  # int64 microseconds since the epoch
    since_text: np.ndarray  # the stored timestamps, as given


@dataclass
class ScopeSnapshot:
    scope: str
    generation: int
    token: tuple[Any, ...]
    products: np.ndarray  # distinct product labels, sorted
    events: np.ndarray  # distinct PT labels, sorted
    product_code: np.ndarray  # per pair
    event_code: np.ndarray  # per pair
    pair_keys: np.ndarray  # product code * len(events) + event code: sorted, for lookups
    statistics: dict[str, np.ndarray]  # per pair, the export's columns
    states: dict[str, MeasureStates]
    theta: Hyperparameters
    fit: dict[str, Any]
    built_at: float
    # Lazily derived per sort and per registry view (dict writes are atomic in CPython).
    derived: dict[Any, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.product_code.size)

    def pair_index(self, product: str, event: str) -> int | None:
        p = _find(self.products, product)
        e = _find(self.events, event)
        if p is None or e is None:
            return None
        key = p * self.events.size + e
        i = int(np.searchsorted(self.pair_keys, key))
        return i if i < self.pair_keys.size and self.pair_keys[i] == key else None

    def state_at(self, measure: str, i: int) -> dict[str, Any] | None:
        states = self.states.get(measure)
        if states is None:
            return None
        j = int(np.searchsorted(states.index, i))
        if j >= states.index.size or states.index[j] != i:
            return None
        return {"status": STATUSES[states.status[j]], "since": str(states.since_text[j])}


def _find(sorted_labels: np.ndarray, label: str) -> int | None:
    i = int(np.searchsorted(sorted_labels, label))
    return i if i < sorted_labels.size and sorted_labels[i] == label else None


def _codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct labels and each label's code (hash factorisation, then a small sort)."""
    codes, uniques = pd.factorize(labels, sort=False)
    uniques = np.asarray(uniques, dtype=object)
    order = np.argsort(uniques.astype(str), kind="stable")
    rank = np.empty(order.size, dtype=np.int32)
    rank[order] = np.arange(order.size, dtype=np.int32)
    return uniques[order], rank[codes]


def build_snapshot(
    store: SqlStore,
    scope: str,
    *,
    token: tuple[Any, ...],
    stratify: bool,
    scoring: ScoringConfig,
    generation: int,
) -> ScopeSnapshot | None:
    """Score every pair of the scope; None when the scope has no pairs."""
    counts = store.scope_counts(scope)
    if counts.a.size == 0:
        return None
    pairs = pair_table(counts, stratify=stratify)
    theta, fit = _prior(store, scope, pairs.counts.a, pairs.counts.expected)
    statistics = score(pairs.counts, theta, scoring)
    products, product_code = _codes(pairs.product)
    events, event_code = _codes(pairs.event)
    order = np.lexsort((event_code, product_code))
    statistics = {name: np.ascontiguousarray(statistics[name][order]) for name in STATISTICS}
    product_code, event_code = product_code[order], event_code[order]
    pair_keys = product_code.astype(np.int64) * events.size + event_code
    states = _states(store.signal_states(scope), products, events, pair_keys)
    return ScopeSnapshot(
        scope=scope,
        generation=generation,
        token=token,
        products=products,
        events=events,
        product_code=product_code,
        event_code=event_code,
        pair_keys=pair_keys,
        statistics=statistics,
        states=states,
        theta=theta,
        fit=fit,
        built_at=time.time(),
    )


def _prior(
    store: SqlStore, scope: str, a: np.ndarray, expected: np.ndarray
) -> tuple[Hyperparameters, dict[str, Any]]:
    """The scope's last recorded prior; fitted and recorded when none was recorded yet."""
    fits = store.fits(scope, last=1)
    if fits:
        last = fits[-1]
        return Hyperparameters(**last["theta"]), {
            "fitted_at": last["fitted_at"],
            "theta_source": last.get("theta_source", "fitted"),
            "on_bound": len(last.get("on_bound") or ()),
        }
    fit = fit_hyperparameters(a, expected)
    store.record_fit(scope, {"theta_source": "fitted", "fitted_by": "api", **fit.report()})
    return fit.theta, {
        "fitted_at": None,
        "theta_source": "fitted",
        "on_bound": len(fit.on_bound),
    }


def _states(
    stored: dict[tuple[str, str, str], dict[str, Any]],
    products: np.ndarray,
    events: np.ndarray,
    pair_keys: np.ndarray,
) -> dict[str, MeasureStates]:
    by_measure: dict[str, list[tuple[int, int, str]]] = {m: [] for m in MEASURES}
    for (product, event, measure), state in stored.items():
        p, e = _find(products, product), _find(events, event)
        if p is None or e is None or measure not in by_measure:
            continue  # a pair whose count fell to zero is no longer listed
        key = p * events.size + e
        i = int(np.searchsorted(pair_keys, key))
        if i < pair_keys.size and pair_keys[i] == key:
            by_measure[measure].append((i, STATUSES.index(state["status"]), state["since"]))
    result = {}
    for measure, rows in by_measure.items():
        rows.sort()
        index = np.array([r[0] for r in rows], dtype=np.int64)
        texts = np.array([r[2] for r in rows], dtype=object)
        since = (
            pd.to_datetime(pd.Series(texts, dtype=object), utc=True, format="ISO8601")
            .to_numpy(dtype="datetime64[us]")
            .astype(np.int64)
            if rows
            else np.empty(0, dtype=np.int64)
        )
        result[measure] = MeasureStates(
            index, np.array([r[1] for r in rows], dtype=np.int8), since, texts
        )
    return result
