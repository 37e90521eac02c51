"""FROZEN COPY of api/query.py before partial-selection sort orders (commit 11e3adc): the
reference the equality test (tests/api/test_signal_listing_equality.py) compares today's answers
with. Do not edit, do not use outside that test."""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Sequence
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
from api.tenancy import RegistrySnapshot
from pvsignal.detection import MEASURES
from tests.api.legacy.snapshots import OPEN_STATUSES, STATISTICS, STATUSES, ScopeSnapshot

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
_CHUNK = 1 << 16
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
    """A sorted permutation of the pairs and the keys it was sorted on."""

    permutation: np.ndarray
    keys: np.ndarray  # the sort key of each position (NaN rows hold 0)
    finite: int  # positions before this hold non-NaN keys


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
    """The pairs sorted by ``sort`` (cached per snapshot)."""
    found = snapshot.derived.get(("order", sort))
    if found is not None:
        return found
    n = snapshot.size
    field, descending = sort.removeprefix("-"), sort.startswith("-")
    if field == "product":
        order = Order(np.arange(n), np.zeros(n), n)  # the order the pairs are held in
    else:
        values = np.asarray(snapshot.statistics[field], dtype=np.float64)
        missing = np.isnan(values)
        keys = np.where(missing, 0.0, -values if descending else values)
        permutation = np.lexsort((np.arange(n), keys, missing))
        order = Order(permutation, keys[permutation], int(n - missing.sum()))
    snapshot.derived[("order", sort)] = order
    return order


@dataclass(frozen=True)
class Page:
    rows: np.ndarray  # pair indices
    next_position: int | None  # where the next page starts, None at the end
    total: int


def page(mask: np.ndarray, order: Order, start: int, limit: int) -> Page:
    """Up to ``limit`` selected pairs from position ``start`` of the order."""
    permutation = order.permutation
    positions: list[np.ndarray] = []
    found = 0
    position = start
    while position < permutation.size and found <= limit:
        chunk = permutation[position : position + _CHUNK]
        hits = np.flatnonzero(mask[chunk]) + position
        positions.append(hits)
        found += hits.size
        position += chunk.size
    taken = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
    more = taken.size > limit
    taken = taken[:limit]
    following = int(taken[-1]) + 1 if more and taken.size else None
    return Page(permutation[taken], following, int(np.count_nonzero(mask)))


def position_after(snapshot: ScopeSnapshot, order: Order, key: list[Any]) -> int:
    """The first position in ``order`` past a row with key (missing, value, product, pt)."""
    missing, value, product, event = bool(key[0]), float.fromhex(key[1]), key[2], key[3]
    if missing:
        lo, hi = order.finite, order.permutation.size
    else:
        finite = order.keys[: order.finite]
        lo = int(np.searchsorted(finite, value, "left"))
        hi = int(np.searchsorted(finite, value, "right"))
    # Within equal keys the pairs are in (product, PT) order: binary search on the labels.
    labels = _labels_at(snapshot, order)
    return bisect.bisect_right(range(order.permutation.size), (product, event), lo, hi, key=labels)


def _labels_at(snapshot: ScopeSnapshot, order: Order) -> Callable[[int], tuple[str, str]]:
    permutation, products, events = order.permutation, snapshot.products, snapshot.events
    product_code, event_code = snapshot.product_code, snapshot.event_code

    def labels(j: int) -> tuple[str, str]:
        i = permutation[j]
        return (products[product_code[i]], events[event_code[i]])

    return labels


def key_at(snapshot: ScopeSnapshot, order: Order, position: int) -> list[Any]:
    i = order.permutation[position]
    return [
        position >= order.finite,
        float(order.keys[position]).hex(),
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
) -> int:
    """Where a page starts: the cursor's position in the same snapshot, else found by key."""
    if cursor is None:
        return 0
    found = _written(cursor)
    if found.s != sort:
        raise UnprocessableError(
            f"cursor: it continues a listing sorted by {found.s!r}, not {sort!r}",
            errors=[{"field": "query.cursor", "reason": "sort changed", "value": sort}],
        )
    if found.g == snapshot.generation and found.scope == snapshot.scope:
        if found.p > order.permutation.size:
            raise _unwritten(f"position {found.p} is past the end of the listing")
        return found.p
    return position_after(snapshot, order, list(found.k))


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
    last = page_.next_position - 1
    return signer.encode(
        {
            "scope": snapshot.scope,
            "g": snapshot.generation,
            "s": sort,
            "p": page_.next_position,
            "k": key_at(snapshot, order, last),
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
