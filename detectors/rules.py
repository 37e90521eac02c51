"""Signal rules: thresholds per measure, their combination, and false-discovery-rate control.

Defaults follow common practice: Evans et al. for the PRR (PRR >= 2, chi-square >= 4, a >= 3),
the EMA-style ROR rule (lower bound > 1, a >= 3), IC025 > 0 for the BCPNN and EB05 >= 2 for MGPS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

BoolArray = NDArray[np.bool_]


def _ge(values: ArrayLike, threshold: float) -> BoolArray:
    # nan (an undefined statistic) never signals.
    return np.greater_equal(np.asarray(values, dtype=np.float64), threshold)


@dataclass(frozen=True)
class PrrRule:
    """Evans et al. (2001): PRR >= min_prr and chi-square >= min_chi2 and a >= min_a."""

    min_prr: float = 2.0
    min_chi2: float = 4.0
    min_a: int = 3

    def __call__(self, prr: ArrayLike, chi2: ArrayLike, a: ArrayLike) -> BoolArray:
        return _ge(prr, self.min_prr) & _ge(chi2, self.min_chi2) & _ge(a, self.min_a)


@dataclass(frozen=True)
class RorRule:
    """Lower confidence bound of the ROR > min_lower and a >= min_a."""

    min_lower: float = 1.0
    min_a: int = 3

    def __call__(self, ror_lower: ArrayLike, a: ArrayLike) -> BoolArray:
        return np.greater(np.asarray(ror_lower, dtype=np.float64), self.min_lower) & _ge(
            a, self.min_a
        )


@dataclass(frozen=True)
class IcRule:
    """Lower credibility bound of the IC > min_lower (0: more reports than expected)."""

    min_lower: float = 0.0

    def __call__(self, ic_lower: ArrayLike) -> BoolArray:
        return np.greater(np.asarray(ic_lower, dtype=np.float64), self.min_lower)


@dataclass(frozen=True)
class EbgmRule:
    """EB05 >= min_eb05 (DuMouchel's conservative screen)."""

    min_eb05: float = 2.0

    def __call__(self, eb05: ArrayLike) -> BoolArray:
        return _ge(eb05, self.min_eb05)


def combine(
    signals: Sequence[ArrayLike],
    *,
    mode: Literal["any", "all", "at_least"] = "any",
    k: int | None = None,
) -> BoolArray:
    """Combine per-measure signal flags: any of them, all of them, or at least ``k``.

    Examples
    --------
    >>> combine([[True, False, True], [False, False, True]], mode="at_least", k=2).tolist()
    [False, False, True]
    """
    stacked = np.asarray(signals, dtype=bool)
    if stacked.ndim < 2 or stacked.shape[0] == 0:
        raise ValueError("combine needs at least one array of signal flags")
    if mode == "any":
        return stacked.any(axis=0)
    if mode == "all":
        return stacked.all(axis=0)
    if mode == "at_least":
        if k is None or not 1 <= k <= stacked.shape[0]:
            raise ValueError(f"mode 'at_least' needs 1 <= k <= {stacked.shape[0]}, got k={k!r}")
        return stacked.sum(axis=0) >= k
    raise ValueError(f"mode must be 'any', 'all' or 'at_least', got {mode!r}")


def false_discovery(
    pvalues: ArrayLike, *, q: float = 0.05, method: str = "fdr_bh"
) -> tuple[BoolArray, NDArray[np.float64]]:
    """Benjamini–Hochberg (or another statsmodels ``multipletests`` method) over all pairs.

    Returns the rejection flags at false-discovery rate ``q`` and the adjusted p-values.
    Pairs with an undefined p-value (nan) are left out of the family and never rejected.

    Examples
    --------
    >>> reject, adjusted = false_discovery([0.01, 0.04, 0.03, 0.5])
    >>> reject.tolist(), [round(float(x), 3) for x in adjusted]
    ([True, False, False, False], [0.04, 0.053, 0.053, 0.5])
    """
    # statsmodels takes a third of a second to import: only pay for it when FDR is asked for.
    from statsmodels.stats.multitest import multipletests

    pvalues = np.asarray(pvalues, dtype=np.float64)
    defined = np.isfinite(pvalues)
    reject = np.zeros(pvalues.shape, dtype=bool)
    adjusted = np.full(pvalues.shape, np.nan)
    if defined.any():
        r, adj, _, _ = multipletests(pvalues[defined], alpha=q, method=method)
        reject[defined], adjusted[defined] = r, adj
    return reject, adjusted
