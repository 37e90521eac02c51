"""Sort-based distinct counting gives exactly what np.unique gives, on any integer keys."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from detectors.counting import distinct, distinct_counts, distinct_of_sorted

keys = arrays(
    dtype=st.sampled_from([np.int64, np.int32, np.uint16]),
    shape=st.integers(0, 300),
    elements=st.integers(0, 40),
)
wide = arrays(np.int64, st.integers(0, 300), elements=st.integers(-(2**62), 2**62))


@given(st.one_of(keys, wide))
def test_distinct_equals_np_unique(values):
    found = distinct(values)
    reference = np.unique(values)
    assert found.dtype == reference.dtype
    np.testing.assert_array_equal(found, reference)


@given(st.one_of(keys, wide))
def test_distinct_counts_equals_np_unique_with_counts(values):
    found, counts = distinct_counts(values)
    reference, reference_counts = np.unique(values, return_counts=True)
    np.testing.assert_array_equal(found, reference)
    np.testing.assert_array_equal(counts, reference_counts)
    assert counts.sum() == values.size


@given(st.one_of(keys, wide))
def test_distinct_of_sorted_keys_equals_np_unique(values):
    np.testing.assert_array_equal(distinct_of_sorted(np.sort(values)), np.unique(values))


def test_the_input_is_left_as_it_was():
    values = np.array([3, 1, 3, 2])
    distinct_counts(values)
    np.testing.assert_array_equal(values, [3, 1, 3, 2])
