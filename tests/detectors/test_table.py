"""2x2 cells and expected counts, against openEBGM's worked example and hand arithmetic."""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.table import cells, expected, stratified_expected


def test_cells_complete_the_table():
    table = cells([5, 1], [9, 1], [9, 9], [17, 17])
    assert table.b.tolist() == [4, 0]
    assert table.c.tolist() == [4, 8]
    assert table.d.tolist() == [4, 8]


@pytest.mark.parametrize(
    ("a", "n_product", "n_event", "n_total", "message"),
    [
        (6, 5, 9, 17, "a exceeds n_product; element 0 has a=6, n_product=5"),
        (3, 5, 2, 17, "a exceeds n_event"),
        (1, 10, 10, 12, "n_product + n_event - a exceeds n_total"),
        (-1, 5, 5, 10, "a must be non-negative whole numbers; element 0 is -1.0"),
        (1.5, 5, 5, 10, "element 0 is 1.5"),
    ],
)
def test_cells_refuse_impossible_counts_naming_them(a, n_product, n_event, n_total, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cells(a, n_product, n_event, n_total)


def test_expected_matches_openebgm_example():
    # openEBGM vignette "rawDataProcessing": A-1 has E = 4.7647059, C-1 has E = 0.5294118.
    e = expected([9, 1], [9, 9], [17, 17])
    np.testing.assert_allclose(e, [4.7647059, 0.5294118], atol=5e-8)


def test_expected_of_an_empty_scope_is_nan():
    assert np.isnan(expected(0, 0, 0))


def test_stratified_expected_sums_strata_and_skips_empty_ones():
    e = stratified_expected([[3, 2, 0]], [[4, 1, 0]], [10, 5, 0])
    np.testing.assert_allclose(e, [3 * 4 / 10 + 2 * 1 / 5])


def test_stratified_expected_refuses_margins_in_an_empty_stratum():
    with pytest.raises(ValueError, match="empty stratum has non-zero margins"):
        stratified_expected([[1]], [[0]], [0])


@given(st.integers(0, 50), st.integers(0, 50), st.integers(100, 1000))
def test_one_stratum_equals_unstratified(n_product, n_event, n_total):
    assert stratified_expected([[n_product]], [[n_event]], [n_total])[0] == pytest.approx(
        expected(n_product, n_event, n_total)
    )
