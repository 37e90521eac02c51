"""Frequentist disproportionality: PRR, ROR and Pearson's chi-square over 2x2 tables.

All functions take the four cells (see :mod:`detectors.table`) as arrays, one element per pair.

Zero cells are not hidden. Without a continuity correction the estimates follow the formulas
exactly: a zero denominator gives ``inf`` (or ``nan`` for 0/0), and the log-scale standard error
of a table with a zero cell in it is infinite, so the interval bounds are ``nan``. Pass
``continuity=0.5`` (Haldane–Anscombe) to add 0.5 to every cell of the tables that hold a zero.

References
----------
.. [1] Evans SJW, Waller PC, Davis S (2001). Use of proportional reporting ratios (PRRs) for
   signal generation from spontaneous adverse drug reaction reports. Pharmacoepidemiol Drug
   Saf 10:483-486.
.. [2] van Puijenbroek EP et al. (2002). A comparison of measures of disproportionality for
   signal detection in spontaneous reporting systems. Pharmacoepidemiol Drug Saf 11:3-10.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from detectors._arrays import FloatArray, as_counts, check_probability
from detectors.table import Cells


class Estimate(NamedTuple):
    """A point estimate with its two-sided interval at the requested level."""

    estimate: FloatArray
    lower: FloatArray
    upper: FloatArray


class ChiSquare(NamedTuple):
    """Pearson's chi-square statistic (1 degree of freedom) and its upper-tail p-value."""

    statistic: FloatArray
    pvalue: FloatArray


def _table(a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, continuity: float) -> Cells:
    cells = Cells(
        *np.broadcast_arrays(
            as_counts("a", a), as_counts("b", b), as_counts("c", c), as_counts("d", d)
        )
    )
    if continuity < 0:
        raise ValueError(f"continuity must be >= 0, got {continuity!r}")
    if continuity == 0:
        return cells
    has_zero = (cells.a == 0) | (cells.b == 0) | (cells.c == 0) | (cells.d == 0)
    shift = np.where(has_zero, continuity, 0.0)
    return Cells(*(cell + shift for cell in cells))


def _log_interval(log_estimate: FloatArray, se: FloatArray, level: float) -> Estimate:
    z = special.ndtri(0.5 + check_probability("level", level) / 2)
    with np.errstate(invalid="ignore", over="ignore"):
        bounded = np.isfinite(log_estimate) & np.isfinite(se)
        lower = np.where(bounded, np.exp(log_estimate - z * se), np.nan)
        upper = np.where(bounded, np.exp(log_estimate + z * se), np.nan)
        return Estimate(np.exp(log_estimate), lower, upper)


def prr(
    a: ArrayLike,
    b: ArrayLike,
    c: ArrayLike,
    d: ArrayLike,
    *,
    level: float = 0.95,
    continuity: float = 0.0,
) -> Estimate:
    """Proportional reporting ratio with its log-normal confidence interval.

    Parameters
    ----------
    a, b, c, d : array_like
        Cells of each pair's 2x2 table (distinct reports).
    level : float, optional
        Two-sided confidence level of the interval (0.95 by default).
    continuity : float, optional
        Added to all four cells of tables holding a zero cell (0 by default: no correction).

    Notes
    -----
    ``PRR = [a / (a + b)] / [c / (c + d)]`` and
    ``SE(ln PRR) = sqrt(1/a - 1/(a + b) + 1/c - 1/(c + d))`` [1]_.
    With ``c = 0`` the PRR is ``inf``; with ``a = 0`` it is 0; in both cases the bounds are nan.

    Examples
    --------
    >>> r = prr(5, 4, 4, 4)
    >>> round(float(r.estimate), 6), round(float(r.lower), 6), round(float(r.upper), 6)
    (1.111111, 0.448841, 2.750567)
    """
    a, b, c, d = _table(a, b, c, d, continuity)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_prr = np.log(a) - np.log(a + b) - np.log(c) + np.log(c + d)
        variance = 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)
        se = np.sqrt(np.maximum(variance, 0.0))
    return _log_interval(log_prr, se, level)


def ror(
    a: ArrayLike,
    b: ArrayLike,
    c: ArrayLike,
    d: ArrayLike,
    *,
    level: float = 0.95,
    continuity: float = 0.0,
) -> Estimate:
    """Reporting odds ratio with its Woolf (log-normal) confidence interval.

    Parameters
    ----------
    a, b, c, d : array_like
        Cells of each pair's 2x2 table (distinct reports).
    level : float, optional
        Two-sided confidence level (0.95 by default; 0.90 is also in use).
    continuity : float, optional
        Added to all four cells of tables holding a zero cell (0 by default: no correction).

    Notes
    -----
    ``ROR = a d / (b c)`` and ``SE(ln ROR) = sqrt(1/a + 1/b + 1/c + 1/d)`` [2]_.
    A zero in ``b`` or ``c`` gives ``inf``, in ``a`` or ``d`` gives 0; any zero cell leaves the
    bounds nan (infinite standard error).

    Examples
    --------
    >>> r = ror(5, 4, 4, 4)
    >>> round(float(r.estimate), 6), round(float(r.lower), 6), round(float(r.upper), 6)
    (1.25, 0.185038, 8.444203)
    """
    a, b, c, d = _table(a, b, c, d, continuity)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ror = np.log(a) + np.log(d) - np.log(b) - np.log(c)
        se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return _log_interval(log_ror, se, level)


def chi_square(
    a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, *, yates: bool = True
) -> ChiSquare:
    """Pearson's chi-square test of independence on each 2x2 table.

    Parameters
    ----------
    a, b, c, d : array_like
        Cells of each pair's 2x2 table.
    yates : bool, optional
        Apply Yates' continuity correction (the default, as in Evans et al. [1]_).

    Notes
    -----
    ``chi2 = N (|ad - bc| - k)^2 / [(a+b)(c+d)(a+c)(b+d)]`` with ``k = N/2`` under Yates'
    correction (the difference is floored at 0, as scipy's ``chi2_contingency`` does) and
    ``k = 0`` without. A table with an empty margin has no test: statistic and p-value are nan.
    The p-value is the upper tail of chi-square with one degree of freedom.

    Examples
    --------
    >>> r = chi_square(12, 88, 30, 870)
    >>> round(float(r.statistic), 4), round(float(r.pvalue), 6)
    (14.716, 0.000125)
    """
    a, b, c, d = _table(a, b, c, d, 0.0)
    n = a + b + c + d
    difference = np.abs(a * d - b * c)
    if yates:
        difference = np.maximum(difference - n / 2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = n * difference**2 / ((a + b) * (c + d) * (a + c) * (b + d))
    statistic = np.where(np.isfinite(statistic), statistic, np.nan)
    # Upper tail of chi-square(1) = erfc(sqrt(x / 2)): the same value, several times faster.
    return ChiSquare(statistic, special.erfc(np.sqrt(statistic / 2)))
