"""Signal review (GVP Module IX): each organisation's own decision about one signal.

The statistical lifecycle (``pvsignal.detection``: new, ongoing, strengthened, weakened,
closed) is input to this workflow, never changed by it. A review is kept per (scope, product,
PT) and per organisation (an MAH's safety team and the regulator decide separately). These
are the rules, pure: no store, no clock (``now`` is passed in).

The legal moves (:data:`MOVES`, the one table every check reads)::

    unreviewed    -> validation
    validation    -> validated | refuted
    validated     -> assessment
    refuted       -> validation | closed          (reconsidered; or filed)
    assessment    -> confirmed | not_confirmed | monitoring
    monitoring    -> assessment | closed          (reassessed when data accrue; or filed)
    confirmed     -> closed                       (after the recommendation for action)
    not_confirmed -> closed
    closed        -> validation                   (reopened by hand)

``refuted`` is a validation outcome (not a signal), so it never enters assessment directly:
it goes back to ``validation`` when reconsidered, or is ``closed``. ``monitoring`` is an
assessment outcome that waits for more data: it returns to ``assessment`` or is ``closed``.

Reopening by the statistics (:func:`reopen`): when detection raises an alert whose changes
include ``new`` or ``strengthened`` (:data:`REOPENING_TRANSITIONS`) for a pair whose review
stands on a decision that the new data may overturn (:data:`DECIDED`: refuted,
not_confirmed, monitoring, closed), the review goes back to ``validation``, and its history
says which alert and which measures moved. This is the one move outside the table.

Due dates: entering a status sets ``due_at = now + deadline[status]`` (days, from
``Settings.review_deadline_days``; :data:`DEFAULT_DEADLINE_DAYS`), unless the same change
sets ``due_at`` itself; a status without a deadline clears it. A review is overdue when
``due_at`` has passed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pvsignal.errors import StateConflictError


class Status(StrEnum):
    unreviewed = "unreviewed"
    validation = "validation"
    validated = "validated"
    refuted = "refuted"
    assessment = "assessment"
    confirmed = "confirmed"
    not_confirmed = "not_confirmed"
    monitoring = "monitoring"
    closed = "closed"


class Priority(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


S = Status
MOVES: dict[Status, tuple[Status, ...]] = {
    S.unreviewed: (S.validation,),
    S.validation: (S.validated, S.refuted),
    S.validated: (S.assessment,),
    S.refuted: (S.validation, S.closed),
    S.assessment: (S.confirmed, S.not_confirmed, S.monitoring),
    S.monitoring: (S.assessment, S.closed),
    S.confirmed: (S.closed,),
    S.not_confirmed: (S.closed,),
    S.closed: (S.validation,),
}
DECIDED = frozenset({S.refuted, S.not_confirmed, S.monitoring, S.closed})
REOPENING_TRANSITIONS = frozenset({"new", "strengthened"})

# Days allowed in each status. GVP Module IX Rev 1 (EMA/827661/2011 Rev 1, 2017): a signal
# is validated within 30 days of its detection, and a validated signal is notified/brought to
# assessment within 30 days; the PRAC's assessment takes 60 days. The other numbers are this
# project's defaults: 30 days to record the recommendation after a decision, 180 days (one
# PSUR-like period) between looks at a signal under monitoring. Refuted and closed: none.
DEFAULT_DEADLINE_DAYS: dict[str, int] = {
    "validation": 30,
    "validated": 30,
    "assessment": 60,
    "confirmed": 30,
    "not_confirmed": 30,
    "monitoring": 180,
}


class IllegalMoveError(StateConflictError):
    """A status change the table does not allow; names the allowed moves."""

    def __init__(self, current: Status, target: Status) -> None:
        self.current, self.target = current, target
        self.allowed = [s.value for s in MOVES[current]]
        super().__init__(
            f"a review in {current.value!r} cannot move to {target.value!r}; "
            f"allowed: {', '.join(self.allowed)}"
        )


@dataclass(frozen=True)
class Review:
    """One organisation's review of one signal. ``version`` 0: never written (unreviewed)."""

    scope: str
    product_id: str
    pt: str
    org: str
    status: Status = Status.unreviewed
    priority: Priority = Priority.medium
    assignee: str | None = None
    due_at: str | None = None
    shared: bool = False
    linked_cases: tuple[str, ...] = ()
    comments: tuple[dict[str, str], ...] = ()
    history: tuple[dict[str, Any], ...] = ()
    version: int = 0
    updated_at: str | None = None
    updated_by: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "product_id": self.product_id,
            "pt": self.pt,
            "org": self.org,
            "status": self.status.value,
            "priority": self.priority.value,
            "assignee": self.assignee,
            "due_at": self.due_at,
            "shared": self.shared,
            "linked_cases": list(self.linked_cases),
            "comments": list(self.comments),
            "history": list(self.history),
            "version": self.version,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Review:
        return cls(
            scope=document["scope"],
            product_id=document["product_id"],
            pt=document["pt"],
            org=document["org"],
            status=Status(document["status"]),
            priority=Priority(document["priority"]),
            assignee=document.get("assignee"),
            due_at=document.get("due_at"),
            shared=bool(document.get("shared")),
            linked_cases=tuple(document.get("linked_cases") or ()),
            comments=tuple(document.get("comments") or ()),
            history=tuple(document.get("history") or ()),
            version=int(document.get("version") or 0),
            updated_at=document.get("updated_at"),
            updated_by=document.get("updated_by"),
        )

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def overdue(self, now: dt.datetime) -> bool:
        return self.due_at is not None and dt.datetime.fromisoformat(self.due_at) < now


@dataclass(frozen=True)
class Change:
    """What a caller asks to change; fields left out (``given``) stay as they are."""

    status: Status | None = None
    priority: Priority | None = None
    assignee: str | None = None
    due_at: dt.datetime | None = None
    shared: bool | None = None
    linked_cases: tuple[str, ...] | None = None
    comment: str | None = None
    reason: str | None = None
    given: frozenset[str] = field(default_factory=frozenset)


def check_move(current: Status, target: Status) -> None:
    """Raise IllegalMoveError unless the table allows ``current -> target``."""
    if target not in MOVES[current]:
        raise IllegalMoveError(current, target)


def due_after(status: Status, now: dt.datetime, deadlines: Mapping[str, int]) -> str | None:
    days = deadlines.get(status.value)
    return None if days is None else (now + dt.timedelta(days=days)).isoformat()


def apply(
    review: Review, change: Change, *, by: str, now: dt.datetime, deadlines: Mapping[str, int]
) -> Review:
    """The review after ``change`` made by ``by`` at ``now`` (IllegalMoveError if refused)."""
    at = now.isoformat()
    updates: dict[str, Any] = {}
    history = list(review.history)
    if change.status is not None and change.status is not review.status:
        check_move(review.status, change.status)
        updates["status"] = change.status
        updates["due_at"] = due_after(change.status, now, deadlines)
        history.append(
            {
                "at": at,
                "by": by,
                "from": review.status.value,
                "to": change.status.value,
                "reason": change.reason,
            }
        )
    if "priority" in change.given and change.priority is not None:
        updates["priority"] = change.priority
    if "assignee" in change.given:
        updates["assignee"] = change.assignee
    if "due_at" in change.given:
        updates["due_at"] = None if change.due_at is None else change.due_at.isoformat()
    if "shared" in change.given and change.shared is not None:
        updates["shared"] = change.shared
    if "linked_cases" in change.given and change.linked_cases is not None:
        updates["linked_cases"] = tuple(dict.fromkeys(change.linked_cases))
    if change.comment:
        updates["comments"] = (*review.comments, {"author": by, "at": at, "text": change.comment})
    return replace(
        review,
        **updates,
        history=tuple(history),
        version=review.version + 1,
        updated_at=at,
        updated_by=by,
    )


def reopening(changes: Mapping[str, str]) -> list[str]:
    """The measures of an alert's changes that reopen a decided review (sorted)."""
    return sorted(m for m, t in changes.items() if t in REOPENING_TRANSITIONS)


def reopen(
    review: Review,
    changes: Mapping[str, str],
    *,
    alert_id: int | None,
    by: str,
    now: dt.datetime,
    deadlines: Mapping[str, int],
) -> Review | None:
    """The review sent back to validation by a statistical transition, or None when this
    alert does not reopen it (no new/strengthened measure, or no decision to revisit)."""
    moved = reopening(changes)
    if not moved or review.status not in DECIDED:
        return None
    what = ", ".join(f"{m} {changes[m]}" for m in moved)
    reason = f"reopened: {what} (alert {alert_id}) after {review.status.value}"
    at = now.isoformat()
    entry = {"at": at, "by": by, "from": review.status.value, "to": "validation"}
    return replace(
        review,
        status=Status.validation,
        due_at=due_after(Status.validation, now, deadlines),
        history=(*review.history, {**entry, "reason": reason, "alert_id": alert_id}),
        version=review.version + 1,
        updated_at=at,
        updated_by=by,
    )
