"""The information component (IC) of the Bayesian confidence propagation neural network.

References
----------
.. [1] Bate A, Lindquist M, Edwards IR, et al. (1998). A Bayesian neural network method for
   adverse drug reaction signal generation. Eur J Clin Pharmacol 54:315-321.
.. [2] Norén GN, Hopstadius J, Bate A (2013). Shrinkage observed-to-expected ratios for robust
   and transparent large-scale pattern discovery. Stat Methods Med Res 22:57-69.
.. [3] Gould AL (2003). Practical pharmacovigilance analysis strategies.
   Pharmacoepidemiol Drug Saf 12:559-574.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from detectors._arrays import as_counts, as_positive, check_probability, per_count
from detectors.frequentist import Estimate

_LN2 = np.log(2.0)


def information_component(
    a: ArrayLike, expected: ArrayLike, *, level: float = 0.95, shrinkage: float = 0.5
) -> Estimate:
    """Shrunk observed-to-expected ratio on the log2 scale, with gamma credibility bounds.

    Parameters
    ----------
    a : array_like
        Observed reports of each pair.
    expected : array_like
        Expected count E of each pair (plain or stratified).
    level : float, optional
        Two-sided credibility level: 0.95 gives IC025 and IC975.
    shrinkage : float, optional
        The pseudo-count added to observed and expected (0.5 in [2]_).

    Notes
    -----
    ``IC = log2((a + k) / (E + k))`` with ``k = 0.5``; the bounds are the quantiles of a gamma
    distribution with shape ``a + k`` and rate ``E + k`` on the log2 scale [2]_:
    ``IC025 = log2(Gamma^-1(0.025; a + k, E + k))``.

    Examples
    --------
    >>> r = information_component(12, 5)
    >>> round(float(r.estimate), 5), round(float(r.lower), 7)
    (1.18442, 0.2542334)
    """
    a = as_counts("a", a)
    rate = as_positive("expected", expected, allow_zero=True) + shrinkage
    tail = (1 - check_probability("level", level)) / 2
    # Gamma quantile of shape a + k = (standard gamma quantile) / rate; the standard quantile
    # depends on a alone, so it is computed once per distinct count.
    lower = per_count(lambda n: special.gammaincinv(n + shrinkage, tail), a)
    upper = per_count(lambda n: special.gammaincinv(n + shrinkage, 1 - tail), a)
    log2_rate = np.log2(rate)
    return Estimate(
        np.log2(a + shrinkage) - log2_rate,
        np.log2(lower) - log2_rate,
        np.log2(upper) - log2_rate,
    )


def information_component_moments(
    a: ArrayLike,
    n_product: ArrayLike,
    n_event: ArrayLike,
    n_total: ArrayLike,
    *,
    level: float = 0.95,
) -> Estimate:
    """The original BCPNN IC: exact posterior mean and variance, normal credibility bounds.

    Parameters
    ----------
    a, n_product, n_event, n_total : array_like
        The pair count, its margins and the number of reports (see :mod:`detectors.table`).
    level : float, optional
        Two-sided credibility level of the normal-approximation interval.

    Notes
    -----
    Beta priors with parameters 1 on the margins and a Dirichlet-derived prior on the joint
    probability [1]_ give the exact expectation and variance of ``IC = log2(p11 / (p1. p.1))``
    in digamma and trigamma functions [3]_::

        p1 = 1 + n_product,   p2 = 1 + N - n_product
        q1 = 1 + n_event,     q2 = 1 + N - n_event
        r1 = 1 + a,           r2 = N - a - 1 + (2 + N)^2 / (p1 q1)
        E[IC] = [psi(r1) - psi(r1 + r2) - psi(p1) + psi(p1 + p2) - psi(q1) + psi(q1 + q2)] / ln 2
        V[IC] = [psi'(r1) - psi'(r1 + r2) + psi'(p1) - psi'(p1 + p2) + psi'(q1) - psi'(q1 + q2)]
                / (ln 2)^2

    The bounds are ``E[IC] +/- z sqrt(V[IC])``.

    Examples
    --------
    >>> r = information_component_moments(12, 100, 42, 1000)
    >>> round(float(r.estimate), 4), round(float(r.lower), 4)
    (1.2544, 0.3139)
    """
    a = as_counts("a", a)
    n_product = as_counts("n_product", n_product)
    n_event = as_counts("n_event", n_event)
    n_total = as_counts("n_total", n_total)
    p1, p2 = 1 + n_product, 1 + n_total - n_product
    q1, q2 = 1 + n_event, 1 + n_total - n_event
    r1 = 1 + a
    r2 = n_total - a - 1 + (2 + n_total) ** 2 / (p1 * q1)
    mean = (
        special.digamma(r1)
        - special.digamma(r1 + r2)
        - special.digamma(p1)
        + special.digamma(p1 + p2)
        - special.digamma(q1)
        + special.digamma(q1 + q2)
    ) / _LN2
    variance = (
        special.polygamma(1, r1)
        - special.polygamma(1, r1 + r2)
        + special.polygamma(1, p1)
        - special.polygamma(1, p1 + p2)
        + special.polygamma(1, q1)
        - special.polygamma(1, q1 + q2)
    ) / _LN2**2
    z = special.ndtri(0.5 + check_probability("level", level) / 2)
    sd = np.sqrt(variance)
    return Estimate(mean, mean - z * sd, mean + z * sd)
