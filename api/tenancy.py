"""Who sees which product: the registry as the API holds it, and the visibility rules.

- Regulators and admins see every product, registered or not.
- An MAH sees the registered products whose ``mah_id`` is its organisation, nothing else:
  never another MAH's product, never an unregistered one.
- Hospitals read no signal at all (their routes refuse them before any product is looked at).
- Cases (``case_access``): regulators and admins read every case in full, a hospital its own
  cases in full, an MAH the cases counted with one of its products at the restricted level
  (pvsignal.case_access holds the field masks).
- Writes: a hospital or an MAH owns the cases it submits and names no other sender; a
  regulator (or admin) submits on behalf of the sender organisation its records name
  (``owner_rule``, used by every write path of the API). A hospital records exposures at its
  own institution only, an MAH exposures to its own products only; each organisation reads
  back its own exposure records (``exposure_owner``), regulators and admins every one.

The registry is re-read when its digest changes (checked at most every few seconds, and at once
after a change made through the API), so a product moved to another MAH stops being visible to
the first within that interval.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from api.auth import Principal, Role
from api.pool import StorePool
from pvsignal.case_access import CaseAccess, Level
from pvsignal.institutions import InstitutionRegistry
from pvsignal.ownership import UNATTRIBUTED, OwnerRule, SenderOwns, SubmitterOwns
from pvsignal.products import RegisteredProduct, Registry
from pvsignal.store import SqlStore
from pvsignal.store.access import PRODUCTS_WRITTEN


def owner_rule(principal: Principal) -> OwnerRule:
    """Whose cases the principal's submissions are (see pvsignal.ownership)."""
    if principal.sees_everything:
        return SenderOwns(principal.org or UNATTRIBUTED)
    assert principal.org, "organisation roles always carry an organisation (api.auth)"
    return SubmitterOwns(principal.org, "hospital" if principal.role is Role.hospital else "mah")


def exposure_owner(principal: Principal, institutions: InstitutionRegistry) -> str | None:
    """Whose exposure records the principal reads: every owner's (None) for regulators and
    admins; an organisation its own only (patient-level rows: an MAH reads the rates of its
    products, never a hospital's records)."""
    if principal.sees_everything:
        return None
    assert principal.org, "organisation roles always carry an organisation (api.auth)"
    return institutions.canonical(principal.org)


@dataclass(frozen=True)
class RegistrySnapshot:
    digest: str
    registry: Registry
    mah_of: dict[str, str] = field(default_factory=dict)
    institutions: InstitutionRegistry = field(default_factory=InstitutionRegistry)

    def get(self, product_id: str) -> RegisteredProduct | None:
        return self.registry.get(product_id)

    def can_see(self, principal: Principal, product_id: str) -> bool:
        if principal.sees_everything:
            return True
        if principal.role is Role.mah:
            return self.mah_of.get(product_id) == principal.org
        return False

    def products_of(self, org: str | None) -> list[str]:
        return sorted(p for p, mah in self.mah_of.items() if mah == org)

    def visible_products(self, principal: Principal) -> list[str] | None:
        """The products the principal may see, or None for every product."""
        if principal.sees_everything:
            return None
        if principal.role is Role.mah:
            return self.products_of(principal.org)
        return []

    def visibility_mask(self, principal: Principal, labels: np.ndarray) -> np.ndarray | None:
        """Per product label, may the principal see it? None means all may be seen."""
        if principal.sees_everything:
            return None
        if principal.role is not Role.mah:
            return np.zeros(labels.size, dtype=bool)
        mah_of = self.mah_of
        return np.fromiter(
            (mah_of.get(label) == principal.org for label in labels), bool, labels.size
        )


class RegistryCache:
    """The registry, re-read when it changed: when the store's registry mark moved (every
    product or institution write moves it), which is one row to read every
    ``freshness_seconds``, where the digest of every document was (0.1-0.3 s at 50,000
    products, in whichever page's request found the check due)."""

    def __init__(self, pool: StorePool, freshness_seconds: float) -> None:
        self._pool, self._freshness = pool, freshness_seconds
        self._lock = threading.Lock()
        self._snapshot: RegistrySnapshot | None = None
        self._mark: str | None = None
        self._checked = 0.0

    def current(self) -> RegistrySnapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - self._checked < self._freshness:
            return snapshot
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._checked < self._freshness:
                return self._snapshot
            with self._pool.store() as store:
                mark = store.setting(PRODUCTS_WRITTEN)
                if self._snapshot is None or mark != self._mark:
                    self._reload(store)
                    self._mark = mark
            self._checked = time.monotonic()
            assert self._snapshot is not None
            return self._snapshot

    def _reload(self, store: SqlStore) -> None:
        digest = store.products_digest()
        if self._snapshot is None or self._snapshot.digest != digest:
            products = store.load_products()
            self._snapshot = RegistrySnapshot(
                digest,
                Registry(products),
                {p.product_id: p.mah_id for p in products},
                InstitutionRegistry(store.load_institutions()),
            )
            # Kept until the registry changes: tens of thousands of small objects (50,000
            # products: 270,000) that every full collection would walk, 0.3 s a time, a
            # pause in whichever page it falls (their p99). Frozen, collections leave them
            # out (pvsignal.ingest.BatchCollector does the same for what a consumer loads).
            gc.freeze()

    def invalidate(self) -> None:
        self._checked = 0.0


def case_access(principal: Principal, registry: RegistrySnapshot, key: bytes) -> CaseAccess:
    """Which cases, and which of their fields, the principal may read (pvsignal.case_access):
    regulators and admins every case in full; a hospital its own cases in full; an MAH the
    cases counted with one of its registered products, at the restricted level."""
    if principal.sees_everything:
        return CaseAccess(Level.full, key)
    if principal.role is Role.hospital:
        assert principal.org, "organisation roles always carry an organisation (api.auth)"
        return CaseAccess(Level.full, key, owner=principal.org)
    if principal.role is Role.mah:
        return CaseAccess(
            Level.restricted, key, products=frozenset(registry.products_of(principal.org))
        )
    return CaseAccess(Level.restricted, key, products=frozenset())
