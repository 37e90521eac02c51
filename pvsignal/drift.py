"""Which open signals the growth of N and of the margins cannot have moved: the bounds that
let incremental detection skip them.

A signal that is open past ``new``, without failures, whose pair's count ``a`` is the one of
its last evaluation, changes nothing when evaluated again as long as its rule still holds and
its level stays strictly within ``change_log2`` of its reference (``detection._steady``).
Between two detector runs other pairs' reports move N, the pair's margins and so its expected
count E; the functions here certify, per measure, that the rule still holds and the level is
still inside the band *without* computing the expensive statistics. A pair they do not
certify is re-evaluated exactly; a certified one is provably left as a full rescoring would
leave it. Every comparison keeps a margin ``TOLERANCE`` on the log2 scale (the posterior
quantiles are solved to a relative 1e-9), so a statistic computed to within rounding of a
threshold is always re-evaluated.

The argument, per measure (a fixed; ``E0`` the expected count at the pair's last exact
evaluation, ``E1`` now):

- **PRR and chi-square, ROR lower bound.** Closed forms in the four cells, which the margins
  in memory give exactly; the bound is the value itself, computed with the detectors' own
  functions (a few arithmetic operations per pair, no special functions but a log).
- **IC025.** ``IC025 = log2(G(a)) - log2(E + k)`` with ``G(a)`` the standard gamma quantile of
  shape ``a + k`` (Norén 2013, ``k = 0.5``): with ``a`` fixed it moves by exactly
  ``log2((E0 + k) / (E1 + k))``.
- **EB05** (MGPS with a fixed prior). The posterior of lambda is
  ``p_E(l) ∝ prior(l) l^a exp(-l E)``, so ``p_E1(l) = p_E0(l) exp(-l Δ) / Z`` with
  ``Δ = E1 - E0`` and ``Z = E_E0[exp(-l Δ)]``, which for the two-gamma posterior mixture is
  ``Z = Σ_k Q_k (1 + Δ / (β_k + E0)) ** -(α_k + a)`` (its moment generating function).
  (i) Exponential tilting orders the posteriors (monotone likelihood ratio in l): EB05 never
  rises when E grows and never falls when E shrinks, whatever the prior.
  (ii) When E grows (Δ > 0), ``exp(-l Δ) <= 1`` gives ``F_E1(x) <= F_E0(x) / Z``: below
  ``x_{pκ}(E0)`` (the posterior's pκ quantile at E0) ``F_E1 < pκ / Z <= p`` when ``Z >= κ``,
  so ``EB05(E1) >= x_{pκ}(E0)``.
  (iii) When E shrinks (Δ < 0), ``exp(-l Δ) >= 1`` gives ``F_E1(x) >= F_E0(x) / Z`` (now
  ``Z >= 1``): at ``x = x_{p/κ}(E0)``, ``F_E1 >= p / (κ Z) >= p`` when ``Z <= 1/κ``, so
  ``EB05(E1) <= x_{p/κ}(E0)``.
  So each exact evaluation keeps EB05 with the pκ and p/κ quantiles beside it and Qn; with
  those, EB05 now lies in ``[x_{pκ}(E0), EB05(E0)]`` or ``[EB05(E0), x_{p/κ}(E0)]``, or the
  pair is re-evaluated when Z leaves ``[κ, 1/κ]``.

The bounds hold from a pair's last exact evaluation (its baseline) for as long as its count
and the prior stay the same. A refit (θ changed) moves EBGM alone: PRR, ROR and IC do not
depend on θ, so their baselines stay, and the EBGM ones become stale (``prior_valid``), which
re-evaluates every open EBGM signal at the next run. No other pair's EBGM state can change at
that run: a pair without an open signal is a candidate only where EBGM now flags it, and then
opens only if its count grew (a pair whose count did not grow does not open only because its
statistic moved, pvsignal.lifecycle's ``quiet_opening``), and a pair whose count changed is
re-evaluated anyway. A run in which the bounds certify too little to be worth it
(``DetectionConfig.sweep_share``) re-evaluates every pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.frequentist import chi_square, prr, ror
from detectors.mgps import Hyperparameters, posterior
from detectors.table import cells
from pvsignal.scoring import ScoringConfig

TOLERANCE = 1e-6  # on the log2 scale: far above the rounding of any statistic
KAPPA = 0.9  # the side quantiles kept for EB05 are at p * KAPPA and p / KAPPA


@dataclass
class Baseline:
    """Each pair's statistics at its last exact evaluation, by pair position."""

    valid: np.ndarray  # bool: evaluated with the current prior and its current count
    a: np.ndarray
    expected: np.ndarray
    ic025: np.ndarray
    eb05: np.ndarray
    eb_low: np.ndarray  # x_{p KAPPA}, nan where not computed
    eb_high: np.ndarray  # x_{p / KAPPA}
    qn: np.ndarray
    prior_valid: np.ndarray  # bool: eb05, eb_low, eb_high and qn are the current prior's

    @classmethod
    def empty(cls, size: int) -> Baseline:
        nan = np.full(size, np.nan)
        unset = np.zeros(size, dtype=bool)
        return cls(unset, *(nan.copy() for _ in range(7)), unset.copy())

    def prior_changed(self) -> None:
        """θ changed: the EBGM statistics kept no longer certify anything (the others do)."""
        self.prior_valid[:] = False

    def grow(self, size: int) -> None:
        """Room for ``size`` positions (growing by a quarter at a time)."""
        for name, column in vars(self).items():
            if column.size < size:
                fill = False if column.dtype == bool else np.nan
                extra = np.full(room(column.size, size), fill, dtype=column.dtype)
                setattr(self, name, np.concatenate([column, extra]))

    def record(
        self,
        positions: np.ndarray,
        stats: dict[str, np.ndarray],
        theta: Hyperparameters,
        config: ScoringConfig,
    ) -> None:
        """Keep the statistics of a scored table (positions: its pairs' positions), with the
        side quantiles of EB05 for the pairs EBGM flags (the only ones it certifies)."""
        self.valid[positions] = True
        self.prior_valid[positions] = True
        self.a[positions] = stats["a"]
        self.expected[positions] = stats["expected"]
        self.ic025[positions] = stats["ic025"]
        self.eb05[positions] = stats["eb05"]
        self.qn[positions] = stats["qn"]
        self.eb_low[positions] = np.nan
        self.eb_high[positions] = np.nan
        flagged = np.flatnonzero(stats["signal_ebgm"])
        if flagged.size:
            p = config.eb_lower
            side = posterior(
                stats["a"][flagged],
                stats["expected"][flagged],
                theta,
                lower=p * KAPPA,
                upper=min(p / KAPPA, 0.5 * (1 + p)),
            )
            self.eb_low[positions[flagged]] = side.lower
            self.eb_high[positions[flagged]] = side.upper


def room(capacity: int, size: int) -> int:
    """How many positions to add to an array of ``capacity`` to hold ``size``: at least a
    quarter more, so that appending a batch's new pairs is amortised; and from empty (a load)
    a quarter more than ``size``, so that the first batch after a start copies nothing."""
    at_least = size + size // 4 if capacity == 0 else size
    return max(at_least, capacity + capacity // 4 + 1_024) - capacity


def within_band(value_log2: np.ndarray, reference: np.ndarray, change_log2: float) -> np.ndarray:
    """Is the level certainly strictly within ``change_log2`` of the reference?"""
    return np.abs(value_log2 - reference) < change_log2 - TOLERANCE


def certain_ratio(
    measure: str,
    a: np.ndarray,
    n_product: np.ndarray,
    n_event: np.ndarray,
    n_total: float,
    reference: np.ndarray,
    config: ScoringConfig,
    change_log2: float,
) -> np.ndarray:
    """PRR (Evans: PRR, chi-square and a) or ROR (lower bound and a) pairs whose rule
    certainly holds and whose level stays in the band, from the current cells."""
    table = cells(a, n_product, n_event, n_total)
    with np.errstate(divide="ignore", invalid="ignore"):
        if measure == "prr":
            rule = config.prr_rule
            level = np.log2(
                prr(*table, level=config.prr_level, continuity=config.continuity).estimate
            )
            chi2 = chi_square(*table, yates=config.yates).statistic
            holds = (level >= np.log2(rule.min_prr) + TOLERANCE) & (
                chi2 >= rule.min_chi2 * (1 + TOLERANCE) + TOLERANCE
            )
        else:
            rule = config.ror_rule
            level = np.log2(ror(*table, level=config.ror_level, continuity=config.continuity).lower)
            holds = level > np.log2(rule.min_lower) + TOLERANCE
        return holds & (a >= rule.min_a) & within_band(level, reference, change_log2)


def certain_ic(
    baseline: Baseline,
    positions: np.ndarray,
    expected_now: np.ndarray,
    reference: np.ndarray,
    config: ScoringConfig,
    change_log2: float,
    shrinkage: float = 0.5,
) -> np.ndarray:
    """IC pairs whose IC025, shifted exactly by the change of E, stays flagged and in band."""
    shifted = shifted_ic025(
        baseline.ic025[positions], baseline.expected[positions], expected_now, shrinkage
    )
    return (shifted > config.ic_rule.min_lower + TOLERANCE) & within_band(
        shifted, reference, change_log2
    )


def shifted_ic025(
    ic025: np.ndarray, expected_then: np.ndarray, expected_now: np.ndarray, shrinkage: float = 0.5
) -> np.ndarray:
    """IC025 at the current E from IC025 at an earlier E, the count being the same."""
    return ic025 + np.log2(expected_then + shrinkage) - np.log2(expected_now + shrinkage)


def certain_ebgm(
    baseline: Baseline,
    positions: np.ndarray,
    expected_now: np.ndarray,
    reference: np.ndarray,
    theta: Hyperparameters,
    config: ScoringConfig,
    change_log2: float,
) -> np.ndarray:
    """EBGM pairs whose EB05 is certainly still >= the rule's and in band (see the module)."""
    a = baseline.a[positions]
    e0 = baseline.expected[positions]
    qn = baseline.qn[positions]
    delta = expected_now - e0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = qn * (1 + delta / (theta.beta1 + e0)) ** -(theta.alpha1 + a) + (1 - qn) * (
            1 + delta / (theta.beta2 + e0)
        ) ** -(theta.alpha2 + a)
        grew = delta >= 0
        eb05 = baseline.eb05[positions]
        low = np.where(grew, baseline.eb_low[positions], eb05)
        high = np.where(grew, eb05, baseline.eb_high[positions])
        bounded = np.where(grew, z >= KAPPA, z <= 1 / KAPPA)
        low_log2, high_log2 = np.log2(low), np.log2(high)
        return (
            bounded
            & (low_log2 >= np.log2(config.ebgm_rule.min_eb05) + TOLERANCE)
            & (high_log2 - reference < change_log2 - TOLERANCE)
            & (reference - low_log2 < change_log2 - TOLERANCE)
        )
