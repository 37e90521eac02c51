"""Signal rules, their combination and Benjamini–Hochberg control."""

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from detectors.rules import EbgmRule, IcRule, PrrRule, RorRule, combine, false_discovery


def test_evans_rule_needs_all_three_criteria():
    flags = PrrRule()(prr=[2.0, 2.0, 1.99, 5.0], chi2=[4.0, 3.9, 10, 10], a=[3, 3, 3, 2])
    assert flags.tolist() == [True, False, False, False]


def test_ror_rule_is_strict_on_the_lower_bound():
    assert RorRule()([1.0, 1.01, np.nan], [3, 3, 3]).tolist() == [False, True, False]
    assert RorRule(min_a=5)([1.5], [4]).tolist() == [False]


def test_ic_and_ebgm_defaults():
    assert IcRule()([0.0, 0.01]).tolist() == [False, True]
    assert EbgmRule()([2.0, 1.99]).tolist() == [True, False]


def test_combinations():
    flags = [[True, True, False], [True, False, False], [True, False, True]]
    assert combine(flags, mode="any").tolist() == [True, True, True]
    assert combine(flags, mode="all").tolist() == [True, False, False]
    assert combine(flags, mode="at_least", k=2).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="needs 1 <= k <= 3, got k=4"):
        combine(flags, mode="at_least", k=4)


def test_false_discovery_is_statsmodels_bh_and_skips_nan():
    p = np.array([0.001, 0.2, np.nan, 0.013, 0.04, 0.9])
    reject, adjusted = false_discovery(p, q=0.05)
    expected_reject, expected_adjusted, _, _ = multipletests(p[~np.isnan(p)], 0.05, "fdr_bh")
    assert reject[~np.isnan(p)].tolist() == expected_reject.tolist()
    np.testing.assert_allclose(adjusted[~np.isnan(p)], expected_adjusted)
    assert not reject[2] and np.isnan(adjusted[2])
