"""Suspected duplicates across owners: a regulator confirms or dismisses each.

A report may name, in its duplicate links (C.1.9.1), a case id that another organisation
holds. One organisation never withdraws another's case, so the engine records the link as a
suspicion (see ``pvsignal.cases``). A regulator's confirmation withdraws the suspect case for
good, as a duplicate of the survivor, in one transaction with the decision; a dismissal only
records the decision. Each decision keeps who made it, when, and a note.
"""

from __future__ import annotations

from enum import StrEnum

from pvsignal.cases import CaseBook, CaseKey
from pvsignal.errors import NotFoundError, StateConflictError
from pvsignal.store import BatchWrite, SqlStore


class Decision(StrEnum):
    confirm = "confirm"
    dismiss = "dismiss"


_STATUS = {Decision.confirm: "confirmed", Decision.dismiss: "dismissed"}


def decide(
    store: SqlStore, suspicion_id: int, decision: Decision, decided_by: str, note: str | None
) -> set[str]:
    """Apply a regulator's decision; return the scopes whose counts it changed.

    Raises
    ------
    NotFoundError
        No suspicion has that id.
    StateConflictError
        The suspicion was decided already.
    """
    suspicion = store.suspicion(suspicion_id)
    if suspicion is None:
        raise NotFoundError(f"suspected duplicate {suspicion_id} does not exist")
    suspect = CaseKey(**suspicion["suspect"])
    survivor = CaseKey(**suspicion["survivor"])
    with store.batch() as session:
        if not session.decide_suspicion(suspicion_id, _STATUS[decision], decided_by, note):
            raise StateConflictError(
                f"suspected duplicate {suspicion_id} was already decided "
                f"({suspicion['status']} by {suspicion['decided_by']})"
            )
        if decision is Decision.dismiss:
            return set()
        book = CaseBook(session.load_cases([suspect.case_id]))
        book.withdraw_duplicate(suspect, survivor.case_id, survivor.owner)
        session.write(BatchWrite(cases=book.changed_states(), deltas=book.deltas))
        return book.deltas.touched
