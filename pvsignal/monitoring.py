"""Active monitoring: a Poisson MaxSPRT per monitored product × PT, kept current as exposures
and cases arrive, its signal moving through the same lifecycle and alerts as
disproportionality signals (``measure = "maxsprt"``).

For each scope whose configuration names products under monitoring (``Scope.monitoring``),
each product × PT with a reference rate has a test (``detectors.sequential``):

- expected so far μ = Σ patients exposed × reference rate (``pvsignal.rates.expected_cases``),
  observed c = the scope's cases of the pair. Each update feeds the test what was added since
  its last update; a correction or withdrawal that lowers μ or c is not taken back (a
  sequential test cannot unsee what it judged): the test waits until the totals pass what it
  has already seen.
- the test's state (μ, c, LLR, critical value, alpha spent, signalled, ended) is stored per
  scope, product and PT; a change of the design (alpha, length, minimum events) starts a new
  test.
- lifecycle: ``pvsignal.detection.next_state`` with the signal flagged once the LLR reached
  the critical value (a MaxSPRT signal is final), the level being log2 of c/μ at the signal. So
  the test alerts ``new`` exactly once, and later becomes ``ongoing`` without an alert.

Every update of a scope reads, decides and writes in one exclusive transaction (the batch
writers' lock), so two processes running it (the reports consumer and the exposures consumer,
or the API) never alert one transition twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol

from detectors.sequential import SequentialState, start, update
from pvsignal.detection import (
    DetectionConfig,
    SignalState,
    alert_product,
    level,
    next_state,
    signal_link,
)
from pvsignal.institutions import InstitutionRegistry
from pvsignal.products import Registry
from pvsignal.rates import Exposed, expected_cases, exposed_in_scope, observed_cases
from pvsignal.scopes import MonitoredProduct, Scope, ScopeConfig
from pvsignal.store import SqlStore
from pvsignal.store.access import PRODUCTS_WRITTEN

MEASURE = "maxsprt"


class Detects(Protocol):
    def update(self, scopes: Iterable[str]) -> list[dict[str, Any]]: ...


class Monitor:
    """Keeps every configured sequential test current; ``update(scopes)`` like a Detector."""

    def __init__(
        self, store: SqlStore, scopes: ScopeConfig, config: DetectionConfig | None = None
    ) -> None:
        self.store, self.config = store, config or DetectionConfig()
        self.scopes = {s.name: s for s in scopes.all_scopes() if s.monitoring.products}
        self._registry: tuple[str | None, Registry, InstitutionRegistry] | None = None

    def update(self, scopes: Iterable[str]) -> list[dict[str, Any]]:
        """Bring the tests of the given scopes up to date; the alerts this made (also stored)."""
        alerts: list[dict[str, Any]] = []
        for name in sorted(set(scopes) & set(self.scopes)):
            alerts += self._update_scope(self.scopes[name])
        return alerts

    def _registries(self) -> tuple[Registry, InstitutionRegistry]:
        mark = self.store.setting(PRODUCTS_WRITTEN)
        if self._registry is None or self._registry[0] != mark:
            self._registry = (
                mark,
                Registry(self.store.load_products()),
                InstitutionRegistry(self.store.load_institutions()),
            )
        return self._registry[1], self._registry[2]

    def _update_scope(self, scope: Scope) -> list[dict[str, Any]]:
        registry, institutions = self._registries()
        monitored = {p.product_id: p for p in scope.monitoring.products}
        with self.store.batch():  # the batch writers' lock: one monitor at a time
            exposed = exposed_in_scope(
                self.store.exposure_counts(monitored), scope, registry, institutions
            )
            cases = observed_cases(self.store, scope.name, monitored)
            stored = self.store.sequential_tests(scope.name)
            lifecycle = {
                (p, e): s
                for (p, e, m), s in self.store.signal_states(scope.name).items()
                if m == MEASURE
            }
            now = dt.datetime.now(dt.UTC).isoformat()
            tests: dict[tuple[str, str], dict[str, Any]] = {}
            states: dict[tuple[str, str, str], dict[str, Any]] = {}
            history: list[tuple[str, str, int, dict[str, Any]]] = []
            alerts: list[dict[str, Any]] = []
            for product_id, product in sorted(monitored.items()):
                group = exposed.get(product_id, {}).get("total", Exposed())
                for pt in sorted({r.pt for r in product.references}):
                    expected, _ = expected_cases(group, product.references, pt)
                    if expected is None:
                        continue  # a stratum without a reference rate: μ unknown, no test
                    observed = cases.get((product_id, pt), {}).get("total", 0)
                    key = (product_id, pt)
                    before = _stored_test(stored.get(key), product)
                    after = advance(before, expected, observed)
                    if after is None and key in stored:
                        continue  # nothing new for this test
                    after = after or before
                    tests[key] = dataclasses.asdict(after)
                    statistics = _statistics(after)
                    if after != before:
                        history.append(
                            (product_id, pt, after.observed, {"measure": MEASURE, **statistics})
                        )
                    row, transition = self._advance(lifecycle.get(key), after, statistics, now)
                    if row is not None:
                        states[(product_id, pt, MEASURE)] = row
                    if transition is not None:
                        alerts.append(
                            _alert(scope.name, key, transition, row, statistics, registry, now)
                        )
            self.store.save_sequential_tests(scope.name, tests, now)
            self.store.write_detection(
                scope.name,
                states,
                history,
                alerts,
                now,
                review_deadlines=self.config.review_deadline_days,
            )
        return alerts

    def _advance(
        self,
        old: dict[str, Any] | None,
        test: SequentialState,
        statistics: dict[str, Any],
        now: str,
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The lifecycle row after this evaluation (None: no state) and its alerting move."""
        flagged = test.signalled_at is not None
        if old is None and not flagged:
            return None, None
        previous = (
            None
            if old is None
            else SignalState(old["status"], old["since"], old["reference"], old["failures"])
        )
        value = statistics["rr_at_signal"] if flagged else statistics["rr"]
        state, transition = next_state(
            previous, flagged, value if value is not None else 0.0, MEASURE, self.config, now
        )
        if state is None:
            return None, None
        current = level(MEASURE, value) if value else float("-inf")
        return {**vars(state), "last_a": test.observed, "last_level": current}, transition


def advance(test: SequentialState, expected: float, observed: int) -> SequentialState | None:
    """The test fed with the totals now known (expected so far, cases so far): what they add to
    what it has seen. A total below what the test saw (a withdrawal, a nullified case) adds
    nothing; None when nothing was added. Cases of a product with no patients recorded yet
    wait for their denominator (registries often lag the reports): judged at μ = 0 they would
    be an infinite LLR, a "signal" of nothing but the order of arrival."""
    if expected <= 0:
        return None
    added_expected = max(0.0, expected - test.expected)
    added_observed = max(0, observed - test.observed)
    if not added_expected and not added_observed:
        return None
    return update(test, added_expected, added_observed)


def _stored_test(document: dict[str, Any] | None, product: MonitoredProduct) -> SequentialState:
    """The stored test, or a new one when there is none or its design changed."""
    if document is not None:
        test = SequentialState(**document)
        if (test.alpha, test.length, test.min_events) == (
            product.alpha,
            product.length,
            product.min_events,
        ):
            return test
    return start(product.length, product.min_events, product.alpha)


def _statistics(test: SequentialState) -> dict[str, Any]:
    rr = test.observed / test.expected if test.expected > 0 else None
    at_signal = None
    if test.signalled_at is not None and test.signalled_at > 0:
        at_signal = test.observed / test.signalled_at
    return {
        "a": test.observed,
        "observed": test.observed,
        "expected": test.expected,
        "rr": rr,
        "rr_at_signal": at_signal,
        "llr": test.llr,
        "critical_value": test.critical_value,
        "alpha": test.alpha,
        "alpha_spent": test.alpha_spent,
        "length": test.length,
        "min_events": test.min_events,
        "signalled_at": test.signalled_at,
        "ended": test.ended,
    }


def _alert(
    scope: str,
    pair: tuple[str, str],
    transition: str,
    state: dict[str, Any] | None,
    statistics: dict[str, Any],
    registry: Registry,
    now: str,
) -> dict[str, Any]:
    """The alert document, shaped as the disproportionality detector's (pvsignal.detection)."""
    product, event = pair
    return {
        "scope": scope,
        "product_id": product,
        "pt": event,
        "transition": transition,
        "changes": {MEASURE: transition},
        "at": now,
        "measures": {
            MEASURE: {
                "status": None if state is None else state["status"],
                "since": None if state is None else state["since"],
                "flagged": statistics["signalled_at"] is not None,
                "statistic": "rr",
                "value": statistics["rr_at_signal"],
            }
        },
        "statistics": statistics,
        **alert_product(registry, product),
        "link": signal_link(scope, product, event),
    }


class Monitored:
    """A detector followed by the monitor: where the service, the consumer and the CLI run
    detection, active monitoring runs right after, on the same scopes."""

    def __init__(self, detector: Detects, monitor: Monitor) -> None:
        self.detector, self.monitor = detector, monitor

    def update(self, scopes: Iterable[str]) -> list[dict[str, Any]]:
        scopes = sorted(set(scopes))
        return self.detector.update(scopes) + self.monitor.update(scopes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.detector, name)  # the detector's other attributes (store, config)
