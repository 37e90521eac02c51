"""PRR, ROR and chi-square against statsmodels and scipy (independent implementations)."""

import numpy as np
import pytest
from scipy.stats import chi2_contingency
from statsmodels.stats.contingency_tables import Table2x2

from detectors.frequentist import chi_square, prr, ror

rng = np.random.default_rng(20261130)
TABLES = rng.integers(1, 400, size=(200, 4)).astype(float)


@pytest.mark.parametrize("level", [0.95, 0.90])
def test_ror_and_interval_match_statsmodels(level):
    a, b, c, d = TABLES.T
    ours = ror(a, b, c, d, level=level)
    for i, row in enumerate(TABLES):
        table = Table2x2(row.reshape(2, 2), shift_zeros=False)
        lower, upper = table.oddsratio_confint(alpha=1 - level)
        assert ours.estimate[i] == pytest.approx(table.oddsratio, rel=1e-12)
        assert ours.lower[i] == pytest.approx(lower, rel=1e-12)
        assert ours.upper[i] == pytest.approx(upper, rel=1e-12)


def test_prr_is_statsmodels_risk_ratio():
    a, b, c, d = TABLES.T
    ours = prr(a, b, c, d)
    for i, row in enumerate(TABLES):
        table = Table2x2(row.reshape(2, 2), shift_zeros=False)
        lower, upper = table.riskratio_confint(alpha=0.05)
        assert ours.estimate[i] == pytest.approx(table.riskratio, rel=1e-12)
        assert ours.lower[i] == pytest.approx(lower, rel=1e-12)
        assert ours.upper[i] == pytest.approx(upper, rel=1e-12)


def test_prr_of_openebgm_example():
    # B-1, B-2, C-1 of the 17-report example: PRR 1.11, 0.89, 0.71, 1.43, 2.00.
    a = np.array([5, 4, 3, 4, 1])
    n_product = np.array([9, 9, 7, 7, 1])
    n_event = np.array([9, 8, 9, 8, 9])
    result = prr(a, n_product - a, n_event - a, 17 - n_product - n_event + a)
    np.testing.assert_allclose(result.estimate, [1.11, 0.89, 0.71, 1.43, 2.00], atol=0.005)


@pytest.mark.parametrize("yates", [True, False])
def test_chi_square_matches_scipy(yates):
    a, b, c, d = TABLES.T
    ours = chi_square(a, b, c, d, yates=yates)
    for i, row in enumerate(TABLES):
        statistic, pvalue, _, _ = chi2_contingency(row.reshape(2, 2), correction=yates)
        assert ours.statistic[i] == pytest.approx(statistic, rel=1e-10)
        assert ours.pvalue[i] == pytest.approx(pvalue, rel=1e-8)


def test_yates_correction_floors_at_zero_like_scipy():
    # |ad - bc| = 0 < N/2: the corrected statistic is 0, not a positive square.
    result = chi_square(5, 5, 5, 5, yates=True)
    assert result.statistic == 0
    assert result.pvalue == 1


def test_zero_cells_give_explained_values_not_epsilons():
    no_c = prr(3, 10, 0, 100)
    assert np.isinf(no_c.estimate) and np.isnan(no_c.lower) and np.isnan(no_c.upper)
    no_a = ror(0, 10, 5, 100)
    assert no_a.estimate == 0 and np.isnan(no_a.lower)
    empty_margin = chi_square(0, 0, 5, 100)
    assert np.isnan(empty_margin.statistic) and np.isnan(empty_margin.pvalue)


def test_continuity_correction_is_haldane_anscombe_on_zero_tables_only():
    corrected = ror([3, 3], [10, 10], [0, 2], [100, 100], continuity=0.5)
    assert corrected.estimate[0] == pytest.approx(3.5 * 100.5 / (10.5 * 0.5))
    assert corrected.estimate[1] == pytest.approx(3 * 100 / (10 * 2))
    assert np.isfinite(corrected.lower[0])


def test_bad_level_is_named():
    with pytest.raises(ValueError, match="level must lie strictly between 0 and 1, got 95"):
        ror(1, 2, 3, 4, level=95)
