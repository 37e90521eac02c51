"""An independent exact computation of the Poisson MaxSPRT's signal probability, for the tests.

detectors/sequential.py advances the distribution of the *count* through time. This module
integrates over the *event times* instead, in high-precision decimal arithmetic, and finds the
thresholds by plain bisection on the LLR (no Lambert W):

Given ``N(T) = n``, the event times have density ``rr^n e^{-rr T}`` on ``0 < t_1 < ... < t_n < T``.
The test does not signal iff ``n < K`` (K: the first count whose threshold ``a_K >= T``) and
``t_k > a_k`` for every ``M <= k <= n``. The volume of that region is a polynomial in T,
``Q_n(t) = integral from l_n to t of Q_{n-1}(s) ds`` with ``Q_0 = 1``, ``l_k = a_k`` for
``k >= M`` and 0 below (Steck's recursion for order statistics crossing a boundary), so

    P(no signal) = e^{-rr T} sum_{n < K} rr^n Q_n(T).

The polynomials' terms cancel by many orders of magnitude, hence 120-digit decimals.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

PRECISION = 120


def threshold(k: int, cv: float) -> float:
    """The mu < k at which k events have LLR exactly cv, by bisection on the LLR."""
    low, high = 0.0, float(k)
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        value = k * math.log(k / middle) - (k - middle)
        low, high = (middle, high) if value > cv else (low, middle)
    return (low + high) / 2


def _antiderivative_at(coefficients: list[Decimal], x: Decimal) -> Decimal:
    total = Decimal(0)
    for i in range(len(coefficients) - 1, -1, -1):
        total = (total + coefficients[i] / (i + 1)) * x
    return total


def signal_probability(length: float, min_events: int, cv: float, rr: float = 1.0) -> float:
    """P(the MaxSPRT with these T, M, CV signals) when events arrive at rate ``rr`` per unit mu."""
    with localcontext() as context:
        context.prec = PRECISION
        t_end = Decimal(length)
        rate = Decimal(rr)
        polynomial = [Decimal(1)]  # Q_0, coefficients of t^0, t^1, ...
        survive = Decimal(1)  # rr^0 Q_0(T)
        n = 0
        while True:
            n += 1
            lower = threshold(n, cv) if n >= min_events else 0.0
            if lower >= length:  # n events by T would signal: n = K
                break
            low = Decimal(lower)
            shift = _antiderivative_at(polynomial, low)
            polynomial = [-shift] + [c / (i + 1) for i, c in enumerate(polynomial)]
            value = sum(c * t_end**i for i, c in enumerate(polynomial))
            survive += rate**n * value
        return float(1 - (-rate * t_end).exp() * survive)
