"""Exact (Garwood) Poisson intervals for counts, incidence rates and observed/expected ratios.

A count ``c`` of events is taken as Poisson. Its central exact interval at level ``1 - a`` is
Garwood's [1]_: the means whose upper (lower) tail probability of ``c`` equals ``a/2``, i.e.
``[chi2(a/2; 2c) / 2, chi2(1 - a/2; 2c + 2) / 2]`` with the lower bound 0 when ``c = 0``. The same
quantiles are the gamma distribution's, ``gammaincinv(c, a/2)`` and ``gammaincinv(c + 1, 1 - a/2)``,
which is how they are computed here.

An incidence rate divides the count by its exposure (patients, or patient-time), an
observed/expected ratio by the events expected under a reference rate; both take the exposure or
the expectation as known, so their intervals are the count's interval divided by it [2]_. A zero
exposure or expectation has no rate: estimate and bounds are nan (``inf`` estimate when events
were seen without any expectation behind them).

References
----------
.. [1] Garwood F (1936). Fiducial limits for the Poisson distribution. Biometrika 28:437-442.
.. [2] Breslow NE, Day NE (1987). Statistical Methods in Cancer Research, vol. II: the design and
   analysis of cohort studies. IARC Scientific Publications 82, ch. 2 (SMR and its exact limits).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from detectors._arrays import FloatArray, as_counts, as_positive, check_probability
from detectors.frequentist import Estimate


class Interval(NamedTuple):
    """The two bounds of an interval."""

    lower: FloatArray
    upper: FloatArray


def garwood_interval(count: ArrayLike, level: float = 0.95) -> Interval:
    """Exact central confidence interval for a Poisson mean, given the observed count.

    Examples
    --------
    >>> lower, upper = garwood_interval([0, 7])
    >>> lower.round(6).tolist(), upper.round(6).tolist()
    ([0.0, 2.814363], [3.688879, 14.422675])
    """
    c = as_counts("count", count)
    tail = (1.0 - check_probability("level", level)) / 2.0
    with np.errstate(invalid="ignore"):  # gammaincinv(0, .) is nan; that bound is 0 by definition
        lower = np.where(c > 0, special.gammaincinv(c, tail), 0.0)
    upper = special.gammaincinv(c + 1.0, 1.0 - tail)
    return Interval(lower, upper)


def rate_interval(
    count: ArrayLike, exposure: ArrayLike, level: float = 0.95, per: float = 1000.0
) -> Estimate:
    """Incidence ``per`` units of exposure (1,000 patients by default) with its exact interval.

    Examples
    --------
    >>> r = rate_interval(7, 412)
    >>> round(float(r.estimate), 4), round(float(r.lower), 4), round(float(r.upper), 4)
    (16.9903, 6.831, 35.0065)
    """
    return _divided(count, as_positive("exposure", exposure, allow_zero=True) / per, level)


def ratio_interval(observed: ArrayLike, expected: ArrayLike, level: float = 0.95) -> Estimate:
    """Observed/expected ratio (a standardised incidence ratio) with its exact interval.

    Examples
    --------
    >>> r = ratio_interval(7, 2.3)
    >>> round(float(r.estimate), 4), round(float(r.lower), 4), round(float(r.upper), 4)
    (3.0435, 1.2236, 6.2707)
    """
    return _divided(observed, as_positive("expected", expected, allow_zero=True), level)


def _divided(count: ArrayLike, denominator: FloatArray, level: float) -> Estimate:
    """The count's estimate and Garwood bounds divided by a known denominator (nan bounds at 0)."""
    c = as_counts("count", count)
    lower, upper = garwood_interval(c, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        known = denominator > 0
        return Estimate(
            c / denominator,  # 0/0 = nan, c/0 = inf
            np.where(known, lower / denominator, np.nan),
            np.where(known, upper / denominator, np.nan),
        )
