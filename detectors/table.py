"""From report counts to the 2x2 table of each product–event pair.

Every pair is described by four counts of distinct reports:

==============  =======  ============
..              event    other events
==============  =======  ============
product         a        b
other products  c        d
==============  =======  ============

with ``n_product = a + b``, ``n_event = a + c`` and ``n_total = a + b + c + d``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from detectors._arrays import FloatArray, as_counts, require


class Cells(NamedTuple):
    """The four cells of each pair's 2x2 table (float arrays, whole numbers)."""

    a: FloatArray
    b: FloatArray
    c: FloatArray
    d: FloatArray


def cells(a: ArrayLike, n_product: ArrayLike, n_event: ArrayLike, n_total: ArrayLike) -> Cells:
    """Complete the 2x2 table from a pair's count and its margins.

    Parameters
    ----------
    a : array_like
        Reports naming both the product and the event.
    n_product, n_event : array_like
        Reports naming the product (the event), whatever else they name.
    n_total : array_like
        All reports in the scope.

    Returns
    -------
    Cells
        ``b = n_product - a``, ``c = n_event - a``, ``d = n_total - n_product - n_event + a``.

    Raises
    ------
    ValueError
        If a count is negative or fractional, or the margins cannot hold ``a`` — naming the
        first offending pair and its values.

    Examples
    --------
    >>> cells([5, 1], [9, 1], [9, 9], [17, 17])
    Cells(a=array([5., 1.]), b=array([4., 0.]), c=array([4., 8.]), d=array([4., 8.]))
    """
    a = as_counts("a", a)
    n_product = as_counts("n_product", n_product)
    n_event = as_counts("n_event", n_event)
    n_total = as_counts("n_total", n_total)
    a, n_product, n_event, n_total = np.broadcast_arrays(a, n_product, n_event, n_total)
    shown = (("a", a), ("n_product", n_product), ("n_event", n_event), ("n_total", n_total))
    require("cells", a <= n_product, "a exceeds n_product", *shown)
    require("cells", a <= n_event, "a exceeds n_event", *shown)
    d = n_total - n_product - n_event + a
    require("cells", d >= 0, "n_product + n_event - a exceeds n_total", *shown)
    return Cells(a=a.copy(), b=n_product - a, c=n_event - a, d=d)


def expected(n_product: ArrayLike, n_event: ArrayLike, n_total: ArrayLike) -> FloatArray:
    """Expected count of a pair under independence, ``E = n_product * n_event / n_total``.

    An empty scope (``n_total == 0``) has no expectation: its E is nan.

    Examples
    --------
    >>> float(expected(9, 9, 17))
    4.764705882352941
    """
    n_product = as_counts("n_product", n_product)
    n_event = as_counts("n_event", n_event)
    n_total = as_counts("n_total", n_total)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_total > 0, n_product * n_event / n_total, np.nan)


def stratified_expected(n_product: ArrayLike, n_event: ArrayLike, n_total: ArrayLike) -> FloatArray:
    """Expected count summed over strata, ``E = sum_s n_product_s * n_event_s / n_total_s``.

    Parameters
    ----------
    n_product, n_event : array_like, shape (..., strata)
        Per-stratum margins of each pair; the last axis runs over strata.
    n_total : array_like, shape (strata,) or (..., strata)
        Reports per stratum.

    Notes
    -----
    A stratum with no reports holds neither the product nor the event, so it contributes 0
    (its margins must be 0 there; anything else is an error). With a single stratum the result
    equals :func:`expected`. Strata adjust for confounders such as age, sex and report year
    (DuMouchel 1999, Sec. 3).

    Examples
    --------
    >>> stratified_expected([[3, 2]], [[4, 1]], [10, 5])
    array([1.6])
    """
    n_product = as_counts("n_product", n_product)
    n_event = as_counts("n_event", n_event)
    n_total = as_counts("n_total", n_total)
    n_product, n_event, n_total = np.broadcast_arrays(n_product, n_event, n_total)
    empty = n_total == 0
    shown = (("n_product", n_product), ("n_event", n_event), ("n_total", n_total))
    require(
        "stratified_expected",
        ~empty | ((n_product == 0) & (n_event == 0)),
        "an empty stratum has non-zero margins",
        *shown,
    )
    require(
        "stratified_expected",
        (n_product <= n_total) & (n_event <= n_total),
        "a stratum margin exceeds the stratum total",
        *shown,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        per_stratum = np.where(empty, 0.0, n_product * n_event / n_total)
    return per_stratum.sum(axis=-1)
