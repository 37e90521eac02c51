"""Suspected duplicates across organisations: regulators list them and decide each.

A report that names another organisation's case id as its duplicate never withdraws that
case by itself (see pvsignal.cases); the link waits here until a regulator confirms it (the
case is withdrawn for good) or dismisses it. Each decision records who made it and when.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import AuditActor, Regulator, RuntimeDep, StoreDep
from api.problems import ConflictError, NotFoundError
from api.schemas import DuplicateDecision, SuspectedDuplicate, SuspectedDuplicateList
from pvsignal import duplicates
from pvsignal.audit import Actor, recorded
from pvsignal.errors import NotFoundError as UnknownError
from pvsignal.errors import StateConflictError

router = APIRouter(prefix="/v1/duplicates", tags=["duplicates"])

SuspicionId = Annotated[int, Path(ge=1, le=2**62, description="the suspicion's id")]


@router.get("", response_model=SuspectedDuplicateList, summary="Suspected duplicates")
def list_duplicates(
    principal: Regulator,
    store: StoreDep,
    status: Annotated[
        str | None, Query(pattern="^(open|confirmed|dismissed)$", description="only this status")
    ] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="suspicion id to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SuspectedDuplicateList:
    found = store.suspicions(status=status, after=after, limit=limit)
    following = found[-1]["suspicion_id"] if len(found) == limit else None
    return SuspectedDuplicateList.model_validate({"duplicates": found, "next_after": following})


@router.get("/{suspicion_id}", response_model=SuspectedDuplicate, summary="One suspected duplicate")
def get_duplicate(
    suspicion_id: SuspicionId, principal: Regulator, store: StoreDep
) -> SuspectedDuplicate:
    found = store.suspicion(suspicion_id)
    if found is None:
        raise NotFoundError(f"suspected duplicate {suspicion_id} does not exist")
    return SuspectedDuplicate.model_validate(found)


@router.post(
    "/{suspicion_id}",
    response_model=SuspectedDuplicate,
    summary="Confirm or dismiss a suspected duplicate (regulators)",
    description="`confirm` withdraws the suspect case for good as a duplicate of the survivor "
    "(its counts are withdrawn and signals re-evaluated); `dismiss` keeps both cases. A "
    "suspicion is decided once: deciding it again answers 409.",
    responses={409: {"description": "the suspicion was decided already"}},
)
async def decide_duplicate(
    suspicion_id: SuspicionId,
    body: DuplicateDecision,
    principal: Regulator,
    actor: AuditActor,
    runtime: RuntimeDep,
) -> SuspectedDuplicate:
    return await run_in_threadpool(_decide, runtime, suspicion_id, body, actor)


def _decide(
    runtime: RuntimeDep, suspicion_id: int, body: DuplicateDecision, actor: Actor
) -> SuspectedDuplicate:
    decision = duplicates.Decision(body.decision)
    with runtime.pool.store() as store:
        try:
            with recorded(
                store,
                actor,
                f"duplicate.{decision.value}",
                "suspected_duplicate",
                str(suspicion_id),
                before=store.suspicion(suspicion_id),
            ) as recording:
                touched = duplicates.decide(store, suspicion_id, decision, actor.who, body.note)
                decided = store.suspicion(suspicion_id)
                recording.after = decided
        except UnknownError as error:
            raise NotFoundError(str(error)) from None
        except StateConflictError as error:
            raise ConflictError(str(error)) from None
    if touched and runtime.scheduler is not None:
        runtime.scheduler.notify(touched)
    return SuspectedDuplicate.model_validate(decided)
