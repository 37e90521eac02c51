"""Giving memory that large reads and builds freed back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterator
from typing import TypeVar

import pyarrow as pa


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Hand the memory a build freed back to the system (glibc keeps freed blocks of up to
    32 MB in its heap after a large array was freed, and Arrow's allocator its pages, so
    without this the build's temporaries stay resident for the life of the process)."""
    if _TRIM is not None:
        _TRIM(0)
    pa.default_memory_pool().release_unused()


T = TypeVar("T")


def released_after(items: Iterator[T]) -> Iterator[T]:
    """The items, then the memory making them freed (:func:`release_freed_memory`)."""
    try:
        yield from items
    finally:
        release_freed_memory()
