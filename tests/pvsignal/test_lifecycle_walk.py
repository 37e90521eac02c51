"""The lifecycle walked over arrays (pvsignal.lifecycle) equals the per-pair walk it replaced.

The reference below is the detector's former loop body, one candidate at a time: the skips
(a pair that did not grow does not open; a steady or unmoved pair is not evaluated), then
``next_state``, then which state is written and which pair goes to the history. Random
candidates, drawn so that every branch is reached (ties at the step, infinite levels,
unknown last levels, a clock that did not move), must give the same outcome.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pvsignal.detection import DetectionConfig, SignalState, next_state
from pvsignal.lifecycle import CODES, STATUSES, TRANSITIONS, Candidates, levels, walk

CONFIG = DetectionConfig(close_after=3, change_log2=0.585)
NOW, EARLIER = "t1", "t0"


def reference(c: Candidates, value: float, k: int, measure: str, since: str):
    """One candidate as the per-pair loop handled it: (evaluated, state row or None,
    transition, written, point)."""
    flagged, a, current = bool(c.flagged[k]), float(c.a[k]), float(c.level[k])
    old = None
    if c.status[k]:
        last_level = float(c.last_level[k])
        old = {
            "status": STATUSES[c.status[k] - 1],
            "since": since,
            "reference": float(c.reference[k]),
            "failures": int(c.failures[k]),
            "last_a": float(c.last_a[k]),
            "last_level": None if math.isnan(last_level) else last_level,
        }
    if flagged and (old is None or old["status"] == "closed") and not c.grew[k]:
        return False, None, None, False, False
    if old is not None and ((flagged and _steady(old, a, current)) or not _moved(old, a, current)):
        return False, None, None, False, False
    previous = (
        None
        if old is None
        else SignalState(old["status"], old["since"], old["reference"], old["failures"])
    )
    state, transition = next_state(previous, flagged, value, measure, CONFIG, NOW)
    written = False
    row = None
    if state is not None:
        row = {**vars(state), "last_a": a, "last_level": current}
        written = old is None or not flagged or _differs(old, row)
    point = bool(c.in_table[k]) and (old is None or old["last_a"] != a or transition is not None)
    return True, row, transition, written, point


def _steady(old, a, current):
    return (
        old["status"] in ("ongoing", "strengthened", "weakened")
        and old["failures"] == 0
        and old["last_a"] == a
        and abs(current - old["reference"]) < CONFIG.change_log2
    )


def _moved(old, a, current):
    previous = old["last_level"]
    if old["last_a"] != a or previous is None:
        return True
    if not (np.isfinite(current) and np.isfinite(previous)):
        return np.isfinite(current) != np.isfinite(previous)
    return abs(current - previous) > 1e-12


def _differs(old, row):
    return any(
        old[name] != row[name] for name in ("status", "since", "reference", "failures", "last_a")
    )


def random_candidates(rng: np.random.Generator, n: int, measure: str):
    """Candidates of the measure and the statistic behind each level."""
    grid = np.array([-np.inf, np.inf, -1.0, 0.0, 0.585, 1.0, 1.17, 2.0])

    def levels_drawn() -> np.ndarray:
        # Levels on a grid (exact ties at the step) or anywhere.
        return np.where(rng.random(n) < 0.5, rng.choice(grid, n), rng.normal(0.5, 1.5, n))

    drawn = levels_drawn()
    value = drawn if measure == "ic" else np.exp2(drawn)
    value[rng.random(n) < 0.05] = np.nan
    level = levels(measure, value)
    a = rng.integers(0, 6, n).astype(float)
    last_level = np.where(rng.random(n) < 0.5, level, levels_drawn())
    last_level[rng.random(n) < 0.1] = np.nan
    candidates = Candidates(
        flagged=rng.random(n) < 0.6,
        level=level,
        a=a,
        grew=rng.random(n) < 0.5,
        in_table=rng.random(n) < 0.9,
        status=rng.integers(0, 6, n).astype(np.int8),
        reference=np.where(rng.random(n) < 0.5, level, levels_drawn()),
        failures=rng.integers(0, 3, n),
        last_a=np.where(rng.random(n) < 0.6, a, rng.integers(0, 6, n)).astype(float),
        last_level=last_level,
        since_is_now=rng.random(n) < 0.2,
    )
    return candidates, value


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("measure", ["prr", "ic"])
def test_the_array_walk_equals_the_per_pair_walk(seed, measure):
    rng = np.random.default_rng(seed)
    c, values = random_candidates(rng, 400, measure)
    walked = walk(c, close_after=CONFIG.close_after, change_log2=CONFIG.change_log2)
    for k in range(c.a.size):
        since = NOW if c.since_is_now[k] else EARLIER
        evaluated, row, transition, written, point = reference(
            c, float(values[k]), k, measure, since
        )
        assert bool(walked.evaluated[k]) == evaluated, k
        assert TRANSITIONS[walked.transition[k]] == transition, k
        assert bool(walked.write[k]) == written, k
        assert bool(walked.point[k]) == point, k
        if row is not None and evaluated:
            assert STATUSES[walked.status[k] - 1] == row["status"], k
            assert (NOW if walked.since_now[k] else since) == row["since"], k
            assert walked.reference[k] == row["reference"] or (
                np.isnan(walked.reference[k]) and np.isnan(row["reference"])
            ), k
            assert walked.failures[k] == row["failures"], k


def test_every_branch_is_reached_by_the_random_candidates():
    rng = np.random.default_rng(0)
    c, _ = random_candidates(rng, 4000, "prr")
    walked = walk(c, close_after=CONFIG.close_after, change_log2=CONFIG.change_log2)
    reached = {TRANSITIONS[t] for t in walked.transition[walked.evaluated].tolist()}
    assert reached == set(TRANSITIONS)
    assert (~walked.evaluated).any() and (walked.evaluated & ~walked.write).any()
    assert set(CODES.values()) <= set(walked.status[walked.evaluated].tolist())


def test_levels_are_log2_of_the_statistic_and_minus_infinity_when_undefined():
    values = np.array([4.0, 0.5, 0.0, np.nan, np.inf])
    np.testing.assert_array_equal(levels("prr", values), [2.0, -1.0, -np.inf, -np.inf, np.inf])
    np.testing.assert_array_equal(levels("ic", values), [4.0, 0.5, 0.0, -np.inf, np.inf])
