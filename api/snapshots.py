"""Every pair of a scope, scored once and held in memory as arrays: what /v1/signals serves.

Scoring a million pairs takes seconds; a page must take milliseconds. So each scope's counts
are scored once (``pair_table`` + ``score`` under the scope's last recorded MGPS prior) into a
:class:`ScopeSnapshot`, and requests filter, sort and page those arrays. A snapshot is rebuilt
when the store's change token moves (counts, fits or signal states changed): at once after the
in-process detector ran, otherwise on the first read after the change, in the background while
the previous snapshot keeps answering.

Pairs are held in (product, pt) order by code point, so a keyset cursor can find its place in a
newer snapshot. Signal states are held sparsely: only pairs that ever signalled have one.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from api.metrics import Metrics
from api.pool import StorePool
from detectors.mgps import Hyperparameters
from pvsignal.casetable import CodedPairs
from pvsignal.detection import MEASURES
from pvsignal.export import chunks_of, in_order, score_part
from pvsignal.memory import release_freed_memory
from pvsignal.scopes import ScopeConfig
from pvsignal.scoring import STATISTICS, ScoringConfig
from pvsignal.signals import coded_pairs, scope_prior
from pvsignal.store import SqlStore

STATUSES = ("new", "ongoing", "strengthened", "weakened", "closed")
OPEN_STATUSES = STATUSES[:4]
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
    """One scope's pairs as columns, in (product, PT) order: ~152 bytes per pair.

    The export's 16 float columns stay float64 (the API and the CSV give every float unrounded,
    in its shortest exact form); counts are uint32, flags bool, labels int32 codes into the
    sorted distinct labels; ``n_total`` is one number seen as a column.
    """

    scope: str
    generation: int
    token: tuple[Any, ...]
    products: np.ndarray  # distinct product labels, sorted
    events: np.ndarray  # distinct PT labels, sorted
    product_code: np.ndarray  # per pair (int32)
    event_code: np.ndarray  # per pair (int32)
    product_start: np.ndarray  # the pairs of product p are product_start[p]:product_start[p + 1]
    statistics: dict[str, np.ndarray]  # per pair, the export's columns
    states: dict[str, MeasureStates]
    theta: Hyperparameters
    fit: dict[str, Any]
    built_at: float
    # Lazily derived per registry view (dict writes are atomic in CPython).
    derived: dict[Any, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.product_code.size)

    @property
    def nbytes(self) -> int:
        """Bytes held per pair by the columns (the sparse states and labels aside)."""
        columns = [self.product_code, self.event_code, *self.statistics.values()]
        return sum(column.nbytes for column in columns if column.strides != (0,))

    def pair_index(self, product: str, event: str) -> int | None:
        return _pair_index(
            self.products, self.events, self.product_start, self.event_code, product, event
        )

    def label_rank(self, product: str, event: str) -> int:
        """How many pairs have labels (product, PT) at or before the given ones."""
        p = int(np.searchsorted(self.products, product))
        if p == self.products.size or self.products[p] != product:
            return int(self.product_start[p])
        start, end = int(self.product_start[p]), int(self.product_start[p + 1])
        at_or_before = int(np.searchsorted(self.events, event, "right"))
        return start + int(np.searchsorted(self.event_code[start:end], at_or_before))

    def state_at(self, measure: str, i: int) -> dict[str, Any] | None:
        states = self.states.get(measure)
        if states is None:
            return None
        j = int(np.searchsorted(states.index, i))
        if j >= states.index.size or states.index[j] != i:
            return None
        return {"status": STATUSES[states.status[j]], "since": str(states.since_text[j])}


def _pair_index(
    products: np.ndarray,
    events: np.ndarray,
    product_start: np.ndarray,
    event_code: np.ndarray,
    product: str,
    event: str,
) -> int | None:
    p = _find(products, product)
    e = _find(events, event)
    if p is None or e is None:
        return None
    start, end = int(product_start[p]), int(product_start[p + 1])
    i = start + int(np.searchsorted(event_code[start:end], e))
    return i if i < end and event_code[i] == e else None


def _find(sorted_labels: np.ndarray, label: str) -> int | None:
    i = int(np.searchsorted(sorted_labels, label))
    return i if i < sorted_labels.size and sorted_labels[i] == label else None


_COUNTS = ("a", "n_product", "n_event")
# Pairs scored at a time while building: the build's temporaries follow this, not the scope.
BUILD_CHUNK = 131_072


def _empty_column(name: str, n: int) -> np.ndarray:
    """One statistic's column as held: counts uint32, flags bool, the rest float64."""
    if name in _COUNTS:
        return np.empty(n, dtype=np.uint32)
    if name.startswith("signal_"):
        return np.empty(n, dtype=bool)
    return np.empty(n, dtype=np.float64)


def build_snapshot(
    store: SqlStore,
    scope: str,
    *,
    token: tuple[Any, ...],
    stratify: bool,
    scoring: ScoringConfig,
    generation: int,
    scopes: ScopeConfig | None = None,
) -> ScopeSnapshot | None:
    """Score every pair of the scope, a chunk at a time, into its columns; None when the
    scope has no pairs."""
    counts = store.coded_counts(scope)
    if counts.a.size == 0:
        return None
    pairs = coded_pairs(counts, stratify=stratify)
    del counts
    theta, fit = _prior(store, scope, pairs, scopes or ScopeConfig(stratify=stratify))
    n = pairs.product_code.size
    statistics = {name: _empty_column(name, n) for name in STATISTICS if name != "n_total"}
    parts = chunks_of(n, scoring, BUILD_CHUNK)
    jobs = (functools.partial(score_part, pairs.counts, part, theta, scoring) for part in parts)
    for part, scored in zip(parts, in_order(jobs), strict=True):
        for name, column in statistics.items():
            column[part] = scored[name]
    statistics["n_total"] = np.broadcast_to(np.float64(pairs.counts.n_total), (n,))
    statistics = {name: statistics[name] for name in STATISTICS}
    products, events = pairs.products, pairs.events
    product_code, event_code = pairs.product_code, pairs.event_code
    del pairs
    product_start = np.searchsorted(product_code, np.arange(products.size + 1)).astype(np.int64)
    states = _states(store.signal_state_columns(scope), products, events, product_code, event_code)
    return ScopeSnapshot(
        scope=scope,
        generation=generation,
        token=token,
        products=products,
        events=events,
        product_code=product_code,
        event_code=event_code,
        product_start=product_start,
        statistics=statistics,
        states=states,
        theta=theta,
        fit=fit,
        built_at=time.time(),
    )


def _prior(
    store: SqlStore, scope: str, pairs: CodedPairs, scopes: ScopeConfig
) -> tuple[Hyperparameters, dict[str, Any]]:
    """The scope's last recorded prior; chosen (pvsignal.priors) and recorded when none was."""
    fits = store.fits(scope, last=1)
    if fits:
        last = fits[-1]
        return Hyperparameters(**last["theta"]), {
            "fitted_at": last["fitted_at"],
            "theta_source": last.get("theta_source", "fitted"),
            "on_bound": len(last.get("on_bound") or ()),
        }
    decision = scope_prior(store, scopes, scope, pairs)
    store.record_fit(scope, {"fitted_by": "api", "cases": pairs.reports, **decision.report})
    return decision.theta, {
        "fitted_at": None,
        "theta_source": decision.source,
        "on_bound": len(decision.on_bound),
    }


def _states(
    stored: dict[str, np.ndarray],
    products: np.ndarray,
    events: np.ndarray,
    product_code: np.ndarray,
    event_code: np.ndarray,
) -> dict[str, MeasureStates]:
    """Each measure's states by pair index; a state whose pair is no longer listed (its count
    fell to zero) is left out."""
    keys = product_code.astype(np.int64) * events.size + event_code
    wanted_product = pd.Index(products).get_indexer(stored["product"])
    wanted_event = pd.Index(events).get_indexer(stored["event"])
    wanted = wanted_product.astype(np.int64) * events.size + wanted_event
    index = np.minimum(np.searchsorted(keys, wanted), max(keys.size - 1, 0))
    listed = (wanted_product >= 0) & (wanted_event >= 0) & (keys[index] == wanted)
    status = pd.Index(STATUSES).get_indexer(stored["status"]).astype(np.int8)
    result = {}
    for measure in MEASURES:
        rows = np.flatnonzero(listed & (stored["measure"] == measure))
        rows = rows[np.argsort(index[rows], kind="stable")]
        texts = stored["since"][rows]
        since = _microseconds(texts) if rows.size else np.empty(0, dtype=np.int64)
        result[measure] = MeasureStates(index[rows], status[rows], since, texts)
    return result


def _microseconds(texts: np.ndarray) -> np.ndarray:
    """ISO 8601 timestamps as int64 microseconds UTC, each distinct text parsed once: states
    share the few times of the runs that changed them (10^5 states, a few hundred times)."""
    codes, distinct = pd.factorize(texts)
    parsed = pd.to_datetime(pd.Series(distinct, dtype=object), utc=True, format="ISO8601")
    return parsed.to_numpy(dtype="datetime64[us]").astype(np.int64)[codes]


@dataclass
class _Entry:
    snapshot: ScopeSnapshot | None
    token: tuple[Any, ...]
    checked: float


class SignalCache:
    """Snapshots per scope, kept fresh against the store's change token."""

    def __init__(
        self,
        pool: StorePool,
        *,
        stratify: bool,
        scoring: ScoringConfig,
        freshness_seconds: float,
        metrics: Metrics,
        scopes: ScopeConfig | None = None,
    ) -> None:
        self._pool, self._stratify, self._scoring = pool, stratify, scoring
        self._scopes = scopes or ScopeConfig(stratify=stratify)
        self._freshness, self._metrics = freshness_seconds, metrics
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._generations = itertools.count(1)
        # One rebuild at a time: two snapshots of a million pairs are enough in memory.
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signals-cache")
        self._building: dict[str, Future[None]] = {}

    def get(self, scope: str) -> ScopeSnapshot | None:
        """The scope's snapshot (None: no pairs): fresh, or the last one while it is rebuilt."""
        entry = self._entries.get(scope)
        now = time.monotonic()
        if entry is not None and now - entry.checked < self._freshness:
            return entry.snapshot
        with self._pool.store() as store:
            token = store.change_token()
        if entry is not None and entry.token == token:
            entry.checked = now
            return entry.snapshot
        if entry is not None and entry.snapshot is not None:
            self._rebuild_in_background(scope)
            return entry.snapshot
        # None yet (the first requests after start): every caller waits on the one build,
        # the warm-up's when it is running.
        self._build_unless_current(scope)
        return self._entries[scope].snapshot

    def refresh(self, scopes: list[str] | set[str]) -> None:
        """Rebuild the scopes' snapshots now if the store changed (the detector calls this
        after each run)."""
        for scope in scopes:
            self._build_unless_current(scope)

    def warm(self, scopes: list[str]) -> None:
        """Build the scopes' snapshots in the background (at start, before any request)."""
        for scope in scopes:
            self._rebuild_in_background(scope)

    def close(self) -> None:
        self._builder.shutdown(wait=True, cancel_futures=True)

    def _lock(self, scope: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(scope, threading.Lock())

    def _rebuild_in_background(self, scope: str) -> None:
        with self._guard:
            running = self._building.get(scope)
            if running is not None and not running.done():
                return
            self._building[scope] = self._builder.submit(self._rebuild_locked, scope)

    def _rebuild_locked(self, scope: str) -> None:
        try:
            self._build_unless_current(scope)
        except Exception:  # the last snapshot keeps answering; the next read tries again
            log.exception("signals snapshot rebuild failed", extra={"scope": scope})

    def _build_unless_current(self, scope: str) -> None:
        """Build the scope's snapshot under its lock, unless the one there (perhaps built
        while this caller waited for the lock) is of the store's current state: one build
        serves every caller that asked for it at the same time."""
        with self._lock(scope):
            entry = self._entries.get(scope)
            if entry is not None:
                with self._pool.store() as store:
                    token = store.change_token()
                if entry.token == token:
                    entry.checked = time.monotonic()
                    return
            self._rebuild(scope)

    def _rebuild(self, scope: str) -> None:
        started = time.perf_counter()
        with self._pool.store() as store:
            token = store.change_token()  # read first: a write during the build moves it again
            snapshot = build_snapshot(
                store,
                scope,
                token=token,
                stratify=self._stratify,
                scoring=self._scoring,
                generation=next(self._generations),
                scopes=self._scopes,
            )
            store.release_memory()
        self._entries[scope] = _Entry(snapshot, token, time.monotonic())
        release_freed_memory()
        seconds = time.perf_counter() - started
        self._metrics.cache_refresh.observe(seconds)
        if snapshot is not None:
            self._metrics.fit_on_bound.labels(scope).set(snapshot.fit.get("on_bound", 0))
            self._metrics.prior_in_use(scope, snapshot.fit.get("theta_source", "fitted"))
            log.info(
                "signals snapshot built",
                extra={"scope": scope, "pairs": snapshot.size, "seconds": round(seconds, 3)},
            )
