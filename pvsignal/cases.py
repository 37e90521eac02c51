"""Case semantics: every case counted once, in its latest version, whatever the arrival order.

- Latest version wins: a follow-up withdraws what the earlier version contributed and adds
  its own pairs; an older version is ignored (stale); the same version again changes nothing.
- A nullification withdraws the case for good; later versions of it are refused.
- A report listing ``duplicate_of_ids`` withdraws those cases for good (a placeholder keeps a
  case withdrawn that has not arrived yet). Links count from every valid record, stale ones
  included, so the outcome never depends on the order the versions arrive in.

Nothing here does I/O: the engine loads the states a batch touches, applies its reports and
writes the changed states and the count deltas back in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum

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


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one case version adds to the counts: its stratum, and per scope the counted
    products and events (the pairs are their cross product)."""

    stratum: str
    scopes: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]

    def to_json(self) -> str:
        return orjson.dumps({"s": self.stratum, "c": self.scopes}).decode()

    @classmethod
    def from_json(cls, text: str) -> Contribution:
        document = orjson.loads(text)
        return cls(document["s"], tuple((s, tuple(p), tuple(e)) for s, p, e in document["c"]))


@dataclass(slots=True)
class CaseState:
    """A case as the store holds it. ``version`` is None for a placeholder withdrawn before
    any of its versions arrived."""

    case_id: str
    status: Status
    version: int | None = None
    report_id: str | None = None
    duplicate_of: str | None = None
    contribution: Contribution | None = None
    report_json: str | None = None


@dataclass
class Deltas:
    """Count changes of a batch, keyed as the store's count tables."""

    pairs: defaultdict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    products: defaultdict[tuple[str, str, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    events: defaultdict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    totals: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    # Scopes whose counts changed in this batch (the detectors rerun over these).
    touched: set[str] = field(default_factory=set)

    def add(self, contribution: Contribution, sign: int) -> None:
        stratum = contribution.stratum
        pairs, products, events = self.pairs, self.products, self.events
        for scope, scope_products, scope_events in contribution.scopes:
            self.touched.add(scope)
            self.totals[scope, stratum] += sign
            for product in scope_products:
                products[scope, stratum, product] += sign
                for event in scope_events:
                    pairs[scope, product, event] += sign
            for event in scope_events:
                events[scope, stratum, event] += sign

    def nonzero(self) -> Deltas:
        """The same deltas without entries that cancelled out."""
        return Deltas(
            pairs=defaultdict(int, {k: v for k, v in self.pairs.items() if v}),
            products=defaultdict(int, {k: v for k, v in self.products.items() if v}),
            events=defaultdict(int, {k: v for k, v in self.events.items() if v}),
            totals=defaultdict(int, {k: v for k, v in self.totals.items() if v}),
            touched=set(self.touched),
        )


@dataclass(frozen=True, slots=True)
class Version:
    """The facts of one valid report version that case semantics need."""

    case_id: str
    report_id: str
    version: int
    nullified: bool
    duplicate_of_ids: tuple[str, ...]
    contribution: Contribution
    report_json: str


class CaseBook:
    """Applies versions to the case states of one batch, accumulating count deltas."""

    def __init__(self, states: dict[str, CaseState]) -> None:
        self.states = states
        self.deltas = Deltas()
        self.changed: set[str] = set()
        self.duplicates_withdrawn = 0

    def apply(self, version: Version) -> tuple[Outcome, str | None]:
        """Apply one version; return its outcome and, when refused, the reason."""
        for other in version.duplicate_of_ids:
            if other != version.case_id:
                self._withdraw_duplicate(other, version.case_id)
        state = self.states.get(version.case_id)
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
                )
            )
            return Outcome.nullified, None
        if state is not None and state.version is not None:
            if version.version < state.version:
                return Outcome.stale, None
            if version.version == state.version:
                return Outcome.resent, None
        outcome = Outcome.new if state is None else Outcome.follow_up
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
            )
        )
        return outcome, None

    def _withdraw_duplicate(self, case_id: str, survivor: str) -> None:
        state = self.states.get(case_id)
        if state is not None and state.status is not Status.active:
            return  # already withdrawn (as a duplicate, or nullified) for good
        self._withdraw(state)
        self.duplicates_withdrawn += 1
        self._store(
            CaseState(
                case_id,
                Status.duplicate,
                None if state is None else state.version,
                None if state is None else state.report_id,
                duplicate_of=survivor,
                report_json=None if state is None else state.report_json,
            )
        )

    def _withdraw(self, state: CaseState | None) -> None:
        if state is not None and state.contribution is not None:
            self.deltas.add(state.contribution, -1)

    def _store(self, state: CaseState) -> None:
        self.states[state.case_id] = state
        self.changed.add(state.case_id)

    def changed_states(self) -> list[CaseState]:
        return [self.states[case_id] for case_id in sorted(self.changed)]
