"""Multi-item Gamma Poisson Shrinker (MGPS): the empirical-Bayes geometric mean and its bounds.

Model (DuMouchel 1999 [1]_): a pair's count is ``N ~ Poisson(lambda E)``; the prior on the
relative reporting ratio ``lambda`` is the mixture ``P Gamma(alpha1, beta1) + (1 - P)
Gamma(alpha2, beta2)`` (shape, rate). Its posterior is again a two-gamma mixture,
``Qn Gamma(alpha1 + N, beta1 + E) + (1 - Qn) Gamma(alpha2 + N, beta2 + E)``.

References
----------
.. [1] DuMouchel W (1999). Bayesian data mining in large frequency tables, with an application
   to the FDA spontaneous reporting system. Am Stat 53:177-190.
.. [2] Canida T, Ihrie J (2017). openEBGM: An R implementation of the Gamma-Poisson Shrinker
   data mining model. R Journal 9:499-519.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from detectors._arrays import (
    FloatArray,
    as_counts,
    as_positive,
    check_probability,
    exp_floored,
    per_count,
)


class Hyperparameters(NamedTuple):
    """The prior's parameters theta = (alpha1, beta1, alpha2, beta2, P) (gamma shape, rate)."""

    alpha1: float
    beta1: float
    alpha2: float
    beta2: float
    p: float

    @classmethod
    def checked(cls, *values: float) -> Hyperparameters:
        """Build theta, refusing values outside the parameter space (naming the bad one)."""
        theta = cls(*(float(value) for value in values))
        for name in ("alpha1", "beta1", "alpha2", "beta2"):
            value = getattr(theta, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"theta.{name} must be finite and positive, got {value!r}")
        check_probability("theta.p", theta.p)
        return theta


class Posterior(NamedTuple):
    """Per-pair MGPS results: EBGM, its lower and upper quantiles, the posterior weight Qn."""

    ebgm: FloatArray
    lower: FloatArray
    upper: FloatArray
    qn: FloatArray


def log_negative_binomial(
    n: FloatArray, alpha: float, beta: float, expected: FloatArray
) -> FloatArray:
    """log P(N = n) when N ~ Poisson(lambda E), lambda ~ Gamma(alpha, beta): a negative binomial.

    ``f(n) = C(alpha + n - 1, n) (beta / (beta + E))^alpha (E / (beta + E))^n``
    (DuMouchel 1999, Eq. 7).
    """
    log_odds = np.log(beta + expected)
    return (
        per_count(lambda k: special.gammaln(alpha + k) - special.gammaln(k + 1), n)
        - special.gammaln(alpha)
        + alpha * (np.log(beta) - log_odds)
        + special.xlogy(n, expected)
        - n * log_odds
    )


def posterior_weight(n: FloatArray, expected: FloatArray, theta: Hyperparameters) -> FloatArray:
    """Qn, the posterior probability that lambda comes from the first prior component.

    ``Qn = P f1(n) / (P f1(n) + (1 - P) f2(n))`` (DuMouchel 1999, Eq. 9), computed on the
    log-odds scale so that neither density underflows.
    """
    log_odds = (
        np.log(theta.p)
        + log_negative_binomial(n, theta.alpha1, theta.beta1, expected)
        - np.log1p(-theta.p)
        - log_negative_binomial(n, theta.alpha2, theta.beta2, expected)
    )
    return special.expit(log_odds)


def posterior(
    n: ArrayLike,
    expected: ArrayLike,
    theta: Hyperparameters,
    *,
    lower: float = 0.05,
    upper: float = 0.95,
    rtol: float = 1e-9,
) -> Posterior:
    """EBGM, EB05 and EB95 (or other posterior quantiles) and Qn for every pair.

    Parameters
    ----------
    n : array_like
        Observed count of each pair.
    expected : array_like
        Expected count E of each pair (must be positive).
    theta : Hyperparameters
        The prior, fitted by :func:`detectors.mgps_fit.fit_hyperparameters` or given.
    lower, upper : float, optional
        Posterior quantile levels of the bounds (EB05 and EB95 by default).
    rtol : float, optional
        Relative tolerance of the quantile root finding.

    Notes
    -----
    ``EBGM = exp(E[ln lambda | N])`` with
    ``E[ln lambda | N] = Qn (psi(alpha1 + N) - ln(beta1 + E)) + (1 - Qn) (psi(alpha2 + N)
    - ln(beta2 + E))`` (DuMouchel 1999, Eq. 10). The bounds are exact quantiles of the posterior
    mixture, found by safeguarded Newton iteration (see :func:`mixture_gamma_quantile`).

    Examples
    --------
    >>> theta = Hyperparameters(3.25379356, 0.39988854, 2.02612692, 1.90807970, 0.06534557)
    >>> r = posterior([16, 19], [0.40643623, 0.89690107], theta)
    >>> [round(float(x), 2) for x in (*r.ebgm, *r.lower, *r.upper)]
    [23.26, 16.78, 15.69, 11.65, 33.48, 23.55]
    """
    n = as_counts("n", n)
    expected = as_positive("expected", expected)
    n, expected = np.broadcast_arrays(n, expected)
    qn = posterior_weight(n, expected, theta)
    rate1, rate2 = theta.beta1 + expected, theta.beta2 + expected
    mean_log = qn * (per_count(lambda k: special.digamma(theta.alpha1 + k), n) - np.log(rate1)) + (
        1 - qn
    ) * (per_count(lambda k: special.digamma(theta.alpha2 + k), n) - np.log(rate2))
    mixture = _Mixture(n, theta, rate1, rate2, qn)
    return Posterior(
        ebgm=np.exp(mean_log),
        lower=mixture.quantile(check_probability("lower", lower), rtol=rtol),
        upper=mixture.quantile(check_probability("upper", upper), rtol=rtol),
        qn=qn,
    )


def mixture_gamma_quantile(
    probability: float,
    weight: ArrayLike,
    shape1: ArrayLike,
    rate1: ArrayLike,
    shape2: ArrayLike,
    rate2: ArrayLike,
    *,
    rtol: float = 1e-9,
) -> FloatArray:
    """Quantile of ``w Gamma(shape1, rate1) + (1 - w) Gamma(shape2, rate2)``, elementwise.

    The mixture's CDF lies between its components' CDFs, so its quantile lies between the
    components' quantiles: that bracket is kept throughout. Newton steps on the log scale start
    at the heavier component's quantile and fall back to bisection when they leave the bracket;
    each iteration works only on the elements not yet converged.

    Examples
    --------
    >>> float(mixture_gamma_quantile(0.5, 1.0, 2.0, 1.0, 5.0, 1.0)) == float(
    ...     mixture_gamma_quantile(0.5, 1.0, 2.0, 1.0, 9.0, 3.0))
    True
    """
    weight, shape1, rate1, shape2, rate2 = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (weight, shape1, rate1, shape2, rate2))
    )
    x1 = special.gammaincinv(shape1, probability) / rate1
    x2 = special.gammaincinv(shape2, probability) / rate2
    return _newton_bracketed(
        probability,
        weight,
        shape1,
        rate1,
        shape2,
        rate2,
        special.gammaln(shape1),
        special.gammaln(shape2),
        x1,
        x2,
        rtol,
    )


class _Mixture:
    """The posterior mixture of each pair, with component quantities tabulated per count."""

    def __init__(
        self,
        n: FloatArray,
        theta: Hyperparameters,
        rate1: FloatArray,
        rate2: FloatArray,
        qn: FloatArray,
    ) -> None:
        self.n, self.theta, self.rate1, self.rate2, self.qn = n, theta, rate1, rate2, qn

    def quantile(self, probability: float, *, rtol: float) -> FloatArray:
        theta, n = self.theta, self.n
        shape1, shape2 = theta.alpha1 + n, theta.alpha2 + n
        # Component quantiles: standard gamma quantile (per count) over the rate.
        x1 = per_count(lambda k: special.gammaincinv(theta.alpha1 + k, probability), n) / self.rate1
        x2 = per_count(lambda k: special.gammaincinv(theta.alpha2 + k, probability), n) / self.rate2
        lgamma1 = per_count(lambda k: special.gammaln(theta.alpha1 + k), n)
        lgamma2 = per_count(lambda k: special.gammaln(theta.alpha2 + k), n)
        return _newton_bracketed(
            probability,
            self.qn,
            shape1,
            self.rate1,
            shape2,
            self.rate2,
            lgamma1,
            lgamma2,
            x1,
            x2,
            rtol,
        )


_MAX_ITERATIONS = 200


def _newton_bracketed(
    probability: float,
    weight: FloatArray,
    shape1: FloatArray,
    rate1: FloatArray,
    shape2: FloatArray,
    rate2: FloatArray,
    lgamma1: FloatArray,
    lgamma2: FloatArray,
    x1: FloatArray,
    x2: FloatArray,
    rtol: float,
) -> FloatArray:
    """Solve ``w G1(x) + (1 - w) G2(x) = p`` for x in [min(x1, x2), max(x1, x2)], elementwise.

    Works on t = ln x, where gamma CDFs are close to linear. Halley steps (cubic convergence;
    the derivatives of x * pdf(x) in t come free) start at the heavier component's quantile;
    where Newton's step would leave the bracket the iteration bisects instead (as Numerical
    Recipes' ``rtsafe``). An element stops once the error left after its step, estimated as
    |F''/(2F')| * step^2, is below ``rtol``.
    """
    shape = np.shape(x1)
    weight, shape1, rate1, shape2, rate2, lgamma1, lgamma2, x1, x2 = (
        np.ravel(v) for v in (weight, shape1, rate1, shape2, rate2, lgamma1, lgamma2, x1, x2)
    )
    result = np.where(weight >= 0.5, x1, x2)
    lo, hi = np.log(np.minimum(x1, x2)), np.log(np.maximum(x1, x2))
    # A bracket narrower than the tolerance, or a weight of exactly 0 or 1, is solved already.
    active = np.flatnonzero((hi - lo > rtol) & (weight > 0) & (weight < 1))
    t = np.log(result[active])
    lo, hi = lo[active], hi[active]
    for _ in range(_MAX_ITERATIONS):
        if active.size == 0:
            return result.reshape(shape)
        w, k1, r1, k2, r2 = (v[active] for v in (weight, shape1, rate1, shape2, rate2))
        x = np.exp(t)
        y1, y2 = r1 * x, r2 * x
        cdf = w * special.gammainc(k1, y1) + (1 - w) * special.gammainc(k2, y2)
        # dF/dt = x pdf(x) = sum_j w_j exp(k_j ln y_j - y_j - lnGamma(k_j));
        # d2F/dt2 weights each term by (k_j - y_j).
        g1 = w * exp_floored(k1 * np.log(y1) - y1 - lgamma1[active])
        g2 = (1 - w) * exp_floored(k2 * np.log(y2) - y2 - lgamma2[active])
        slope, curvature = g1 + g2, (k1 - y1) * g1 + (k2 - y2) * g2
        excess = cdf - probability
        below = excess < 0
        lo = np.where(below, t, lo)
        hi = np.where(below, hi, t)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            newton = t - excess / slope
            halley = t - 2 * excess * slope / (2 * slope**2 - excess * curvature)
            # Far out in a flat tail Newton overshoots the bracket (while Halley would crawl):
            # bisect there; near the root take Halley's step, or Newton's if Halley's leaves.
            inside = (newton >= lo) & (newton <= hi)
            refined = np.where((halley >= lo) & (halley <= hi), halley, newton)
            step = np.where(excess == 0, t, np.where(inside, refined, 0.5 * (lo + hi)))
            left = np.abs(curvature / (2 * slope)) * (step - t) ** 2
        done = (inside & (left <= rtol)) | (excess == 0) | (hi - lo <= rtol)
        t = step
        result[active[done]] = np.exp(t[done])
        keep = ~done
        active, t, lo, hi = active[keep], t[keep], lo[keep], hi[keep]
    raise ArithmeticError(f"mixture quantile did not converge for {active.size} elements")
