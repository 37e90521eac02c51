"""Signal review (GVP Module IX): each organisation's review of a signal, and its work queue.

``GET/PATCH /v1/signals/{scope}/{product_id}/{pt}/review``: the caller's organisation's
review (an MAH only of its own products: 404 otherwise); a regulator also reads the MAH
reviews marked ``shared``. A PATCH must send ``If-Match`` with the ETag it read (428 without
one, 412 when the review changed since); a status it may not move to is 409 naming the moves
it may make. The rules are in :mod:`pvsignal.review`; a review never changes statistics.
``GET /v1/reviews`` lists the caller's organisation's reviews (filters: status, assignee,
overdue, scope).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from api.auth import Principal, Role
from api.deps import AuditActor, ClockDep, Reader, RuntimeDep, StoreDep, VisibleProduct
from api.problems import ApiError, ConflictError, NotFoundError, UnprocessableError
from api.runtime import Runtime
from api.schemas import ReviewDocument, ReviewList, ReviewPatch, ReviewStatus
from pvsignal import review as rules
from pvsignal.audit import Actor
from pvsignal.review import Change, IllegalMoveError, Review
from pvsignal.store import SqlStore
from pvsignal.store.trail import review_entry

router = APIRouter(tags=["reviews"])

REGULATOR_ORG = "regulator"  # the review kept by regulators and admins who name no organisation
_ETAG = {
    "ETag": {"description": "the review's version, for If-Match", "schema": {"type": "string"}}
}


class PreconditionFailedError(ApiError):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class PreconditionRequiredError(ApiError):
    status, title, slug = 428, "Precondition required", "precondition-required"


def reviewer_org(principal: Principal) -> str:
    """Whose review the caller reads and writes: its organisation's."""
    if principal.role is Role.mah:
        assert principal.org is not None
        return principal.org
    return principal.org or REGULATOR_ORG


def _document(review: Review, now: dt.datetime) -> dict[str, Any]:
    return {
        **review.document(),
        "overdue": review.overdue(now),
        "allowed_moves": [s.value for s in rules.MOVES[review.status]],
    }


def _pair_or_404(runtime: Runtime, store: SqlStore, scope: str, product_id: str, pt: str) -> None:
    snapshot = runtime.signals.get(scope)
    counted = snapshot is not None and snapshot.pair_index(product_id, pt) is not None
    if not counted and not store.history(scope, product_id, pt):
        raise NotFoundError(f"no pair ({product_id!r}, {pt!r}) in scope {scope!r}")


_PATH = "/v1/signals/{scope}/{product_id}/{pt:path}/review"


@router.get(
    _PATH,
    response_model=ReviewDocument,
    summary="The caller's organisation's review of a signal (and reviews shared with it)",
    responses={200: {"headers": _ETAG}},
)
def get_review(
    scope: str,
    product_id: str,
    pt: str,
    product: VisibleProduct,
    principal: Reader,
    runtime: RuntimeDep,
    store: StoreDep,
    clock: ClockDep,
) -> Response:
    _pair_or_404(runtime, store, scope, product_id, pt)
    org = reviewer_org(principal)
    review = store.review(scope, product_id, pt, org)
    now = clock()
    shared = store.shared_reviews(scope, product_id, pt, org) if principal.sees_everything else []
    body = {"review": _document(review, now), "shared": [_document(r, now) for r in shared]}
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"ETag": review.etag}
    )


@router.patch(
    _PATH,
    response_model=ReviewDocument,
    summary="Change the caller's organisation's review: status, priority, assignee, ...",
    description="Send `If-Match` with the ETag of the review you read. The status moves "
    "only along the workflow (`allowed_moves`); entering a status sets its due date from "
    "the configured deadlines unless `due_at` is given. Fields left out stay as they are.",
    responses={
        200: {"headers": _ETAG},
        409: {"description": "the status may not move there; `allowed_moves` lists where"},
        412: {"description": "the review changed since the ETag sent in If-Match"},
        428: {"description": "send If-Match with the review's ETag"},
    },
)
async def patch_review(
    scope: str,
    product_id: str,
    pt: str,
    body: ReviewPatch,
    product: VisibleProduct,
    principal: Reader,
    actor: AuditActor,
    runtime: RuntimeDep,
    clock: ClockDep,
    if_match: Annotated[
        str | None, Header(max_length=200, description="the ETag of the review you read")
    ] = None,
) -> Response:
    if if_match is None:
        raise PreconditionRequiredError("send If-Match with the review's ETag (GET it first)")
    return await run_in_threadpool(
        _patch, runtime, (scope, product_id, pt), body, principal, actor, clock(), if_match
    )


def _patch(
    runtime: Runtime,
    pair: tuple[str, str, str],
    body: ReviewPatch,
    principal: Principal,
    actor: Actor,
    now: dt.datetime,
    if_match: str,
) -> Response:
    given = body.model_fields_set
    change = Change(
        status=None if body.status is None else rules.Status(body.status),
        priority=None if body.priority is None else rules.Priority(body.priority),
        assignee=body.assignee,
        due_at=body.due_at,
        shared=body.shared,
        linked_cases=None if body.linked_cases is None else tuple(body.linked_cases),
        comment=body.comment,
        reason=body.reason,
        given=frozenset(given),
    )
    org = reviewer_org(principal)
    deadlines = dict(runtime.settings.review_deadline_days)
    with runtime.pool.store() as store:
        _pair_or_404(runtime, store, *pair)
        with store.write_transaction() as cursor:
            current = store.review(*pair, org)
            if not _matches(if_match, current):
                raise PreconditionFailedError(
                    f"the review changed: it is at ETag {current.etag}, you sent {if_match}",
                    extra={"etag": current.etag},
                )
            try:
                changed = rules.apply(current, change, by=actor.who, now=now, deadlines=deadlines)
            except IllegalMoveError as error:
                raise ConflictError(
                    str(error),
                    extra={"status_now": error.current.value, "allowed_moves": error.allowed},
                ) from None
            if not store.save_review(cursor, changed, current.version):
                raise PreconditionFailedError("the review changed meanwhile; read it again")
            store.append_audit(cursor, actor, [review_entry("review.update", current, changed)])
        shared = store.shared_reviews(*pair, org) if principal.sees_everything else []
    document = {"review": _document(changed, now), "shared": [_document(r, now) for r in shared]}
    return Response(
        orjson.dumps(document), media_type="application/json", headers={"ETag": changed.etag}
    )


def _matches(if_match: str, review: Review) -> bool:
    """RFC 9110 If-Match: ``*`` (every signal has a review, unreviewed included) or a list of
    entity tags, one of which is the review's (weak tags compare by their value here)."""
    tags = [tag.strip().removeprefix("W/") for tag in if_match.split(",")]
    return "*" in tags or review.etag in tags


def _encode(key: tuple[str, str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, str, str]:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(key, list) and len(key) == 3 and all(isinstance(k, str) for k in key):
            return key[0], key[1], key[2]
    except (binascii.Error, ValueError):
        pass
    raise UnprocessableError(
        "invalid query.cursor",
        errors=[{"field": "query.cursor", "reason": "not a cursor of this list", "value": cursor}],
    )


@router.get(
    "/v1/reviews",
    response_model=ReviewList,
    summary="Work queue: the caller's organisation's reviews",
    description="By scope, product and PT. `overdue=true` keeps the reviews whose due date "
    "has passed; `overdue=false` those whose has not (or that have none).",
)
def list_reviews(
    principal: Reader,
    store: StoreDep,
    clock: ClockDep,
    status: ReviewStatus | None = None,
    overdue: bool | None = None,
    assignee: Annotated[str | None, Query(max_length=200)] = None,
    scope: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=4096, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> ReviewList:
    now = clock()
    after = None if cursor is None else _decode(cursor)
    found: list[Review] = []
    # The store filters overdue reviews itself; "not overdue" is the rest, filtered here.
    while len(found) < limit:
        page = store.reviews(
            reviewer_org(principal),
            status=status,
            assignee=assignee,
            due_before=now.isoformat() if overdue else None,
            scope=scope,
            after=after,
            limit=limit,
        )
        found += [r for r in page if overdue is not False or not r.overdue(now)]
        if len(page) < limit:
            break
        after = (page[-1].scope, page[-1].product_id, page[-1].pt)
    found = found[:limit]
    following = (
        _encode((found[-1].scope, found[-1].product_id, found[-1].pt))
        if len(found) == limit
        else None
    )
    return ReviewList.model_validate(
        {"reviews": [_document(r, now) for r in found], "next_cursor": following}
    )
