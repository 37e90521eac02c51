"""The information component against Norén's example, scipy's gamma and direct integration."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from detectors.bcpnn import information_component, information_component_moments


def test_noren_example():
    result = information_component(12, 5)
    assert result.estimate == pytest.approx(1.18442, abs=5e-6)
    assert result.lower == pytest.approx(0.2542334, abs=5e-8)


def test_bounds_are_scipy_gamma_quantiles():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 3000, 500).astype(float)
    a[:200] = rng.integers(0, 5, 200)
    e = rng.gamma(0.5, 20, 500)
    result = information_component(a, e, level=0.90)
    lower = np.log2(stats.gamma.ppf(0.05, a + 0.5, scale=1 / (e + 0.5)))
    upper = np.log2(stats.gamma.ppf(0.95, a + 0.5, scale=1 / (e + 0.5)))
    np.testing.assert_allclose(result.lower, lower, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.upper, upper, rtol=1e-10, atol=1e-12)


def _log_beta_moments(p, q):
    density = stats.beta(p, q).pdf
    mean = integrate.quad(lambda x: np.log(x) * density(x), 0, 1, limit=200)[0]
    second = integrate.quad(lambda x: np.log(x) ** 2 * density(x), 0, 1, limit=200)[0]
    return mean, second - mean**2


@pytest.mark.parametrize(
    ("a", "n_product", "n_event", "n_total"),
    [(12, 100, 42, 1000), (1, 3, 7, 500), (0, 20, 30, 2000)],
)
def test_moments_variant_equals_beta_log_moments_by_integration(a, n_product, n_event, n_total):
    # IC = log2 p11 - log2 p1. - log2 p.1 with independent beta posteriors (Bate 1998).
    p1, p2 = 1 + n_product, 1 + n_total - n_product
    q1, q2 = 1 + n_event, 1 + n_total - n_event
    r1, r2 = 1 + a, n_total - a - 1 + (2 + n_total) ** 2 / (p1 * q1)
    moments = [_log_beta_moments(r1, r2), _log_beta_moments(p1, p2), _log_beta_moments(q1, q2)]
    mean = (moments[0][0] - moments[1][0] - moments[2][0]) / np.log(2)
    sd = np.sqrt(sum(v for _, v in moments)) / np.log(2)
    result = information_component_moments(a, n_product, n_event, n_total)
    assert result.estimate == pytest.approx(mean, rel=1e-6)
    assert result.lower == pytest.approx(mean - 1.959963984540054 * sd, rel=1e-6)


@given(st.integers(0, 10_000), st.floats(1e-4, 1e4))
def test_interval_contains_estimate(a, e):
    result = information_component(a, e)
    assert result.lower <= result.estimate <= result.upper


@given(st.integers(0, 1000), st.floats(1e-3, 1e3))
def test_ic_increases_with_a(a, e):
    low, high = information_component([a, a + 1], [e, e]).estimate
    assert low < high
