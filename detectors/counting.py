"""Distinct values and their multiplicities, at sort speed.

Counting distinct reports comes down to distinct integer keys (report x product x event packed
into one int64). ``np.unique(keys)`` without ``return_*`` arguments takes numpy 2.x's hash path
for integers, 8-10x slower than sorting the same keys; with ``return_counts`` it sorts. These
functions always sort, once, and give the same values as ``np.unique`` (sorted ascending).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _sorted_with_starts(keys: ArrayLike) -> tuple[np.ndarray, NDArray[np.bool_]]:
    """The keys sorted, and a mask of the positions where a new value begins."""
    # The stable sort (timsort for int64) finds runs already in order: keys packed from a case
    # table whose rows come report by report sort ~4x faster than with quicksort, and random
    # keys as fast.
    ordered = np.sort(np.asarray(keys).ravel(), kind="stable")
    return ordered, run_starts(ordered)


def run_starts(ordered: np.ndarray) -> NDArray[np.bool_]:
    """A mask of the positions of a sorted array where a new value begins."""
    starts = np.empty(ordered.size, dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    return starts


def distinct(keys: ArrayLike) -> np.ndarray:
    """The distinct values of ``keys``, ascending (``np.unique(keys)``).

    Examples
    --------
    >>> distinct([5, 1, 5, 3])
    array([1, 3, 5])
    """
    ordered, starts = _sorted_with_starts(keys)
    return ordered[starts]


def distinct_of_sorted(ordered: ArrayLike) -> np.ndarray:
    """The distinct values of keys already sorted ascending (no sort).

    Examples
    --------
    >>> distinct_of_sorted([1, 1, 3, 5, 5])
    array([1, 3, 5])
    """
    ordered = np.asarray(ordered).ravel()
    return ordered[run_starts(ordered)]


def distinct_counts(keys: ArrayLike) -> tuple[np.ndarray, NDArray[np.int64]]:
    """The distinct values of ``keys``, ascending, and how often each occurs
    (``np.unique(keys, return_counts=True)``).

    Examples
    --------
    >>> distinct_counts([5, 1, 5, 3])
    (array([1, 3, 5]), array([1, 1, 2]))
    """
    ordered, starts = _sorted_with_starts(keys)
    first = np.flatnonzero(starts)
    counts = np.diff(first, append=ordered.size).astype(np.int64)
    return ordered[first], counts
