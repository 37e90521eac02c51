"""Sizes and counts: how many cases, duplicates, follow-ups, nullifications and re-sends.

The counts are exact (rounded shares of the config's rates), chosen so that the lines add up to
``reports``, and tests can compare them with a tight tolerance; which cases get them is drawn
later, at random.
"""

from __future__ import annotations

from dataclasses import dataclass

from pvsignal.simulate.config import SimulationConfig

_THIRD_VERSION = 0.2  # of cases with a follow-up, the share that gets a second one


@dataclass(frozen=True, slots=True)
class _Plan:
    cases: int  # content rows: the cases first reported by their first sender
    duplicates: int  # second case ids for the same patient and event
    follow_ups: int
    third_versions: int
    nullified: int
    duplicates_nullified: int  # duplicates also nullified by their own sender
    resends: int
    malformed: int
    out_of_order: int

    @property
    def identities(self) -> int:
        return self.cases + self.duplicates


def _plan(config: SimulationConfig) -> _Plan:
    malformed = min(round(config.reports * config.malformed_rate), config.reports - 1)
    valid = config.reports - malformed
    per_case = (
        1
        + config.duplicate_rate * 2.5
        + (config.follow_up_rate * (1 + _THIRD_VERSION) + config.nullification_rate)
        * (1 + config.duplicate_rate)
    )
    cases = max(1, int(valid / (per_case * (1 + config.resend_rate))))
    while True:
        plan = _counts(config, cases, malformed, valid)
        if plan.resends >= 0 or cases == 1:
            return plan
        cases -= 1


def _counts(config: SimulationConfig, cases: int, malformed: int, valid: int) -> _Plan:
    duplicates = min(round(config.duplicate_rate * cases), cases // 2)
    identities = cases + duplicates
    follow_ups = min(round(config.follow_up_rate * identities), cases)
    third = round(_THIRD_VERSION * follow_ups)
    nullified = min(round(config.nullification_rate * identities), cases - duplicates)
    dup_nullified = duplicates // 2
    without_resends = (
        identities + follow_ups + third + nullified + 2 * duplicates - (duplicates - dup_nullified)
    )
    return _Plan(
        cases=cases,
        duplicates=duplicates,
        follow_ups=follow_ups,
        third_versions=third,
        nullified=nullified,
        duplicates_nullified=dup_nullified,
        resends=valid - without_resends,
        malformed=malformed,
        out_of_order=round(config.out_of_order_rate * follow_ups),
    )
