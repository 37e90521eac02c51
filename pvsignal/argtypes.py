"""Command-line value types: each refuses a bad value with a message naming it."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _number(cast: Callable[[str], float], kind: str, text: str) -> float:
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    value = int(_number(int, "a whole number", text))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds, >= 0."""
    value = _number(float, "a number of seconds", text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def share(text: str) -> float:
    """A fraction in [0, 1)."""
    value = _number(float, "a number", text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text!r}")
    return value


def level(text: str) -> float:
    """A probability strictly between 0 and 1 (a confidence level, a false-discovery rate)."""
    value = _number(float, "a number", text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text!r}")
    return value


def shard(text: str) -> tuple[int, int]:
    """``K/N``: shard K (0-based) of N."""
    index, _, count = text.partition("/")
    try:
        k, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not K/N (e.g. 0/2): {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"K must be in 0..N-1 and N >= 1, got {text!r}")
    return k, n
