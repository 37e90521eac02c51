"""MGPS posterior against openEBGM's published example and brute-force quantiles."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from detectors.mgps import Hyperparameters, mixture_gamma_quantile, posterior

OPENEBGM_THETA = Hyperparameters(3.25379356, 0.39988854, 2.02612692, 1.90807970, 0.06534557)


def test_openebgm_posterior_example():
    # openEBGM vignette "posteriorCalcs" (values rounded to 0.01 by its bisection).
    result = posterior([16, 19], [0.40643623, 0.89690107], OPENEBGM_THETA)
    np.testing.assert_allclose(result.ebgm, [23.26, 16.78], atol=0.005)
    np.testing.assert_allclose(result.lower, [15.68, 11.65], atol=0.01)
    np.testing.assert_allclose(result.upper, [33.48, 23.55], atol=0.01)


def _brute_quantile(probability, weight, k1, r1, k2, r2):
    def excess(x):
        return (
            weight * stats.gamma.cdf(x, k1, scale=1 / r1)
            + (1 - weight) * stats.gamma.cdf(x, k2, scale=1 / r2)
            - probability
        )

    return optimize.brentq(excess, 1e-300, 1e12, xtol=1e-300, rtol=1e-15, maxiter=1000)


THETAS = [
    OPENEBGM_THETA,
    Hyperparameters(0.2, 0.1, 2.0, 4.0, 1 / 3),
    # A degenerate fit (alpha1 on the lower bound), as seen on VAERS-like data.
    Hyperparameters(1e-6, 9.1e-4, 266.39, 279.54, 0.0135),
]


@pytest.mark.parametrize("theta", THETAS)
def test_quantiles_are_exact_to_1e_6(theta):
    rng = np.random.default_rng(11)
    n = np.concatenate([rng.integers(1, 4, 120), rng.integers(1, 2000, 80)]).astype(float)
    e = rng.gamma(0.5, 10, n.size) + 1e-3
    result = posterior(n, e, theta)
    for i in range(n.size):
        k1, r1 = theta.alpha1 + n[i], theta.beta1 + e[i]
        k2, r2 = theta.alpha2 + n[i], theta.beta2 + e[i]
        for probability, ours in ((0.05, result.lower[i]), (0.95, result.upper[i])):
            exact = _brute_quantile(probability, result.qn[i], k1, r1, k2, r2)
            assert ours == pytest.approx(exact, rel=1e-6), (n[i], e[i], probability)


def test_qn_and_ebgm_by_direct_formula():
    n, e = np.array([1.0, 7.0, 40.0]), np.array([0.3, 2.0, 5.0])
    t = OPENEBGM_THETA
    f1 = stats.nbinom.pmf(n, t.alpha1, t.beta1 / (t.beta1 + e))
    f2 = stats.nbinom.pmf(n, t.alpha2, t.beta2 / (t.beta2 + e))
    qn = t.p * f1 / (t.p * f1 + (1 - t.p) * f2)
    # E[ln lambda] of a gamma(shape k, rate r) is digamma(k) - ln r; checked by integration.
    mean_log = []
    for i in range(3):

        def log_moment(k, r):
            return stats.gamma(k, scale=1 / r).expect(np.log)

        mean_log.append(
            qn[i] * log_moment(t.alpha1 + n[i], t.beta1 + e[i])
            + (1 - qn[i]) * log_moment(t.alpha2 + n[i], t.beta2 + e[i])
        )
    result = posterior(n, e, t)
    np.testing.assert_allclose(result.qn, qn, rtol=1e-10)
    np.testing.assert_allclose(result.ebgm, np.exp(mean_log), rtol=1e-7)


def test_mixture_quantile_of_a_pure_component_is_its_quantile():
    x = mixture_gamma_quantile(0.3, 1.0, 4.0, 2.0, 9.0, 1.0)
    assert x == pytest.approx(stats.gamma.ppf(0.3, 4.0, scale=0.5), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.floats(1e-4, 1e3), st.sampled_from(THETAS))
def test_bounds_bracket_ebgm(n, e, theta):
    result = posterior(n, e, theta)
    assert result.lower <= result.ebgm <= result.upper
    assert 0 <= result.qn <= 1


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 500), st.floats(1e-3, 1e2), st.sampled_from(THETAS[:2]))
def test_ebgm_and_eb05_increase_with_n(n, e, theta):
    result = posterior([n, n + 1], [e, e], theta)
    assert result.ebgm[0] < result.ebgm[1]
    assert result.lower[0] < result.lower[1]


def test_hyperparameters_refuse_bad_values_by_name():
    with pytest.raises(ValueError, match="theta.beta2 must be finite and positive, got -1.0"):
        Hyperparameters.checked(1, 1, 1, -1, 0.5)
    with pytest.raises(ValueError, match="theta.p must lie strictly between 0 and 1"):
        Hyperparameters.checked(1, 1, 1, 1, 1.5)


def test_expected_must_be_positive():
    with pytest.raises(ValueError, match="expected must be finite and positive; element 1 is 0.0"):
        posterior([1, 2], [0.5, 0.0], OPENEBGM_THETA)
