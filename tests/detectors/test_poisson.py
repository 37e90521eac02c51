"""Garwood, rate and O/E intervals against scipy's chi-square quantiles, Poisson tail inversion
and statsmodels' exact-c interval."""

import numpy as np
import pytest
from scipy import optimize
from scipy.stats import chi2, poisson
from statsmodels.stats.rates import confint_poisson

from detectors.poisson import garwood_interval, rate_interval, ratio_interval

COUNTS = np.array([0, 1, 2, 3, 5, 7, 10, 25, 100, 1000, 12345], dtype=float)


@pytest.mark.parametrize("level", [0.95, 0.90, 0.99])
def test_garwood_is_the_chi_square_formula(level):
    tail = (1 - level) / 2
    lower, upper = garwood_interval(COUNTS, level)
    expected_lower = np.where(COUNTS > 0, chi2.ppf(tail, 2 * np.maximum(COUNTS, 1)) / 2, 0.0)
    np.testing.assert_allclose(lower, expected_lower, rtol=1e-10)
    np.testing.assert_allclose(upper, chi2.ppf(1 - tail, 2 * COUNTS + 2) / 2, rtol=1e-10)


def test_garwood_inverts_the_poisson_tails():
    # The bounds are the means at which P(X >= c) and P(X <= c) equal 2.5%: solved by brentq.
    lower, upper = garwood_interval(COUNTS[:9])
    for c, low, up in zip(COUNTS[:9], lower, upper, strict=True):
        if c > 0:
            root = optimize.brentq(lambda m, c=c: poisson.sf(c - 1, m) - 0.025, 1e-9, 10 * c + 10)
            assert low == pytest.approx(root, rel=1e-9)
        else:
            assert low == 0
        root = optimize.brentq(lambda m, c=c: poisson.cdf(c, m) - 0.025, 1e-9, 10 * c + 20)
        assert up == pytest.approx(root, rel=1e-9)


def test_rate_interval_matches_statsmodels_exact_c():
    exposure = np.array([412, 412, 50, 1000, 17000, 3.5, 9, 80, 1e4, 2e5, 1e6])
    ours = rate_interval(COUNTS, exposure, level=0.95, per=1000.0)
    lower, upper = confint_poisson(COUNTS, exposure, method="exact-c", alpha=0.05)
    np.testing.assert_allclose(ours.estimate, 1000 * COUNTS / exposure, rtol=1e-12)
    np.testing.assert_allclose(ours.lower, 1000 * lower, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(ours.upper, 1000 * upper, rtol=1e-9)


def test_ratio_interval_is_the_count_interval_over_the_expectation():
    expected = np.array([2.3, 0.4, 1.0, 3.0, 5.0, 2.3, 20.0, 10.0, 100.0, 990.0, 12000.0])
    ours = ratio_interval(COUNTS, expected, level=0.90)
    lower, upper = confint_poisson(COUNTS, expected, method="exact-c", alpha=0.10)
    np.testing.assert_allclose(ours.estimate, COUNTS / expected, rtol=1e-12)
    np.testing.assert_allclose(ours.lower, lower, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(ours.upper, upper, rtol=1e-9)
    assert np.all(ours.lower <= ours.estimate) and np.all(ours.estimate <= ours.upper)


def test_seven_cases_in_412_patients_against_a_published_smr_limit():
    # Breslow & Day's exact limits for 7 observed: 2.81 and 14.42 (Garwood's table, 95%).
    lower, upper = garwood_interval(7)
    assert (round(float(lower), 2), round(float(upper), 2)) == (2.81, 14.42)


def test_zero_exposure_has_no_rate_and_bad_input_is_named():
    r = ratio_interval([0, 3], [0.0, 0.0])
    assert np.isnan(r.estimate[0]) and r.estimate[1] == np.inf
    assert np.isnan(r.lower).all() and np.isnan(r.upper).all()
    with pytest.raises(ValueError, match="exposure must be .* element 1 is -2"):
        rate_interval([1, 2], [10, -2])
    with pytest.raises(ValueError, match="count must be .* element 0 is 1.5"):
        garwood_interval([1.5])
    with pytest.raises(ValueError, match="level must lie strictly between 0 and 1, got 95"):
        garwood_interval(3, level=95)
