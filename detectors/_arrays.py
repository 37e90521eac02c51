"""Array plumbing shared by the detectors: input checks and per-count tabulation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

# Counts up to this bound are tabulated; the few beyond it are evaluated per distinct value.
_TABLE_LIMIT = 1 << 10


def as_counts(name: str, values: ArrayLike) -> FloatArray:
    """Return ``values`` as a float array of non-negative whole numbers, else raise naming one."""
    array = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(array) | (array < 0) | (array != np.floor(array))
    if bad.any():
        index, value = _first(bad, array)
        raise ValueError(f"{name} must be non-negative whole numbers; element {index} is {value!r}")
    return array


def as_positive(name: str, values: ArrayLike, *, allow_zero: bool = False) -> FloatArray:
    """Return ``values`` as a float array of finite positive numbers, else raise naming one."""
    array = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(array) | ((array < 0) if allow_zero else (array <= 0))
    if bad.any():
        index, value = _first(bad, array)
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {kind}; element {index} is {value!r}")
    return array


def _first(bad: NDArray[np.bool_], array: FloatArray) -> tuple[int, float]:
    index = int(np.flatnonzero(bad.ravel())[0])
    return index, float(array.ravel()[index])


def check_probability(name: str, value: float) -> float:
    """Return ``value`` if it lies strictly between 0 and 1, else raise naming it."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return float(value)


def require(
    name: str, condition: NDArray[np.bool_], detail: str, *shown: tuple[str, FloatArray]
) -> None:
    """Raise naming the first element where ``condition`` fails, with the values involved."""
    failing = ~condition
    if failing.any():
        index = int(np.flatnonzero(failing.ravel())[0])
        values = ", ".join(f"{label}={array.ravel()[index]:g}" for label, array in shown)
        raise ValueError(f"{name}: {detail}; element {index} has {values}")


def per_count(function: Callable[[FloatArray], FloatArray], counts: FloatArray) -> FloatArray:
    """Evaluate ``function`` on whole-number ``counts`` through a table over 0..max.

    Many statistics depend on a pair's count alone (a gamma quantile with shape a + 0.5, say).
    Report counts are heavy-tailed: a million pairs hold a few thousand distinct counts, nearly
    all small. Tabulating turns the costliest special functions into a lookup; the rare counts
    above the table's size are evaluated once per distinct value.
    """
    flat = counts.ravel()
    if flat.size == 0:
        return np.empty_like(counts)
    top = min(int(flat.max()), _TABLE_LIMIT)
    table = function(np.arange(top + 1, dtype=np.float64))
    result = table[np.minimum(flat, top).astype(np.intp)]
    beyond = flat > top
    if beyond.any():
        distinct, inverse = np.unique(flat[beyond], return_inverse=True)
        result[beyond] = function(distinct)[inverse]
    return result.reshape(counts.shape)


# e^-700 ~ 1e-304 is the smallest value kept: below it exp() returns subnormal numbers, which
# are up to 40x slower to produce, and they never matter next to the terms they are added to.
_EXP_FLOOR = -700.0


def exp_floored(x: FloatArray) -> FloatArray:
    """``exp(x)`` with x floored at -700, so that no subnormal number is ever produced."""
    return np.exp(np.maximum(x, _EXP_FLOOR))
