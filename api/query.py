"""Filtering, sorting and cursor pagination over a scope snapshot, all on arrays.

Tenancy is one more filter, and it is always applied: the visibility mask of the principal is
ANDed into every query before anything is counted, sorted or returned.

Order: by one statistic (ascending, or descending with a leading '-'), NaN last, ties broken by
(product, PT) in code-point order — the order the pairs are held in. A cursor names the last row
returned: its position (used while the snapshot is the same) and its sort key (used to find the
place again in a newer snapshot), signed so that clients cannot forge one.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from api.auth import Principal
from api.problems import UnprocessableError
from api.snapshots import OPEN_STATUSES, STATISTICS, STATUSES, ScopeSnapshot
from api.tenancy import RegistrySnapshot
from pvsignal.detection import MEASURES

# '-' before any but "product" sorts descending; "product" is the (product, PT) order.
SORTABLE = (
    "product",
    "a",
    "expected",
    "prr",
    "prr_lower",
    "chi2",
    "ror",
    "ror_lower",
    "ic",
    "ic025",
    "ebgm",
    "eb05",
    "eb95",
    "n_product",
    "n_event",
)
_COUNTS = ("a", "n_product", "n_event", "n_total")
_FLAGS = tuple(f"signal_{m}" for m in MEASURES)


@dataclass(frozen=True)
class SignalFilter:
    """What the client asked for (every field optional)."""

    product_ids: tuple[str, ...] = ()
    mah_id: str | None = None
    pathway: str | None = None
    kind: str | None = None
    pts: tuple[str, ...] = ()
    measure: str | None = None
    status: str | None = None
    min_a: int | None = None
    since: dt.datetime | None = None


@dataclass(frozen=True)
class Order:
    """How one sort ranks the pairs: by key, NaN last, then by pair index; no permutation is
    held.

    ``values`` is the sorted statistic (None for "product", the order the pairs are held in).
    A pair's key is its value, negated when descending; NaN keys (missing values) rank after
    every other, as numpy sorts them.
    """

    sort: str
    values: np.ndarray | None
    descending: bool

    def keys(self, indices: np.ndarray | None = None) -> np.ndarray:
        """The keys of the given pairs (all pairs when None)."""
        values = self.values if indices is None else self.values[indices]
        values = np.asarray(values, dtype=np.float64)
        return -values if self.descending else values

    def count_before(self, key: float, index: int, keys: np.ndarray | None = None) -> int:
        """How many pairs rank before the one with ``key`` and ``index`` (its position)."""
        if self.values is None:
            return index
        keys = self.keys() if keys is None else keys
        if np.isnan(key):
            finite = keys.size - int(np.count_nonzero(np.isnan(keys)))
            return finite + int(np.count_nonzero(np.isnan(keys[:index])))
        return int(np.count_nonzero(keys < key)) + int(np.count_nonzero(keys[:index] == key))


# -- masks ------------------------------------------------------------------------------------


def selection(
    snapshot: ScopeSnapshot,
    principal: Principal,
    registry: RegistrySnapshot,
    query: SignalFilter,
) -> np.ndarray:
    """The pairs the principal may see that match the filter, as a boolean mask."""
    per_product = _product_mask(snapshot, principal, registry, query)
    mask = per_product[snapshot.product_code] if per_product is not None else None
    mask = _and(mask, _label_mask(snapshot.events, snapshot.event_code, query.pts))
    if query.min_a is not None:
        mask = _and(mask, snapshot.statistics["a"] >= query.min_a)
    mask = _and(mask, _state_mask(snapshot, query))
    if mask is None:
        return np.ones(snapshot.size, dtype=bool)
    return mask


def _and(mask: np.ndarray | None, other: np.ndarray | None) -> np.ndarray | None:
    if other is None:
        return mask
    return other if mask is None else mask & other


def _product_mask(
    snapshot: ScopeSnapshot,
    principal: Principal,
    registry: RegistrySnapshot,
    query: SignalFilter,
) -> np.ndarray | None:
    """Per distinct product: visible to the principal and matching the product filters."""
    mask = _visibility(snapshot, principal, registry)
    if query.product_ids:
        wanted = np.zeros(snapshot.products.size, dtype=bool)
        for product in query.product_ids:
            i = int(np.searchsorted(snapshot.products, product))
            if i < snapshot.products.size and snapshot.products[i] == product:
                wanted[i] = True
        mask = _and(mask, wanted)
    attributes = _attributes(snapshot, registry)
    for name, value in (("mah_id", query.mah_id), ("pathway", query.pathway), ("kind", query.kind)):
        if value is not None:
            mask = _and(mask, attributes[name] == value)
    return mask


def _visibility(
    snapshot: ScopeSnapshot, principal: Principal, registry: RegistrySnapshot
) -> np.ndarray | None:
    if principal.sees_everything:
        return None
    key = ("visible", registry.digest, principal.role, principal.org)
    found = snapshot.derived.get(key)
    if found is None:
        found = snapshot.derived[key] = registry.visibility_mask(principal, snapshot.products)
    return found


def _attributes(snapshot: ScopeSnapshot, registry: RegistrySnapshot) -> dict[str, np.ndarray]:
    """mah_id, pathway and kind of each distinct product (None when unregistered)."""
    key = ("attributes", registry.digest)
    found = snapshot.derived.get(key)
    if found is None:
        entries = [registry.get(label) for label in snapshot.products]
        found = {
            "mah_id": np.array([p.mah_id if p else None for p in entries], dtype=object),
            "pathway": np.array([p.pathway.value if p else None for p in entries], dtype=object),
            "kind": np.array([p.kind.value if p else None for p in entries], dtype=object),
        }
        snapshot.derived[key] = found
    return found


def _label_mask(labels: np.ndarray, codes: np.ndarray, wanted: Sequence[str]) -> np.ndarray | None:
    if not wanted:
        return None
    chosen = np.zeros(labels.size, dtype=bool)
    for label in wanted:
        i = int(np.searchsorted(labels, label))
        if i < labels.size and labels[i] == label:
            chosen[i] = True
    return chosen[codes]


def _state_mask(snapshot: ScopeSnapshot, query: SignalFilter) -> np.ndarray | None:
    """Status, since and measure filters: on one measure's states, or on any measure's."""
    if query.status is None and query.since is None:
        if query.measure is None:
            return None
        return snapshot.statistics[f"signal_{query.measure}"].astype(bool)
    measures = [query.measure] if query.measure else list(MEASURES)
    wanted = OPEN_STATUSES if query.status == "open" else (query.status,)
    codes = [STATUSES.index(s) for s in wanted] if query.status else None
    since = None
    if query.since is not None:
        moment = query.since if query.since.tzinfo else query.since.replace(tzinfo=dt.UTC)
        since = int(moment.timestamp() * 1_000_000)
    mask = np.zeros(snapshot.size, dtype=bool)
    for measure in measures:
        states = snapshot.states[measure]
        keep = np.ones(states.index.size, dtype=bool)
        if codes is not None:
            keep &= np.isin(states.status, codes)
        if since is not None:
            keep &= states.since >= since
        mask[states.index[keep]] = True
    return mask


# -- order and pages --------------------------------------------------------------------------


def order_of(snapshot: ScopeSnapshot, sort: str) -> Order:
    """The order ``sort`` ranks the pairs in (nothing is sorted until a page asks)."""
    field, descending = sort.removeprefix("-"), sort.startswith("-")
    if field == "product":
        return Order(sort, None, False)
    return Order(sort, snapshot.statistics[field], descending)


@dataclass(frozen=True)
class After:
    """Where a page starts: after the pair of ``key`` (NaN: a missing value) whose labels come
    ``label_rank`` pairs into the (product, PT) order; None starts at the top."""

    key: float
    label_rank: int


@dataclass(frozen=True)
class Page:
    rows: np.ndarray  # pair indices
    next_position: int | None  # where the next page starts, None at the end
    total: int


def page(mask: np.ndarray, order: Order, start: After | None, limit: int) -> Page:
    """Up to ``limit`` selected pairs ranked after ``start``: the selected pairs past it are
    partially selected (np.partition) down to the page, and only the page is sorted."""
    total = int(np.count_nonzero(mask))
    selected = None if total == mask.size else np.flatnonzero(mask)  # None: every pair
    if order.values is None:
        rows, more = _first_by_index(selected, mask.size, start, limit)
        return Page(rows, int(rows[-1]) + 1 if more else None, total)
    keys = order.keys(selected)
    whole = keys if selected is None else None  # every pair's keys, for the position count
    index = np.arange(mask.size) if selected is None else selected
    if start is not None:
        past = np.flatnonzero(_after(keys, index, start))
        keys, index = keys[past], index[past]
    chosen = _first(keys, index, limit + 1)
    rows = index[chosen[:limit]]
    if chosen.size <= limit:
        return Page(rows, None, total)
    last = int(rows[-1])
    before = order.count_before(float(order.keys(np.array([last]))[0]), last, whole)
    return Page(rows, before + 1, total)


def _first_by_index(
    selected: np.ndarray | None, size: int, start: After | None, limit: int
) -> tuple[np.ndarray, bool]:
    """The first ``limit`` selected pairs past ``start`` in (product, PT) order; more left?"""
    begin = 0 if start is None else start.label_rank
    if selected is None:
        rows = np.arange(begin, min(begin + limit + 1, size))
    else:
        at = int(np.searchsorted(selected, begin))
        rows = selected[at : at + limit + 1]
    return rows[:limit], rows.size > limit


def ranked(order: Order, selected: np.ndarray) -> np.ndarray:
    """The selected pairs (ascending indices) in the order, all of them (CSV exports)."""
    if order.values is None:
        return selected
    return selected[np.lexsort((selected, order.keys(selected)))]


def _after(keys: np.ndarray, index: np.ndarray, start: After) -> np.ndarray:
    """Which pairs (their keys and indices) rank after ``start``."""
    later_label = index >= start.label_rank
    missing = np.isnan(keys)
    if np.isnan(start.key):
        return missing & later_label
    return missing | (keys > start.key) | ((keys == start.key) & later_label)


def _first(keys: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """Positions (into keys) of the first ``count`` pairs in the order, sorted."""
    narrowed = _narrowed(keys, count)
    if narrowed is not None:
        return narrowed[_first_of_all(keys[narrowed], index[narrowed], count)]
    return _first_of_all(keys, index, count)


def _first_of_all(keys: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """:func:`_first` by a partition of every key."""
    if keys.size > count:
        # The count-th smallest key (NaN last): below it everything is taken, at it the
        # lowest indices (the keys come in index order).
        threshold = np.partition(keys, count - 1)[count - 1]
        if np.isnan(threshold):
            below, at = np.flatnonzero(~np.isnan(keys)), np.flatnonzero(np.isnan(keys))
        else:
            below, at = np.flatnonzero(keys < threshold), np.flatnonzero(keys == threshold)
        chosen = np.concatenate([below, at[: count - below.size]])
    else:
        chosen = np.arange(keys.size)
    return chosen[np.lexsort((index[chosen], keys[chosen]))]


# Below this many keys per pair wanted, selection runs on all keys at once.
_NARROW_RATIO = 32


def _narrowed(keys: np.ndarray, count: int) -> np.ndarray | None:
    """Positions of a few keys (in order) that surely hold the first ``count``, or None.

    Partitioning all keys costs far more than comparing them, so a threshold is read off a
    strided sample (a generous quantile of it), and the keys at or below it are kept if they
    are at least ``count``: then the first ``count`` are among them, whatever the sample was.
    """
    if keys.size <= _NARROW_RATIO * count + 4096:
        return None
    step = keys.size // (_NARROW_RATIO * count + 4096)
    sample = keys[::step]
    rank = min(sample.size - 1, 2 * (count // step) + 16)
    threshold = np.partition(sample, rank)[rank]
    if np.isnan(threshold):
        return None
    kept = np.flatnonzero(keys <= threshold)
    return kept if kept.size >= count else None


def key_at(snapshot: ScopeSnapshot, order: Order, i: int) -> list[Any]:
    """The cursor key of pair ``i``: (missing, key as hex, product, PT); a missing value's
    key is written as 0."""
    key = 0.0 if order.values is None else float(order.keys(np.array([i]))[0])
    missing = bool(np.isnan(key))
    return [
        missing,
        (0.0 if missing else key).hex(),
        snapshot.products[snapshot.product_code[i]],
        snapshot.events[snapshot.event_code[i]],
    ]


# -- cursors ----------------------------------------------------------------------------------


class CursorSigner:
    """Opaque, tamper-evident cursors: base64url(JSON) '.' base64url(HMAC-SHA256)[:16]."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"pvsignal-cursor\0" + secret).digest()

    def encode(self, document: dict[str, Any]) -> str:
        payload = orjson.dumps(document)
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        return f"{_b64(payload)}.{_b64(mac)}"

    def decode(self, cursor: str) -> dict[str, Any]:
        try:
            encoded, _, signature = cursor.partition(".")
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            mac = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(mac, expected):
                raise ValueError("bad signature")
            document = orjson.loads(payload)
            if not isinstance(document, dict):
                raise ValueError("not an object")
        except ValueError:
            raise UnprocessableError(
                "cursor: not a cursor this service issued",
                errors=[{"field": "query.cursor", "reason": "invalid cursor", "value": cursor}],
            ) from None
        return document


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def start_position(
    snapshot: ScopeSnapshot, order: Order, sort: str, cursor: dict[str, Any] | None
) -> After | None:
    """Where a page starts: after the row the cursor names, found by its key (in the same
    snapshot, that row is the one before the cursor's position)."""
    if cursor is None:
        return None
    found = _written(cursor)
    if found.s != sort:
        raise UnprocessableError(
            f"cursor: it continues a listing sorted by {found.s!r}, not {sort!r}",
            errors=[{"field": "query.cursor", "reason": "sort changed", "value": sort}],
        )
    same_snapshot = found.g == snapshot.generation and found.scope == snapshot.scope
    if same_snapshot and found.p > snapshot.size:
        raise _unwritten(f"position {found.p} is past the end of the listing")
    missing, value, product, event = found.k
    key = np.nan if missing else float.fromhex(value)
    return After(key, snapshot.label_rank(product, event))


class _Cursor(BaseModel):
    """The content next_cursor writes. A signed cursor with other content was not written by
    this service (its secret leaked, or is the public development default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: StrictStr
    g: StrictInt  # the snapshot generation
    s: StrictStr  # the sort
    p: Annotated[StrictInt, Field(ge=0)]  # the next position in that generation
    k: tuple[StrictBool, StrictStr, StrictStr, StrictStr]  # missing, value (hex), product, PT

    @field_validator("k")
    @classmethod
    def _hex_value(cls, k: tuple[bool, str, str, str]) -> tuple[bool, str, str, str]:
        float.fromhex(k[1])  # a ValueError: pydantic reports it as a validation error
        return k


def _written(cursor: dict[str, Any]) -> _Cursor:
    try:
        return _Cursor.model_validate(cursor)
    except ValidationError as error:
        fields = ", ".join(".".join(map(str, e["loc"])) or "(cursor)" for e in error.errors())
        raise _unwritten(f"unexpected content ({fields})") from None


def _unwritten(why: str) -> UnprocessableError:
    return UnprocessableError(
        f"cursor: not a cursor this service issued: {why}",
        errors=[{"field": "query.cursor", "reason": "invalid cursor", "value": why}],
    )


def next_cursor(
    signer: CursorSigner, snapshot: ScopeSnapshot, order: Order, sort: str, page_: Page
) -> str | None:
    if page_.next_position is None:
        return None
    return signer.encode(
        {
            "scope": snapshot.scope,
            "g": snapshot.generation,
            "s": sort,
            "p": page_.next_position,
            "k": key_at(snapshot, order, int(page_.rows[-1])),
        }
    )


# -- rows -------------------------------------------------------------------------------------


def rows(
    snapshot: ScopeSnapshot, indices: np.ndarray, registry: RegistrySnapshot
) -> list[dict[str, Any]]:
    """The JSON rows of the given pairs (non-finite numbers become null)."""
    stats = snapshot.statistics
    columns = {
        name: (
            stats[name][indices].astype(np.int64).tolist()
            if name in _COUNTS
            else stats[name][indices].astype(bool).tolist()
            if name in _FLAGS
            else stats[name][indices].tolist()
        )
        for name in STATISTICS
    }
    products = snapshot.products[snapshot.product_code[indices]].tolist()
    events = snapshot.events[snapshot.event_code[indices]].tolist()
    states = {m: _states_of(snapshot, m, indices) for m in MEASURES}
    out = []
    for k, (product, event) in enumerate(zip(products, events, strict=True)):
        out.append(
            {
                "scope": snapshot.scope,
                "product_id": product,
                "pt": event,
                "product": _product(registry, product),
                **{name: columns[name][k] for name in _COUNTS},
                "expected": columns["expected"][k],
                "statistics": {
                    name: columns[name][k]
                    for name in STATISTICS
                    if name not in _COUNTS and name not in _FLAGS and name != "expected"
                },
                "signals": {
                    measure: {
                        "flagged": columns[f"signal_{measure}"][k],
                        **(states[measure][k] or {"status": None, "since": None}),
                    }
                    for measure in MEASURES
                },
            }
        )
    return out


def _states_of(
    snapshot: ScopeSnapshot, measure: str, indices: np.ndarray
) -> list[dict[str, Any] | None]:
    states = snapshot.states[measure]
    if states.index.size == 0:
        return [None] * indices.size
    j = np.minimum(np.searchsorted(states.index, indices), states.index.size - 1)
    hit = states.index[j] == indices
    return [
        {"status": STATUSES[states.status[jj]], "since": states.since_text[jj]} if h else None
        for jj, h in zip(j.tolist(), hit.tolist(), strict=True)
    ]


def _product(registry: RegistrySnapshot, product_id: str) -> dict[str, Any]:
    found = registry.get(product_id)
    if found is None:
        return {"registered": False, "name": None, "mah_id": None, "pathway": None, "kind": None}
    return {
        "registered": True,
        "name": found.names[0],
        "mah_id": found.mah_id,
        "pathway": found.pathway.value,
        "kind": found.kind.value,
    }
