"""Continuous detection: statistics kept current, a lifecycle per signal, alerts once.

After each checkpoint the scopes a batch touched are brought up to date. A detector keeps each
scope's counts in memory (pvsignal.columns), reads only the counts batches changed since its
last run, and re-evaluates only what can have changed: pairs whose count changed, open signals
that are not steady, and steady ones whose flag or level the bounds of pvsignal.drift cannot
certify (after a refit, every open EBGM signal: θ moves EBGM alone; a full sweep after a
load or when much is uncertain). The result is the one a full rescoring of every pair would
give (``DetectionConfig(incremental=False)``, kept as the tests' reference). Detection can
be sharded by product (``Detector(shard=(K, N))``).
Each (scope, product, event, measure) follows a lifecycle::

    new -> ongoing -> (strengthened | weakened)* -> closed  (-> new again later)

- A signal opens (``new``) when the measure's rule holds at an evaluation that brought the
  pair new cases: a pair whose count did not grow since the detector's previous update of the
  scope does not open only because other pairs' reports moved the expected count (every report
  moves every pair's expectation a little, and pairs at a threshold would open on unrelated
  reports). The first update a detector makes of a scope (after a start) has nothing to
  compare with and judges every pair by its rule alone. At its next evaluation while the
  rule still holds a signal becomes ``ongoing``: a state, not an alert.
- ``strengthened`` / ``weakened``: the measure's level (log2 of PRR, of the ROR lower bound,
  of EB05; IC025 itself) moved by at least ``change_log2`` since the last transition.
- Hysteresis against flicker: a signal closes only after its rule has failed in
  ``close_after`` consecutive evaluations, so a pair hovering at the threshold does not alert
  on every report; the same state never alerts twice. A pair is evaluated only when its count
  or its level moved since its last evaluation: an update with nothing new changes nothing.

Alerts are per pair, not per measure: one detection run raises at most one alert per (scope,
product, event), when at least one measure made an alerting transition (``new``,
``strengthened``, ``weakened``, ``closed``). The alert document::

    {"scope", "product_id", "pt", "at",
     "transition": the pair's transition, the most significant of its changes,
     "changes": {measure: transition} for the measures that moved in this run,
     "measures": {measure: {"status", "since", "flagged", "statistic", "value"}} for all four
                 (status None: the measure never signalled this pair),
     "statistics": the pair's counts and every measure's estimate and bounds,
     "product": {"names", "mah_id", "pathway", "kind", "registered"},
     "mah_id", "pathway", "kind" (the product's, repeated for filters and Kafka consumers),
     "link": "/v1/signals/{scope}/{product_id}/{pt}" (URL-quoted), "theta": the MGPS prior}

When measures move differently, the pair-level ``transition`` is the most significant of
them in the order new > strengthened > weakened > closed (see ``SIGNIFICANCE``): a pair that
opens on EBGM while closing on PRR is ``new``, and ``changes`` tells the whole story.

Every state change is written with the statistics of that moment to the history, and every
alert to the alerts outbox, in the same transaction as the new states; publishers (Kafka,
webhooks, SSE) read the outbox. The MGPS prior is refitted on a schedule (every
``refit_cases`` new cases, or ``refit_share`` of the scope's cases if more, or every
``refit_seconds``), warm-started from the previous fit, and each fit is recorded. Whether a
scope uses its own fit, its parent's prior or a given one is the scope configuration's choice
(pvsignal.priors); parents are updated before their children.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np

from detectors.counting import distinct
from detectors.mgps import Hyperparameters
from detectors.mgps_fit import DEFAULT_STARTS, Fit, Squash, fit_hyperparameters
from pvsignal import drift
from pvsignal.casetable import PairTable
from pvsignal.columns import ScopeColumns, shard_filter
from pvsignal.lifecycle import (
    CLOSED,
    CODES,
    NEW,
    NO_STATE,
    STATUSES,
    TRANSITIONS,
    Candidates,
    Walked,
    levels,
    walk,
)
from pvsignal.priors import PriorDecision, decide, needs_own_fit, parents_first
from pvsignal.products import Registry
from pvsignal.scopes import ScopeConfig
from pvsignal.scoring import EXPORT_COLUMNS, ScoringConfig, score
from pvsignal.signals import pair_table
from pvsignal.store import SqlStore
from pvsignal.store.access import PRODUCTS_WRITTEN
from pvsignal.store.sql import CountsMark, Lease, StateColumns

# The statistic whose level tracks each measure, and how to put it on a log2 scale.
MEASURES: dict[str, tuple[str, str]] = {
    "prr": ("signal_prr", "prr"),
    "ror": ("signal_ror", "ror_lower"),
    "ic": ("signal_ic", "ic025"),
    "ebgm": ("signal_ebgm", "eb05"),
}
# Statistics carried by every history point and alert: the export's, without labels and flags.
REPORTED = tuple(c for c in EXPORT_COLUMNS[2:] if not c.startswith("signal_"))
# The transitions that raise an alert, most significant first: a pair's alert is named after
# the most significant of its measures' changes.
SIGNIFICANCE = ("new", "strengthened", "weakened", "closed")
ALERT_TRANSITIONS = frozenset(SIGNIFICANCE)


@dataclass(frozen=True)
class DetectionConfig:
    close_after: int = 3
    change_log2: float = 0.585  # a factor of 1.5 on the ratio scale
    refit_cases: int = 10_000
    # ... or, in a large scope, once its cases grew by this share since the last fit: at
    # national scale 10,000 cases is a few seconds of reports, and each refit costs a fit
    # over every pair plus a full sweep (seconds at millions of pairs), which kept a
    # consumer at 1,000 reports/s behind (report-to-alert p99 25 s at 3.67M pairs).
    refit_share: float = 0.05
    refit_seconds: float = 3_600.0
    # Fit the MGPS prior on DuMouchel's squashed points (detectors.mgps_fit.Squash) when a
    # scope has more pairs than this (None: never). At 3.67M FAERS-like pairs the squashed
    # fit's -log L over all points is 0.002 above the full fit's (of 2.79e6), EBGM within
    # 0.3 %, in about half the time; each fit record reports both likelihoods.
    squash_pairs: int | None = 1_000_000
    # Refit on a worker thread, so that an update never waits for a refit (the service's
    # report-to-alert latency); updates meanwhile use the current prior.
    refit_in_background: bool = False
    # Days per review status, for the due date of a review an alert reopens (None: the
    # defaults of pvsignal.review; the service passes Settings.review_deadline_days).
    review_deadline_days: dict[str, int] | None = None
    # Keep each scope's counts in memory and re-evaluate only the pairs whose flag or level
    # can have changed (pvsignal.drift); False: every run reads the scope's counts whole and
    # rescores every pair (the reference the incremental path is tested against).
    incremental: bool = True
    # A full sweep instead when more than this share of the pairs would be re-evaluated.
    sweep_share: float = 0.25
    # A detection shard's lease lasts this long from each run (renewed by every run).
    lease_seconds: float = 60.0


@dataclass
class SignalState:
    """Where one (scope, product, event, measure) stands."""

    status: str  # new, ongoing, strengthened, weakened, closed
    since: str
    reference: float  # the level at the last transition
    failures: int = 0  # consecutive evaluations in which the rule failed


def level(measure: str, value: float) -> float:
    """The measure's statistic on a log2 scale (IC025 already is). An undefined statistic
    (nan: the pair has no report left) is at -inf for every measure: a state closing there
    keeps a level the store can hold (NaN is NULL in SQL)."""
    if math.isnan(value):
        return float("-inf")
    if measure == "ic":
        return float(value)
    return math.log2(value) if value > 0 else float("-inf")


def next_state(
    state: SignalState | None,
    flagged: bool,
    value: float,
    measure: str,
    config: DetectionConfig,
    now: str,
) -> tuple[SignalState | None, str | None]:
    """The state after one evaluation, and the alerting transition it makes (None if none).

    ``new -> ongoing`` changes the state but is no alert. Levels are compared by difference,
    so an infinite level (a zero cell) that stays infinite is no change."""
    current = level(measure, value)
    if state is None or state.status == "closed":
        if not flagged:
            return state, None
        return SignalState("new", now, current), "new"
    if not flagged:
        failures = state.failures + 1
        if failures >= config.close_after:
            return SignalState("closed", now, current), "closed"
        return SignalState(state.status, state.since, state.reference, failures), None
    if state.status == "new":
        return SignalState("ongoing", now, current), None
    if current - state.reference >= config.change_log2:
        return SignalState("strengthened", now, current), "strengthened"
    if state.reference - current >= config.change_log2:
        return SignalState("weakened", now, current), "weakened"
    if state.failures:
        return SignalState(state.status, state.since, state.reference), None
    return state, None


class Detector:
    """Scores touched scopes, advances signal lifecycles and fills the alerts outbox."""

    def __init__(
        self,
        store: SqlStore,
        scopes: ScopeConfig,
        config: DetectionConfig | None = None,
        scoring: ScoringConfig | None = None,
        *,
        clock: Callable[[], str] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        """``shard=(K, N)``: detect only the products of hash range K of N (see
        pvsignal.columns.shard_of), holding the shard's lease in the store; shard 0 fits the
        prior of each scope, the others use the last one recorded."""
        self.store, self.scopes = store, scopes
        self.config = config or DetectionConfig()
        if shard is not None and not self.config.incremental:
            raise ValueError("detection shards need DetectionConfig(incremental=True)")
        self.shard = shard
        self._keep = None if shard is None else shard_filter(*shard)
        self._holder = uuid.uuid4().hex
        self._lease: Lease | None = None
        self._writes = 0
        self._written: dict[str, str] = {}  # scope -> the mark of this detector's last write
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC).isoformat())
        self.scoring = scoring or ScoringConfig()
        self._theta: dict[str, Hyperparameters] = {}
        self._fitted_at: dict[str, tuple[float, int]] = {}  # scope -> (monotonic time, cases)
        self._registry: tuple[str | None, Registry] | None = None  # (store's mark, registry)
        self._fitter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mgps-fit")
        self._fitting: dict[str, Future] = {}  # scope -> its refit running in the background
        self._own: dict[str, tuple[Fit, dict[str, Any]]] = {}  # scope -> its own last fit
        self._decisions: dict[str, PriorDecision] = {}  # scope -> the prior it uses now
        self._recorded: dict[str, tuple[Any, ...]] = {}  # scope -> what its last record said
        # scope -> (pair -> position, counts) at this detector's last update of it (_advance)
        self._last_counts: dict[str, ScopeColumns] = {}
        self._tracked: dict[str, _Tracked] = {}  # scope -> its counts and states in memory
        # scope -> (pairs re-evaluated, pairs known) at its last incremental update
        self.evaluated: dict[str, tuple[int, int]] = {}

    def update(self, scopes: Iterable[str]) -> list[dict[str, Any]]:
        """Bring the given scopes up to date; return the alerts this made (also stored)."""
        alerts: list[dict[str, Any]] = []
        if self.shard is not None and not self._hold_lease():
            return alerts
        registry = self._current_registry()
        # Parents first: a scope that borrows its prior finds its parent's current one.
        for scope in parents_first(scopes, self._parent_of):
            if self.config.incremental:
                alerts += self._update_incremental(scope, registry)
            else:
                alerts += self._update_whole(scope, registry)
        return alerts

    def _written_name(self, scope: str) -> str:
        shard, shards = self.shard or (0, 1)
        return f"detection_written:{shard}/{shards}:{scope}"

    def _next_written(self, scope: str) -> tuple[str, str]:
        """A new mark of this detector's write of the scope's states (see _Tracked.written)."""
        self._writes += 1
        self._written[scope] = f"{self._holder}:{self._writes}"
        return self._written_name(scope), self._written[scope]

    def _hold_lease(self) -> bool:
        """Take or renew this shard's lease; a (re)acquired lease means another detector may
        have written the shard's states meanwhile, so they are read again."""
        shard, shards = self.shard or (0, 1)
        lease = self.store.acquire_lease(
            f"{shard}/{shards}", self._holder, self.config.lease_seconds
        )
        if lease != self._lease:
            self._tracked.clear()
        self._lease = lease
        return lease is not None

    def _renewed_lease(self) -> Lease | None:
        """The shard's lease, renewed before a write: a long run (a cold one at national scale,
        under load) can outlast ``lease_seconds``. Renewal keeps the epoch only when no other
        detector took the shard meanwhile; otherwise the write is refused with the lease this
        run began with (LeaseLostError), as before."""
        if self.shard is None:
            return None
        shard, shards = self.shard
        self.store.acquire_lease(f"{shard}/{shards}", self._holder, self.config.lease_seconds)
        return self._lease

    def _update_whole(self, scope: str, registry: Registry) -> list[dict[str, Any]]:
        """Read the scope's counts whole, rescore every pair and evaluate every candidate."""
        counts = self.store.scope_counts(scope, ordered=False)
        if counts.a.size == 0:
            return []
        pairs = pair_table(counts, stratify=self.scopes.stratify)
        theta = self._prior(scope, pairs)
        statistics = score(pairs.counts, theta, self.scoring)
        # The states by pair position, as the incremental path keeps them.
        tracked = _Tracked(ScopeColumns.load(counts), None, self.store.signal_states(scope))
        rows = tracked.columns.positions(pairs.product, pairs.event)
        earlier = self._last_counts.get(scope)
        previous = None
        if earlier is not None:
            at = earlier.positions(pairs.product, pairs.event)  # may add pairs: before .a
            previous = earlier.a[at]
        alerts = self._advance(
            scope,
            pairs,
            rows,
            statistics,
            theta,
            registry,
            tracked,
            previous,
            np.arange(tracked.columns.size),
        )
        self._last_counts[scope] = tracked.columns
        return alerts

    def _update_incremental(self, scope: str, registry: Registry) -> list[dict[str, Any]]:
        """Apply the counts changed since the last run, then evaluate only the pairs whose
        count changed or whose open signal the bounds of pvsignal.drift cannot certify
        steady (after a refit, every open EBGM signal: pvsignal.drift); everything after a
        (re)load or when too much is uncertain."""
        mark = self.store.counts_mark()
        tracked = self._tracked.get(scope)
        first = (
            tracked is None
            or tracked.mark.rebuilds != mark.rebuilds
            # Another detector wrote this scope's states since this one did (a consumer
            # whose leadership came back): the states in memory are stale.
            or self.store.setting(self._written_name(scope)) != tracked.written
        )
        earlier_counts = (
            None if tracked is None or mark.rebuilds != tracked.mark.rebuilds else tracked
        )
        if first:
            tracked = self._load(scope, mark)
            moved, before = np.arange(tracked.columns.size), None
        else:
            changes = self.store.count_changes(scope, tracked.mark.batches)
            tracked.mark = mark
            moved, before = tracked.columns.apply(changes)
            tracked.fit_size()
        columns = tracked.columns
        if not (columns.a > 0).any():
            return []
        theta = self._scope_prior(scope, columns)
        if theta is None:
            return []  # a shard before shard 0's first fit of the scope
        sweep = first or self.scoring.fdr_q is not None
        if not sweep and tracked.theta != theta:
            tracked.baseline.prior_changed()  # a refit: every open EBGM signal is re-evaluated
        within = None if sweep else self._uncertain(tracked, moved, theta)
        if within is None or within.size > self.config.sweep_share * columns.size:
            within = np.arange(columns.size)
        observed = columns.observed(within)
        self.evaluated[scope] = (observed.size, columns.size)
        pairs = columns.table(observed, stratify=self.scopes.stratify)
        statistics = score(pairs.counts, theta, self.scoring)
        previous = None
        if not first or earlier_counts is not None:
            if first:  # reloaded after another detector's write: compare with our last update
                at = earlier_counts.columns.positions(pairs.product, pairs.event)
                previous = earlier_counts.columns.a[at]
            else:
                previous = columns.a[observed]
                if moved.size:
                    earlier = columns.a.copy()
                    earlier[moved] = before
                    previous = earlier[observed]
        alerts = self._advance(
            scope, pairs, observed, statistics, theta, registry, tracked, previous, within
        )
        tracked.written = self._written.get(scope)
        tracked.baseline.record(observed, statistics, theta, self.scoring)
        tracked.theta = theta
        return alerts

    def _scope_prior(self, scope: str, columns: ScopeColumns) -> Hyperparameters | None:
        """The prior: fitted here over every pair (shard 0 reads them whole from the store
        when a fit is due), or the scope's last recorded fit for the other shards."""
        stratify = self.scopes.stratify
        reports, strata = int(columns.totals.sum()), int((columns.totals > 0).sum())
        # The number of pairs decides and reports the prior on every run; the table itself
        # is built only when a fit is due (building it is a full pass over the scope).
        if self.shard is None:
            return self._prior(
                scope,
                _LazyPairTable(
                    reports,
                    strata,
                    lambda: columns.table(stratify=stratify),
                    detach=lambda: functools.partial(columns.frozen().table, stratify=stratify),
                ),
                int(np.count_nonzero(columns.a > 0)),
            )
        if self.shard[0] == 0:
            return self._prior(
                scope,
                _LazyPairTable(
                    reports,
                    strata,
                    lambda: pair_table(self.store.scope_counts(scope), stratify=stratify),
                ),
                self.store.observed_pairs(scope),
            )
        fits = self.store.fits(scope, last=1)
        return Hyperparameters(**fits[-1]["theta"]) if fits else None

    def _load(self, scope: str, mark: CountsMark) -> _Tracked:
        """Read the scope whole, once (the counts after ``mark``; states as stored)."""
        columns = ScopeColumns.load(self.store.scope_counts(scope, ordered=False), self._keep)
        # Only the disproportionality measures' states: the scope may also hold the states of
        # active monitoring's sequential tests (measure "maxsprt"), which pvsignal.monitoring
        # keeps; a detector started on such a store must not take them for its own.
        stored = {k: v for k, v in self.store.signal_states(scope).items() if k[2] in MEASURES}
        if self._keep is not None and stored:
            products = np.array([key[0] for key in stored] + [None], dtype=object)[:-1]
            mine = self._keep(products)
            stored = dict(
                item for item, owned in zip(stored.items(), mine.tolist(), strict=True) if owned
            )
        tracked = _Tracked(columns, mark, stored)
        self._tracked[scope] = tracked
        return tracked

    def _uncertain(
        self, tracked: _Tracked, moved: np.ndarray, theta: Hyperparameters
    ) -> np.ndarray:
        """Positions to evaluate: pairs whose count moved, open signals that are not steady
        (new, failing, count changed since their last evaluation) and steady ones whose
        bounds do not certify that they stay flagged and within their band."""
        columns, baseline = tracked.columns, tracked.baseline
        a = columns.a
        n = a.size  # the per-position arrays may be longer (see _Tracked.fit_size)
        comparable = baseline.valid[:n] & (baseline.a[:n] == a) & (a > 0)
        # Masks over the positions, not sorted unions of index arrays: open signals number
        # hundreds of thousands at national scale, and np.unique sorts them on every run.
        wanted = np.zeros(n, dtype=bool)
        wanted[moved] = True
        steady: dict[str, np.ndarray] = {}
        every = np.zeros(n, dtype=bool)
        for measure in MEASURES:
            status = tracked.status[measure][:n]
            is_open = (status > NO_STATE) & (status < CLOSED)
            calm = (
                is_open
                & (status > NEW)
                & (tracked.failures[measure][:n] == 0)
                & (tracked.last_a[measure][:n] == a)
                & comparable
            )
            if measure == "ebgm":  # its baseline holds under the prior it was computed with
                calm &= baseline.prior_valid[:n]
            wanted |= is_open & ~calm
            every |= calm
            steady[measure] = np.flatnonzero(calm)
        every = np.flatnonzero(every)
        if every.size:
            n_product, n_event, n_total, e, _ = columns.expectation(
                columns.pair_product[every], columns.pair_event[every], self.scopes.stratify
            )
            for measure, positions in steady.items():
                at = np.searchsorted(every, positions)
                sure = self._certain(
                    measure,
                    tracked,
                    positions,
                    a[positions],
                    n_product[at],
                    n_event[at],
                    n_total,
                    e[at],
                    theta,
                )
                wanted[positions[~sure]] = True
        return np.flatnonzero(wanted)

    def _certain(
        self,
        measure: str,
        tracked: _Tracked,
        positions: np.ndarray,
        a: np.ndarray,
        n_product: np.ndarray,
        n_event: np.ndarray,
        n_total: float,
        e: np.ndarray,
        theta: Hyperparameters,
    ) -> np.ndarray:
        reference = tracked.reference[measure][positions]
        step = self.config.change_log2
        if measure in ("prr", "ror"):
            return drift.certain_ratio(
                measure, a, n_product, n_event, n_total, reference, self.scoring, step
            )
        if measure == "ic":
            return drift.certain_ic(tracked.baseline, positions, e, reference, self.scoring, step)
        return drift.certain_ebgm(
            tracked.baseline, positions, e, reference, theta, self.scoring, step
        )

    def _current_registry(self) -> Registry:
        """The store's registry, reloaded only when a registry change moved its mark."""
        mark = self.store.setting(PRODUCTS_WRITTEN)
        if self._registry is None or self._registry[0] != mark:
            self._registry = (mark, Registry(self.store.load_products()))
        return self._registry[1]

    def _prior(self, scope: str, pairs: PairTable, size: int | None = None) -> Hyperparameters:
        """The scope's prior as its configuration chooses (pvsignal.priors), recorded when
        it changes: its own fit (refitted, warm-started, when due), its parent's, or given.

        With ``refit_in_background`` a due refit runs on a worker thread while updates go
        on with the current prior; the first update that finds it finished records it and
        uses it. The first fit of a scope is always waited for (there is no prior before).
        All fits run on the one worker, so they never run concurrently.
        """
        choice = self.scopes.prior_of(scope)
        parent_name = choice.parent_of(scope) if choice.source in ("auto", "borrow") else None
        parent = None if parent_name is None else self._parent_decision(parent_name)
        size = int(pairs.counts.a.size) if size is None else size  # observed pairs
        if needs_own_fit(choice, size, parent_available=parent is not None):
            self._refit_when_due(scope, pairs)
        decision = decide(
            scope,
            choice,
            pairs=size,
            own=self._own.get(scope),
            parent=None if parent is None else (lambda: parent),
        )
        self._record_if_changed(scope, decision, pairs.reports)
        return decision.theta

    def _parent_of(self, scope: str) -> str | None:
        return self.scopes.prior_of(scope).parent_of(scope)

    def _parent_decision(self, parent: str) -> PriorDecision | None:
        """The parent's current prior; decided now from its counts if not yet (None: empty)."""
        if parent not in self._decisions:
            counts = self.store.scope_counts(parent, ordered=False)
            if counts.a.size == 0:
                return None
            self._prior(parent, pair_table(counts, stratify=self.scopes.stratify))
        return self._decisions[parent]

    def _refit_when_due(self, scope: str, pairs: PairTable) -> None:
        running = self._fitting.get(scope)
        if running is not None and running.done():
            self._adopt(scope, *running.result())
            del self._fitting[scope]
        last = self._fitted_at.get(scope)
        cases = pairs.reports
        due = (
            last is None
            or cases - last[1] >= max(self.config.refit_cases, self.config.refit_share * last[1])
            or time.monotonic() - last[0] >= self.config.refit_seconds
        )
        if due and scope not in self._fitting:
            previous = self._own.get(scope)
            warm = previous is not None
            starts = (previous[0].theta, *DEFAULT_STARTS) if warm else DEFAULT_STARTS
            background = warm and self.config.refit_in_background
            job = self._fitter.submit(
                _fit,
                self._fit_table(pairs, background),
                starts,
                cases,
                warm,
                self.config.squash_pairs,
            )
            if background:
                self._fitting[scope] = job
            else:
                self._adopt(scope, *job.result())

    @staticmethod
    def _fit_table(pairs: PairTable, background: bool) -> Callable[[], PairTable]:
        """What the fit makes its table from, on the fitting thread. In the background, from
        a copy of the scope's counts taken now (making the table is a pass over every pair:
        seconds at national scale, which the update that found the fit due would otherwise
        wait for); otherwise the table itself."""
        detach = getattr(pairs, "detach", None)
        if background and detach is not None:
            return detach()
        if isinstance(pairs, _LazyPairTable):
            pairs = pairs.built()  # here: it may read the store, which is this thread's
        return lambda: pairs

    def _adopt(self, scope: str, fit: Fit, report: dict[str, Any]) -> None:
        self._own[scope] = (fit, report)
        self._fitted_at[scope] = (time.monotonic(), report["cases"])

    def _record_if_changed(self, scope: str, decision: PriorDecision, cases: int) -> None:
        """Record the decision when its prior, source or own fit changed (not every update)."""
        own = self._own.get(scope)
        mark = (decision.source, decision.theta, None if own is None else id(own[0]))
        if self._recorded.get(scope) != mark:
            report = {"cases": cases, **decision.report}
            self.store.record_fit(scope, report)  # here, not on the worker: one store connection
            self._recorded[scope] = mark
        self._decisions[scope] = decision
        self._theta[scope] = decision.theta

    @property
    def priors(self) -> dict[str, PriorDecision]:
        """Each scope's current prior decision (for metrics)."""
        return dict(self._decisions)

    def _advance(
        self,
        scope: str,
        pairs: PairTable,
        rows: np.ndarray,
        stats: dict[str, np.ndarray],
        theta: Hyperparameters,
        registry: Registry,
        tracked: _Tracked,
        previous: np.ndarray | None,
        within: np.ndarray,
    ) -> list[dict[str, Any]]:
        """Walk the candidates of each measure (the pairs it flags in ``pairs`` and its open
        states among the positions ``within``) through the lifecycle (pvsignal.lifecycle),
        write what changed and return the alerts.

        ``rows`` are the pair positions of the table's rows; ``previous`` each row's count at
        the detector's previous update of the scope (None: this is the first)."""
        now = self._clock()
        row_of = np.full(tracked.columns.size, -1, dtype=np.int64)
        row_of[rows] = np.arange(rows.size)
        grew = np.ones(rows.size, dtype=bool) if previous is None else previous < stats["a"]
        updates, transitions, points = [], {}, []
        for measure, (flag_column, value_column) in MEASURES.items():
            flags = np.asarray(stats[flag_column], dtype=bool)
            status = tracked.status[measure][within]
            # Only pairs that signal now or have an open state can change.
            is_open = (status > NO_STATE) & (status < CLOSED)
            at = distinct(np.concatenate((rows[flags], within[is_open])))
            row = row_of[at]
            candidates = Candidates(
                flagged=_take(flags, row, False),
                level=levels(measure, _take(stats[value_column], row, np.nan)),
                a=_take(stats["a"], row, 0.0),
                grew=_take(grew, row, previous is None),
                in_table=row >= 0,
                **tracked.before(measure, at, now),
            )
            walked = walk(
                candidates,
                close_after=self.config.close_after,
                change_log2=self.config.change_log2,
            )
            updates.append((measure, at, candidates, walked))
            moved = walked.transition > 0
            transitions[measure] = (at[moved], walked.transition[moved])
            points.append(at[walked.point])
        changed = tracked.state_columns(
            {
                measure: tracked.after(measure, at, candidates, walked, now)
                for measure, at, candidates, walked in updates
            }
        )
        alerts, history = self._documents(
            scope,
            tracked,
            row_of,
            stats,
            transitions,
            distinct(np.concatenate(points)),
            registry,
            theta,
            now,
        )
        try:
            self.store.write_detection(
                scope,
                changed,
                history,
                alerts,
                now,
                review_deadlines=self.config.review_deadline_days,
                lease=self._renewed_lease(),
                mark=self._next_written(scope),
            )
        except BaseException:
            self._tracked.pop(scope, None)  # its states are ahead of the store's: read again
            raise
        return alerts

    def _documents(
        self,
        scope: str,
        tracked: _Tracked,
        row_of: np.ndarray,
        stats: dict[str, np.ndarray],
        transitions: dict[str, tuple[np.ndarray, np.ndarray]],
        points: np.ndarray,
        registry: Registry,
        theta: Hyperparameters,
        now: str,
    ) -> tuple[list[dict[str, Any]], list[tuple[str, str, Any, dict[str, Any]]]]:
        """The alerts of the pairs whose measures made alerting transitions (states as they
        are after the run) and the history points, both in pair order."""
        moves: dict[int, dict[str, str]] = {}
        for measure, (at, codes) in transitions.items():
            for position, code in zip(at.tolist(), codes.tolist(), strict=True):
                moves.setdefault(position, {})[measure] = TRANSITIONS[code]
        alerting = np.fromiter(moves, dtype=np.int64, count=len(moves))
        label = tracked.labels
        recorded = row_of[distinct(np.concatenate((points, alerting)))]
        numbers = _statistics_rows(stats, recorded[recorded >= 0].tolist())
        history = sorted(
            (*label(p), numbers[row_of[p]]["a"], numbers[row_of[p]]) for p in points.tolist()
        )
        states = self._measure_states(tracked, alerting, row_of[alerting], stats)
        products: dict[str, dict[str, Any]] = {}
        alerts = []
        for position, measures in zip(alerting.tolist(), states, strict=True):
            product, event = label(position)
            if product not in products:
                products[product] = alert_product(registry, product)
            row = row_of[position]
            alerts.append(
                self._alert(
                    scope,
                    (product, event),
                    moves[position],
                    measures,
                    {} if row < 0 else numbers[row],
                    products[product],
                    theta,
                    now,
                )
            )
        alerts.sort(key=lambda alert: (alert["product_id"], alert["pt"]))
        return alerts, history

    @staticmethod
    def _measure_states(
        tracked: _Tracked, at: np.ndarray, row: np.ndarray, stats: dict[str, np.ndarray]
    ) -> list[dict[str, dict[str, Any]]]:
        """Every measure's state after this run at the positions, with its flag and the
        statistic it tracks (converted column by column)."""
        columns = {}
        for measure, (flag_column, value_column) in MEASURES.items():
            status = tracked.status[measure][at].tolist()
            columns[measure] = (
                [None if code == NO_STATE else STATUSES[code - 1] for code in status],
                [
                    None if code == NO_STATE else since
                    for code, since in zip(
                        status, tracked.times(tracked.since[measure][at]), strict=True
                    )
                ],
                _take(np.asarray(stats[flag_column], dtype=bool), row, False).tolist(),
                value_column,
                _plain_column(_take(stats[value_column], row, np.nan)),
            )
        return [
            {
                measure: {
                    "status": status[k],
                    "since": since[k],
                    "flagged": flagged[k],
                    "statistic": statistic,
                    "value": value[k],
                }
                for measure, (status, since, flagged, statistic, value) in columns.items()
            }
            for k in range(at.size)
        ]

    @staticmethod
    def _alert(
        scope: str,
        pair: tuple[str, str],
        changes: dict[str, str],
        measures: dict[str, dict[str, Any]],
        statistics: dict[str, Any],
        product_facts: dict[str, Any],
        theta: Hyperparameters,
        now: str,
    ) -> dict[str, Any]:
        product, event = pair
        return {
            "scope": scope,
            "product_id": product,
            "pt": event,
            "transition": min(changes.values(), key=SIGNIFICANCE.index),
            "changes": {m: changes[m] for m in MEASURES if m in changes},
            "at": now,
            "measures": measures,
            "statistics": statistics,
            **product_facts,
            "link": signal_link(scope, product, event),
            "theta": theta._asdict(),
        }


def alert_product(registry: Registry, product: str) -> dict[str, Any]:
    """The product's facts an alert carries: ``product`` in full, and its MAH, pathway and kind
    repeated at the top (for subscription filters and Kafka consumers)."""
    registered = registry.get(product)
    mah_id = None if registered is None else registered.mah_id
    pathway = None if registered is None else registered.pathway.value
    kind = None if registered is None else registered.kind.value
    return {
        "product": {
            "registered": registered is not None,
            "names": [] if registered is None else list(registered.names),
            "mah_id": mah_id,
            "pathway": pathway,
            "kind": kind,
        },
        "mah_id": mah_id,
        "pathway": pathway,
        "kind": kind,
    }


class _Tracked:
    """One scope's counts and signal states by pair position (status codes of
    pvsignal.lifecycle, 0: no state), with each pair's baseline (pvsignal.drift)."""

    def __init__(
        self,
        columns: ScopeColumns,
        mark: CountsMark | None,
        stored: dict[tuple[str, str, str], dict[str, Any]],
    ) -> None:
        self.columns, self.mark = columns, mark
        self.theta: Hyperparameters | None = None
        self.written: str | None = None  # the store's mark of the last write of the states
        self.status: dict[str, np.ndarray] = {m: np.zeros(0, dtype=np.int8) for m in MEASURES}
        self.failures = {m: np.zeros(0, dtype=np.int16) for m in MEASURES}
        self.last_a = {m: np.zeros(0) for m in MEASURES}
        self.reference = {m: np.zeros(0) for m in MEASURES}
        self.last_level = {m: np.zeros(0) for m in MEASURES}
        # ``since`` as codes of the times (a run's time is shared by all it changes; 0: none).
        self.since = {m: np.zeros(0, dtype=np.int32) for m in MEASURES}
        self._times: list[str | None] = [None]
        self._time_code: dict[str | None, int] = {None: 0}
        self.baseline = drift.Baseline.empty(0)
        self.record(stored)  # pairs with a state but no count get a position (a = 0)

    def fit_size(self) -> None:
        """Room for every pair position; arrays grow by a quarter at a time, so that the new
        pairs of each batch do not copy them all (they may be longer than the pairs)."""
        size = self.columns.size
        for arrays in (
            self.status,
            self.failures,
            self.last_a,
            self.reference,
            self.last_level,
            self.since,
        ):
            for measure, column in arrays.items():
                if column.size < size:
                    extra = np.zeros(drift.room(column.size, size), dtype=column.dtype)
                    arrays[measure] = np.concatenate([column, extra]) if column.size else extra
        self.baseline.grow(size)

    def record(self, states: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        """Take these stored (product, event, measure) states as the current ones."""
        if not states:
            self.fit_size()
            return
        keys = list(states)
        labels = [np.array([k[i] for k in keys] + [None], dtype=object)[:-1] for i in (0, 1)]
        positions = self.columns.positions(*labels)
        self.fit_size()
        for (_, _, measure), at, row in zip(keys, positions.tolist(), states.values(), strict=True):
            self.status[measure][at] = CODES[row["status"]]
            self.since[measure][at] = self.time_code(row["since"])
            self.failures[measure][at] = row["failures"]
            self.last_a[measure][at] = row["last_a"]
            self.reference[measure][at] = row["reference"]
            level = row["last_level"]
            self.last_level[measure][at] = np.nan if level is None else level

    def before(self, measure: str, at: np.ndarray, now: str) -> dict[str, np.ndarray]:
        """The state fields of pvsignal.lifecycle.Candidates at these positions."""
        return {
            "status": self.status[measure][at],
            "reference": self.reference[measure][at],
            "failures": self.failures[measure][at],
            "last_a": self.last_a[measure][at],
            "last_level": self.last_level[measure][at],
            "since_is_now": self.since[measure][at] == self._time_code.get(now, -1),
        }

    def time_code(self, time: str | None) -> int:
        code = self._time_code.get(time)
        if code is None:
            code = self._time_code[time] = len(self._times)
            self._times.append(time)
        return code

    def times(self, codes: np.ndarray) -> list[str | None]:
        """The times of these ``since`` codes."""
        return [self._times[code] for code in codes.tolist()]

    def after(
        self, measure: str, at: np.ndarray, candidates: Candidates, walked: Walked, now: str
    ) -> dict[str, np.ndarray]:
        """Take the walk's written states as the current ones; them, as columns (positions,
        status codes, since codes, reference, failures, last_a, last_level)."""
        write = walked.write
        at = at[write]
        since = np.where(walked.since_now[write], self.time_code(now), self.since[measure][at])
        written = {
            "at": at,
            "status": walked.status[write],
            "since": since,
            "reference": walked.reference[write],
            "failures": walked.failures[write],
            "last_a": candidates.a[write],
            "last_level": candidates.level[write],
        }
        for name in ("status", "since", "reference", "failures", "last_a", "last_level"):
            getattr(self, name)[measure][at] = written[name]
        return written

    def state_columns(self, written: dict[str, dict[str, np.ndarray]]) -> StateColumns:
        """Every measure's written states (measure -> :meth:`after`'s columns) as the store's
        columns, in the order of its key (product, event, measure): upserted in that order they
        touch each page of the table once. After a cold start the first run moves every
        ``new`` signal to ``ongoing``, about 10^5 rows at national scale."""
        names = np.array(list(written), dtype=object)
        sizes = [columns["at"].size for columns in written.values()]
        measure_code = np.repeat(np.arange(names.size), sizes)
        joined = {
            field: np.concatenate([columns[field] for columns in written.values()])
            for field in next(iter(written.values()))
        }
        at = joined["at"]
        products, events = self.columns.pair_product[at], self.columns.pair_event[at]
        product_labels, event_labels = self.columns.products.array(), self.columns.events.array()
        order = np.lexsort(
            (
                _label_ranks(names, measure_code),
                _label_ranks(event_labels, events),
                _label_ranks(product_labels, products),
            )
        )
        statuses = np.array(STATUSES, dtype=object)
        return StateColumns(
            product_labels[products[order]].tolist(),
            event_labels[events[order]].tolist(),
            names[measure_code[order]].tolist(),
            statuses[joined["status"][order] - 1].tolist(),
            self.times(joined["since"][order]),
            joined["reference"][order].tolist(),
            joined["failures"][order].tolist(),
            joined["last_a"][order].astype(np.int64).tolist(),
            joined["last_level"][order].tolist(),
        )

    def labels(self, position: int) -> tuple[str, str]:
        """The (product, event) of a pair position."""
        columns = self.columns
        return (
            columns.products.names[columns.pair_product[position]],
            columns.events.names[columns.pair_event[position]],
        )


class _LazyPairTable:
    """Every observed pair of a scope as a PairTable, built only if read (the prior reads the
    labelled counts only when a fit is due)."""

    def __init__(
        self,
        reports: int,
        strata: int,
        build: Callable[[], PairTable],
        *,
        detach: Callable[[], Callable[[], PairTable]] | None = None,
    ) -> None:
        """``detach()``: a builder of the same table that another thread may call later (from
        a copy of the counts as they are when it is called); None: only ``build``, here."""
        self.reports, self.strata, self._build = reports, strata, build
        self.detach = detach
        self._table: PairTable | None = None

    def built(self) -> PairTable:
        if self._table is None:
            self._table = self._build()
        return self._table

    @property
    def product(self) -> np.ndarray:
        return self.built().product

    @property
    def event(self) -> np.ndarray:
        return self.built().event

    @property
    def counts(self) -> Any:
        return self.built().counts


def signal_link(scope: str, product: str, event: str) -> str:
    """The API path of one pair's signal (each part URL-quoted, slashes included)."""
    return "/v1/signals/" + "/".join(map(_quoted, (scope, product, event)))


@functools.lru_cache(maxsize=65_536)
def _quoted(part: str) -> str:
    # Cached: a cold run links tens of thousands of alerts over a few thousand labels.
    return quote(part, safe="")


def _fit(
    table: Callable[[], PairTable],
    starts: tuple[Hyperparameters, ...],
    cases: int,
    warm: bool,
    squash_pairs: int | None,
) -> tuple[Fit, dict[str, Any]]:
    """The MGPS fit over the table's pairs (on the fitting thread), on DuMouchel's squashed
    points above ``squash_pairs`` pairs (``DetectionConfig.squash_pairs``)."""
    counts = table().counts
    squashing = None if squash_pairs is None or counts.a.size <= squash_pairs else Squash()
    fit = fit_hyperparameters(counts.a, counts.expected, starts=starts, squashing=squashing)
    return fit, {"theta_source": "fitted", "cases": cases, "warm_start": warm, **fit.report()}


def _label_ranks(labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each code's rank among the given codes' labels in code-point order."""
    distinct, inverse = np.unique(codes, return_inverse=True)
    rank = np.empty(distinct.size, dtype=np.int64)
    rank[np.argsort(labels[distinct], kind="stable")] = np.arange(distinct.size)
    return rank[inverse]


def _take(column: np.ndarray, row: np.ndarray, fill: Any) -> np.ndarray:
    """The column's values at the table rows, ``fill`` where a row is -1 (no row)."""
    out = np.full(row.size, fill, dtype=np.asarray(column).dtype)
    found = row >= 0
    out[found] = column[row[found]]
    return out


def _statistics_rows(stats: dict[str, np.ndarray], indices: list[int]) -> dict[int, dict[str, Any]]:
    """The reported statistics of the given pairs, as JSON-ready dicts keyed by pair index."""
    taken = np.asarray(indices, dtype=np.intp)
    columns = [_plain_column(stats[name][taken]) for name in REPORTED]
    return {
        i: dict(zip(REPORTED, row, strict=True)) for i, *row in zip(indices, *columns, strict=True)
    }


def _plain_column(values: np.ndarray) -> list[float | int | None]:
    """:func:`_plain` of every value, converted over the whole column at once (a cold run
    reports millions of values)."""
    number = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(number)
    whole = finite & (number == np.floor(number)) & (np.abs(number) < 2**53)
    out = number.astype(object)
    out[whole] = number[whole].astype(np.int64).astype(object)
    out[~finite] = None
    return out.tolist()


def _plain(value: float) -> float | int | None:
    number = float(value)
    if not np.isfinite(number):
        return None
    return int(number) if number.is_integer() and abs(number) < 2**53 else number
