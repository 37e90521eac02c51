"""The signal lifecycle of pvsignal.detection, walked over arrays: one measure's candidates at once.

The rules are :func:`pvsignal.detection.next_state`'s and the detector's choice of which
candidates to evaluate (see pvsignal.detection's docstring); this module applies them to every
candidate pair of one measure with numpy, so that a run's cost does not grow with a Python step
per pair. Statuses are small integers (``CODES``; 0: the pair has no state), and so are
transitions (``TRANSITIONS``; 0: none). ``tests/pvsignal/test_lifecycle_walk.py`` checks the walk
against the per-pair rules on random inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STATUSES = ("new", "ongoing", "strengthened", "weakened", "closed")
CODES = {name: code for code, name in enumerate(STATUSES, start=1)}
NO_STATE, NEW, ONGOING, STRENGTHENED, WEAKENED, CLOSED = range(6)
# Alerting transitions by code (0: none), in the order of their significance.
TRANSITIONS = (None, "new", "strengthened", "weakened", "closed")
_T_NEW, _T_STRENGTHENED, _T_WEAKENED, _T_CLOSED = range(1, 5)


def levels(measure: str, values: np.ndarray) -> np.ndarray:
    """:func:`pvsignal.detection.level` of every value: log2 of the statistic (IC025 is
    already on that scale); an undefined statistic (nan) or one at 0 is at -inf."""
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    if measure != "ic":
        out[:] = -np.inf
        positive = values > 0
        # math.log2, not np.log2: they can differ in the last bit, and levels stored by the
        # per-pair code (and compared with a step, ties included) must not move.
        out[positive] = list(map(math.log2, values[positive].tolist()))
    out[np.isnan(values)] = -np.inf
    return out


@dataclass(frozen=True)
class Candidates:
    """One measure's candidate pairs as the run finds them, and their states before it.

    ``grew``: the pair's count grew since the detector's previous update of the scope (True
    at its first update: nothing to compare with). ``last_level`` is nan where the stored
    state has none. ``since_is_now``: the stored ``since`` equals this run's time (a clock that
    did not move). The state fields mean nothing where ``status`` is 0."""

    flagged: np.ndarray
    level: np.ndarray
    a: np.ndarray
    grew: np.ndarray
    in_table: np.ndarray
    status: np.ndarray
    reference: np.ndarray
    failures: np.ndarray
    last_a: np.ndarray
    last_level: np.ndarray
    since_is_now: np.ndarray


@dataclass(frozen=True)
class Walked:
    """The outcome for each candidate: the state after the run (where ``status`` > 0),
    whether ``since`` became the run's time, the alerting transition, whether the state is
    written and whether the pair's statistics go to the history."""

    evaluated: np.ndarray
    status: np.ndarray
    reference: np.ndarray
    failures: np.ndarray
    since_now: np.ndarray
    transition: np.ndarray
    write: np.ndarray
    point: np.ndarray


def walk(c: Candidates, *, close_after: int, change_log2: float) -> Walked:
    """Evaluate the candidates that need it and advance their states (``next_state``)."""
    had = c.status > NO_STATE
    was_open = had & (c.status < CLOSED)
    with np.errstate(invalid="ignore"):
        rise, fall = c.level - c.reference, c.reference - c.level
        # An infinite level that stays infinite is no move: inf - inf is nan, never >= a step.
        steady = (
            (c.status >= ONGOING)
            & (c.status <= WEAKENED)
            & (c.failures == 0)
            & (c.last_a == c.a)
            & (np.abs(rise) < change_log2)
        )
        strengthens, weakens = rise >= change_log2, fall >= change_log2
    # A pair that did not grow does not open only because other pairs' reports moved E.
    quiet_opening = c.flagged & ~was_open & ~c.grew
    nothing_new = had & ((c.flagged & steady) | ~_moved(c))
    evaluated = ~quiet_opening & ~nothing_new

    status, reference = c.status.copy(), c.reference.copy()
    failures = c.failures.copy()
    since_now = np.zeros(c.a.size, dtype=bool)
    transition = np.zeros(c.a.size, dtype=np.int8)

    def become(where: np.ndarray, code: int, alert: int = 0) -> None:
        status[where], reference[where], failures[where] = code, c.level[where], 0
        since_now[where] = True
        transition[where] = alert

    opens = evaluated & ~was_open & c.flagged
    become(opens, NEW, _T_NEW)
    failing = evaluated & was_open & ~c.flagged
    failures[failing] += 1
    become(failing & (failures >= close_after), CLOSED, _T_CLOSED)
    holding = evaluated & was_open & c.flagged
    become(holding & (c.status == NEW), ONGOING)
    rest = holding & (c.status != NEW)
    become(rest & strengthens, STRENGTHENED, _T_STRENGTHENED)
    become(rest & ~strengthens & weakens, WEAKENED, _T_WEAKENED)
    failures[rest & ~strengthens & ~weakens] = 0

    differs = (
        (status != c.status)
        | (since_now & ~c.since_is_now)
        | (reference != c.reference)
        | (failures != c.failures)
        | (c.last_a != c.a)
    )
    exists = had | opens
    write = evaluated & exists & (~had | ~c.flagged | differs)
    point = evaluated & c.in_table & (~had | (c.last_a != c.a) | (transition > 0))
    return Walked(evaluated, status, reference, failures, since_now, transition, write, point)


def _moved(c: Candidates) -> np.ndarray:
    """Has the count or the level changed since the state's last evaluation? (Levels that
    are both finite move by more than 1e-12; otherwise only a change of finiteness counts.)"""
    known = ~np.isnan(c.last_level)
    finite_now, finite_then = np.isfinite(c.level), np.isfinite(c.last_level)
    with np.errstate(invalid="ignore"):
        drifted = np.where(
            finite_now & finite_then,
            np.abs(c.level - c.last_level) > 1e-12,
            finite_now != finite_then,
        )
    return (c.last_a != c.a) | ~known | drifted
