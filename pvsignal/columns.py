"""One scope's counts in memory, column by column, kept current from the store's changes.

The detector loads a scope once (``ScopeColumns.load``) and afterwards applies only the counts
that batches changed since (``SqlStore.count_changes``: current values, not deltas, so reading
a row twice is harmless). Pairs keep their position for the detector's lifetime: a pair whose
count falls to 0 stays, with ``a = 0``, and counts as absent from its tables.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from detectors.table import expected
from pvsignal.casetable import PairTable, stratified_expectation
from pvsignal.scoring import PairCounts
from pvsignal.store import ScopeCounts

# Decides which pairs a detection shard keeps, by product label (None: all).
ProductFilter = Callable[[np.ndarray], np.ndarray] | None


def shard_of(product: str, shards: int) -> int:
    """The detection shard (of ``shards``) that owns a product: a stable hash of its id."""
    return zlib.crc32(product.encode()) % shards


def shard_filter(shard: int, shards: int) -> Callable[[np.ndarray], np.ndarray]:
    """Which of the given product labels shard ``shard`` of ``shards`` owns."""

    def owned(products: np.ndarray) -> np.ndarray:
        codes, distinct = pd.factorize(products)
        mine = np.fromiter(
            (shard_of(p, shards) == shard for p in distinct), dtype=bool, count=len(distinct)
        )
        return mine[codes]

    return owned


class Labels:
    """Labels and their codes, in order of first appearance."""

    def __init__(self) -> None:
        self.code: dict[Any, int] = {}
        self.names: list[Any] = []

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, labels: np.ndarray) -> np.ndarray:
        """The codes of the labels, new ones added (a dict lookup per distinct label)."""
        if not len(labels):
            return np.empty(0, dtype=np.int64)
        positions, distinct = pd.factorize(labels)
        code, names = self.code, self.names
        codes = np.empty(len(distinct), dtype=np.int64)
        for k, label in enumerate(distinct.tolist()):
            found = code.get(label)
            if found is None:
                found = code[label] = len(names)
                names.append(label)
            codes[k] = found
        return codes[positions]

    def array(self) -> np.ndarray:
        out = np.empty(len(self.names), dtype=object)
        out[:] = self.names
        return out

    def copy(self) -> Labels:
        copied = Labels()
        copied.code, copied.names = dict(self.code), list(self.names)
        return copied


class PairIndex:
    """Position of each (product code, event code) key: a sorted array of the keys known at
    the last merge, and a dict of those added since (merged when it grows large)."""

    _MERGE_AT = 65_536

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.int64)
        self._positions = np.empty(0, dtype=np.int64)
        self._recent: dict[int, int] = {}

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Positions of the keys, -1 where unknown."""
        at = np.searchsorted(self._keys, keys)
        at = np.minimum(at, max(self._keys.size - 1, 0))
        found = np.full(keys.size, -1, dtype=np.int64)
        if self._keys.size:
            hit = self._keys[at] == keys
            found[hit] = self._positions[at[hit]]
        if self._recent:
            for k in np.flatnonzero(found < 0).tolist():
                found[k] = self._recent.get(int(keys[k]), -1)
        return found

    def add(self, keys: np.ndarray, positions: np.ndarray) -> None:
        if keys.size + len(self._recent) >= self._MERGE_AT:
            self._merge(keys, positions)
        else:
            self._recent.update(zip(keys.tolist(), positions.tolist(), strict=True))

    def _merge(self, keys: np.ndarray, positions: np.ndarray) -> None:
        recent = np.fromiter(self._recent, dtype=np.int64, count=len(self._recent))
        where = np.fromiter(self._recent.values(), dtype=np.int64, count=len(self._recent))
        keys = np.concatenate([self._keys, recent, keys])
        positions = np.concatenate([self._positions, where, positions])
        order = np.argsort(keys, kind="stable")
        self._keys, self._positions, self._recent = keys[order], positions[order], {}


def _pair_keys(product: np.ndarray, event: np.ndarray) -> np.ndarray:
    return (product << 32) | event


class ScopeColumns:
    """Pair counts, per-stratum margins and stratum totals of one scope, as arrays."""

    def __init__(self, keep: ProductFilter = None) -> None:
        self.keep = keep
        self.products, self.events, self.strata = Labels(), Labels(), Labels()
        self.per_product = np.zeros((0, 0))  # product code x stratum code
        self.per_event = np.zeros((0, 0))
        self.totals = np.zeros(0)  # per stratum code
        self.pair_product = np.empty(0, dtype=np.int64)
        self.pair_event = np.empty(0, dtype=np.int64)
        self.a = np.empty(0)
        self._index = PairIndex()

    @classmethod
    def load(cls, counts: ScopeCounts, keep: ProductFilter = None) -> ScopeColumns:
        columns = cls(keep)
        columns.apply(counts)
        return columns

    @property
    def size(self) -> int:
        return self.a.size

    def apply(self, counts: ScopeCounts) -> tuple[np.ndarray, np.ndarray]:
        """Take the given counts as the current ones; the positions of the pairs whose count
        changed, and their counts before."""
        self._set_margins(counts)
        product, event, a = counts.pair_product, counts.pair_event, counts.a
        if self.keep is not None and product.size:
            mine = self.keep(product)
            product, event, a = product[mine], event[mine], a[mine]
        positions = self.positions(product, event)
        before = self.a[positions]
        moved = before != a
        self.a[positions] = a
        return positions[moved], before[moved]

    def positions(self, product: np.ndarray, event: np.ndarray) -> np.ndarray:
        """The positions of these labelled pairs, new ones added with a count of 0."""
        codes = (self.products.encode(product), self.events.encode(event))
        self._fit_margins()
        keys = _pair_keys(*codes)
        found = self._index.find(keys)
        missing = np.flatnonzero(found < 0)
        if missing.size:
            # A key may repeat among the missing ones only if the input repeats a pair.
            # New pairs take positions in the order they come (a loaded table keeps the
            # store's order).
            distinct, first = np.unique(keys[missing], return_index=True)
            start = self.a.size
            rank = np.empty(distinct.size, dtype=np.int64)
            rank[np.argsort(first, kind="stable")] = np.arange(distinct.size)
            self._index.add(distinct, start + rank)
            take = missing[np.sort(first)]
            self.pair_product = np.concatenate([self.pair_product, codes[0][take]])
            self.pair_event = np.concatenate([self.pair_event, codes[1][take]])
            self.a = np.concatenate([self.a, np.zeros(distinct.size)])
            found[missing] = start + rank[np.searchsorted(distinct, keys[missing])]
        return found

    def _set_margins(self, counts: ScopeCounts) -> None:
        product, product_stratum, product_n = counts.product_rows
        event, event_stratum, event_n = counts.event_rows
        total_stratum, total_n = counts.totals
        rows = (self.products.encode(product), self.events.encode(event))
        strata = tuple(self.strata.encode(s) for s in (product_stratum, event_stratum))
        total_codes = self.strata.encode(total_stratum)
        self._fit_margins()
        self.per_product[rows[0], strata[0]] = product_n
        self.per_event[rows[1], strata[1]] = event_n
        self.totals[total_codes] = total_n

    def _fit_margins(self) -> None:
        """Grow the margin arrays to the labels known (zeros for the new ones)."""
        shape_p = (len(self.products), len(self.strata))
        shape_e = (len(self.events), len(self.strata))
        self.per_product = _grown(self.per_product, shape_p)
        self.per_event = _grown(self.per_event, shape_e)
        self.totals = _grown(self.totals[None, :], (1, len(self.strata)))[0]

    def frozen(self) -> ScopeColumns:
        """A copy of the counts as they are now, to make tables from on another thread while
        batches go on changing these (a memory copy: tens of milliseconds at millions of
        pairs, where making the table takes seconds). It has no pair index: tables only."""
        copy = ScopeColumns(self.keep)
        copy.products, copy.events = self.products.copy(), self.events.copy()
        copy.strata = self.strata.copy()
        copy.per_product, copy.per_event = self.per_product.copy(), self.per_event.copy()
        copy.totals, copy.a = self.totals.copy(), self.a.copy()
        copy.pair_product, copy.pair_event = self.pair_product.copy(), self.pair_event.copy()
        return copy

    # -- tables -----------------------------------------------------------------------------

    def observed(self, positions: np.ndarray | None = None) -> np.ndarray:
        """The given positions (all by default) of pairs with at least one report."""
        if positions is None:
            return np.flatnonzero(self.a > 0)
        return positions[self.a[positions] > 0]

    def table(self, positions: np.ndarray | None = None, *, stratify: bool = True) -> PairTable:
        """Labelled counts, margins and (stratified) expected counts of the observed pairs
        among the positions, in their order (all observed pairs by default)."""
        taken = self.observed(positions)
        product, event = self.pair_product[taken], self.pair_event[taken]
        n_product, n_event, n_total, e, strata = self.expectation(product, event, stratify)
        return PairTable(
            product=self.products.array()[product],
            event=self.events.array()[event],
            counts=PairCounts(
                a=self.a[taken],
                n_product=n_product,
                n_event=n_event,
                n_total=np.float64(n_total),
                expected=e,
            ),
            reports=int(n_total),
            strata=strata,
        )

    def expectation(
        self, product: np.ndarray, event: np.ndarray, stratify: bool
    ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, int]:
        """Margins, N, expected count and number of strata for pairs given by codes.

        Strata are summed in the order of their labels, so that E does not depend on the
        order in which strata were first seen (floating-point sums are not associative)."""
        active = np.flatnonzero(self.totals > 0)
        order = active[np.argsort(self.strata.array()[active].astype(str), kind="stable")]
        per_product, per_event = self.per_product[:, order], self.per_event[:, order]
        totals = self.totals[order]
        n_product = per_product.sum(axis=1)[product]
        n_event = per_event.sum(axis=1)[event]
        n_total = float(totals.sum())
        if stratify and order.size > 1:
            e = stratified_expectation(per_product, per_event, totals, product, event)
        else:
            e = expected(n_product, n_event, n_total)
        return n_product, n_event, n_total, e, int(order.size)


def _grown(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if array.shape == shape:
        return array
    grown = np.zeros(shape)
    grown[: array.shape[0], : array.shape[1]] = array
    return grown
