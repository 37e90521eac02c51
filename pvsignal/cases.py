"""Case semantics: every case counted once, in its latest version, whatever the arrival order.

- Latest version wins: a follow-up withdraws what the earlier version contributed and adds
  its own pairs; an older version is ignored (stale); the same version again changes nothing.
- A nullification withdraws the case for good; later versions of it are refused.
- A report listing ``duplicate_of_ids`` withdraws those cases of the same owner for good (a
  placeholder keeps a case withdrawn that has not arrived yet). Links count from every valid
  record, stale ones included, so the outcome never depends on the order the versions arrive in.
- A case is (owner organisation, case_id): nothing one owner sends touches another's case. A
  duplicate link that names a case id another owner holds is only a *suspected duplicate*,
  recorded for a regulator to confirm or dismiss (see ``Suspicion``), whichever arrives first.

Nothing here does I/O: the engine loads the states a batch touches, applies its reports and
writes the changed states and the count deltas back in one transaction.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import orjson


class Status(StrEnum):
    active = "active"
    nullified = "nullified"
    duplicate = "duplicate"


class Outcome(StrEnum):
    """What one valid record did."""

    new = "new"
    follow_up = "follow_up"
    stale = "stale"
    resent = "resent"
    nullified = "nullified"
    refused = "refused"


# The received period of a report that states no received date (C.1.5 absent).
UNKNOWN_PERIOD = "unknown"


class Contribution(NamedTuple):
    """What one case version adds to the counts: its stratum, its received month
    (``YYYY-MM``, or ``UNKNOWN_PERIOD``), per scope the counted products and events (the
    pairs are their cross product), and where it was reported (``place_of``: the province
    and the sender institution its report states, "" where it states none). A named tuple:
    the bulk path makes one per report, and tuples are the cheapest immutable records to build."""

    stratum: str
    scopes: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]
    period: str = UNKNOWN_PERIOD
    region: str = ""
    institution: str = ""

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "s": self.stratum,
                "c": self.scopes,
                "p": self.period,
                "r": self.region,
                "i": self.institution,
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> Contribution:
        document = orjson.loads(text)
        return cls(
            document["s"],
            tuple((s, tuple(p), tuple(e)) for s, p, e in document["c"]),
            document.get("p", UNKNOWN_PERIOD),  # stored before migration 8 backfilled it
            document.get("r", ""),  # stored before migration 14 backfilled them
            document.get("i", ""),
        )


def province(region: str | None) -> str | None:
    """ISO 3166-2 subdivision (``CN-46``): China's subdivisions are provinces already; any
    finer suffix (``CN-46-01``) is cut off."""
    if not region:
        return None
    return "-".join(region.split("-")[:2])


def place_of(region: str | None, institution: str | None) -> tuple[str, str]:
    """(province, institution) of a report as its stored document states them (region; C.3.2
    sender organisation, its surrounding spaces dropped as validation drops them), "" for
    what it does not state: the keys of the overview's counts by region and institution."""
    return province(region) or "", (institution or "").strip()


# The owner of cases whose source names no organisation (see pvsignal.ownership).
UNATTRIBUTED = "unattributed"


class CaseKey(NamedTuple):
    """A case's identity: the organisation that owns it and its C.1.8.1 id."""

    owner: str
    case_id: str


class Suspicion(NamedTuple):
    """A link from one owner's case to a case id held by another owner: the survivor names
    the suspect as its duplicate. Only a regulator's decision withdraws the suspect."""

    survivor: CaseKey
    suspect: CaseKey


@dataclass(slots=True)
class CaseState:
    """A case as the store holds it. ``version`` is None for a placeholder withdrawn before
    any of its versions arrived. ``report_json`` is the payload received in this batch;
    None for a state loaded from the store (whose stored payload a write keeps)."""

    case_id: str
    status: Status
    version: int | None = None
    report_id: str | None = None
    duplicate_of: str | None = None
    contribution: Contribution | None = None
    report_json: str | None = None
    owner: str = UNATTRIBUTED
    # The survivor's owner when a regulator confirmed a duplicate across owners (else None:
    # ``duplicate_of`` is a case id of the same owner).
    duplicate_of_owner: str | None = None
    # C.1.5 of the stored version (YYYY-MM-DD), for case listings by date; None: not
    # stated, or a state loaded from the store (whose stored date a write keeps).
    received: str | None = None

    @property
    def key(self) -> CaseKey:
        return CaseKey(self.owner, self.case_id)


class Deltas:
    """Count changes of a batch, keyed as the store's count tables.

    Additions and withdrawals only append their count keys to lists (the cross products
    built by ``itertools.product`` in C); each table is counted once, when it is read. That
    keeps the per-report cost of a bulk import low. ``pairs`` etc. give the net changes
    (possibly zero).
    """

    def __init__(self) -> None:
        self._added = _Keys()
        self._withdrawn = _Keys()

    def add(self, contribution: Contribution, sign: int) -> None:
        (self._added if sign > 0 else self._withdrawn).append(contribution)

    @property
    def touched(self) -> set[str]:
        """Scopes whose counts changed in this batch (the detectors rerun over these)."""
        return {scope for scope, _ in self._added.totals} | {
            scope for scope, _ in self._withdrawn.totals
        }

    @property
    def pairs(self) -> Counter[tuple[str, str, str]]:
        return self._net("pairs")

    @property
    def products(self) -> Counter[tuple[str, str, str]]:
        return self._net("products")

    @property
    def events(self) -> Counter[tuple[str, str, str]]:
        return self._net("events")

    @property
    def totals(self) -> Counter[tuple[str, ...]]:
        return self._net("totals")

    # The same counts per received month (the trend tables), keyed as their tables:
    # (scope, product, event, period), (scope, product|event, stratum, period) and
    # (scope, stratum, period).

    @property
    def pair_periods(self) -> Counter[tuple[str, str, str, str]]:
        return self._net("pair_periods")

    @property
    def product_periods(self) -> Counter[tuple[str, str, str, str]]:
        return self._net("product_periods")

    @property
    def event_periods(self) -> Counter[tuple[str, str, str, str]]:
        return self._net("event_periods")

    @property
    def total_periods(self) -> Counter[tuple[str, str, str]]:
        return self._net("total_periods")

    @property
    def places(self) -> Counter[tuple[str, str, str, str, str]]:
        """Cases per (scope, period, region, institution, products): ``products`` the JSON
        array of the products the case counts in the scope, sorted (the overview's counts)."""
        return self._net("places")

    def _net(self, table: str) -> Counter:
        net = Counter(getattr(self._added, table))
        net.subtract(Counter(getattr(self._withdrawn, table)))
        return net


class _Keys:
    """The count keys of the contributions added (or withdrawn), one entry per case."""

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str, str]] = []
        self.products: list[tuple[str, str, str]] = []
        self.events: list[tuple[str, str, str]] = []
        self.totals: list[tuple[str, str]] = []
        self.pair_periods: list[tuple[str, str, str, str]] = []
        self.product_periods: list[tuple[str, str, str, str]] = []
        self.event_periods: list[tuple[str, str, str, str]] = []
        self.total_periods: list[tuple[str, str, str]] = []
        self.places: list[tuple[str, str, str, str, str]] = []

    def append(self, contribution: Contribution) -> None:
        stratum, when = contribution.stratum, (contribution.period,)
        product = itertools.product
        for scope, products, events in contribution.scopes:
            where, strata = (scope,), (stratum,)
            self.totals.append((scope, stratum))
            self.products.extend(product(where, strata, products))
            self.events.extend(product(where, strata, events))
            self.pairs.extend(product(where, products, events))
            self.total_periods.append((scope, stratum, when[0]))
            self.product_periods.extend(product(where, products, strata, when))
            self.event_periods.extend(product(where, events, strata, when))
            self.pair_periods.extend(product(where, products, events, when))
            self.places.append(
                (
                    scope,
                    when[0],
                    contribution.region,
                    contribution.institution,
                    orjson.dumps(sorted(products)).decode(),
                )
            )


class Version(NamedTuple):
    """The facts of one valid report version that case semantics need."""

    owner: str
    case_id: str
    report_id: str
    version: int
    nullified: bool
    duplicate_of_ids: tuple[str, ...]
    contribution: Contribution
    report_json: str
    received: str | None = None  # C.1.5 as YYYY-MM-DD, kept with the version's history

    @property
    def key(self) -> CaseKey:
        return CaseKey(self.owner, self.case_id)


class CaseBook:
    """Applies versions to the case states of one batch, accumulating count deltas.

    ``states`` holds every stored state of the case ids the batch names, of every owner, so
    that links across owners become suspicions whichever side arrives first.
    """

    def __init__(self, states: dict[CaseKey, CaseState]) -> None:
        self.states = states
        self.deltas = Deltas()
        self.changed: set[CaseKey] = set()
        self.suspicions: set[Suspicion] = set()
        self.duplicates_withdrawn = 0
        self._owners: dict[str, set[str]] = {}
        for key in states:
            self._owners.setdefault(key.case_id, set()).add(key.owner)

    def apply(self, version: Version) -> tuple[Outcome, str | None]:
        """Apply one version; return its outcome and, when refused, the reason."""
        for other in version.duplicate_of_ids:
            if other != version.case_id:
                self.withdraw_duplicate(CaseKey(version.owner, other), version.case_id)
                self._suspect_across_owners(version.key, other)
        state = self.states.get(version.key)
        if state is not None and state.status is Status.duplicate:
            return Outcome.refused, (
                f"case {version.case_id!r} was withdrawn as a duplicate of "
                f"{state.duplicate_of!r}; its versions no longer count"
            )
        if state is not None and state.status is Status.nullified:
            if version.nullified:
                return Outcome.resent, None
            return Outcome.refused, (
                f"case {version.case_id!r} was nullified; version {version.version} is refused"
            )
        if version.nullified:
            self._withdraw(state)
            self._store(
                CaseState(
                    version.case_id,
                    Status.nullified,
                    version.version,
                    version.report_id,
                    report_json=version.report_json,
                    owner=version.owner,
                    received=version.received,
                )
            )
            return Outcome.nullified, None
        if state is not None and state.version is not None:
            if version.version < state.version:
                return Outcome.stale, None
            if version.version == state.version:
                return Outcome.resent, None
        outcome = Outcome.new if state is None else Outcome.follow_up
        if state is None:
            self._suspected_by_other_owners(version.key)
        self._withdraw(state)
        self.deltas.add(version.contribution, +1)
        self._store(
            CaseState(
                version.case_id,
                Status.active,
                version.version,
                version.report_id,
                contribution=version.contribution,
                report_json=version.report_json,
                owner=version.owner,
                received=version.received,
            )
        )
        return outcome, None

    def withdraw_duplicate(
        self, key: CaseKey, survivor: str, survivor_owner: str | None = None
    ) -> bool:
        """Withdraw the case for good as a duplicate of case ``survivor`` (of the same owner,
        unless ``survivor_owner`` names another); False when it was already withdrawn."""
        state = self.states.get(key)
        if state is not None and state.status is not Status.active:
            return False  # already withdrawn (as a duplicate, or nullified) for good
        self._withdraw(state)
        self.duplicates_withdrawn += 1
        self._store(
            CaseState(
                key.case_id,
                Status.duplicate,
                None if state is None else state.version,
                None if state is None else state.report_id,
                duplicate_of=survivor,
                report_json=None if state is None else state.report_json,
                owner=key.owner,
                duplicate_of_owner=survivor_owner,
            )
        )
        return True

    def _suspect_across_owners(self, survivor: CaseKey, case_id: str) -> None:
        """The survivor names ``case_id``: every other owner's real case of that id is a
        suspected duplicate (placeholders are not cases)."""
        for owner in self._owners.get(case_id, ()):
            other = self.states[CaseKey(owner, case_id)]
            if owner != survivor.owner and other.version is not None:
                self.suspicions.add(Suspicion(survivor, other.key))

    def _suspected_by_other_owners(self, arrived: CaseKey) -> None:
        """A new case whose id another owner has named as a duplicate of its own case."""
        for owner in self._owners.get(arrived.case_id, ()):
            named = self.states[CaseKey(owner, arrived.case_id)]
            if (
                owner != arrived.owner
                and named.status is Status.duplicate
                and named.duplicate_of_owner is None
            ):
                survivor = CaseKey(owner, named.duplicate_of)
                self.suspicions.add(Suspicion(survivor, arrived))

    def _withdraw(self, state: CaseState | None) -> None:
        if state is not None and state.contribution is not None:
            self.deltas.add(state.contribution, -1)

    def _store(self, state: CaseState) -> None:
        self.states[state.key] = state
        self.changed.add(state.key)
        self._owners.setdefault(state.case_id, set()).add(state.owner)

    def changed_states(self) -> list[CaseState]:
        return [self.states[key] for key in sorted(self.changed)]
