"""GET /v1/audit: the audit trail, for regulators and admins (filters, pages by seq)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import IsoTime, Regulator, StoreDep
from api.schemas import AuditPage

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _utc(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


@router.get(
    "",
    response_model=AuditPage,
    summary="The audit trail: who wrote or read what, when (regulators, admins)",
    description="Oldest first. `since` is inclusive, `until` exclusive (times without a "
    "zone are UTC). Each row holds the hash of the one before; `pvsignal audit verify` "
    "checks the chain.",
)
def list_audit(
    principal: Regulator,
    store: StoreDep,
    actor: Annotated[str | None, Query(max_length=300, description="role:org:subject")] = None,
    object_type: Annotated[str | None, Query(max_length=50)] = None,
    object_id: Annotated[str | None, Query(max_length=1000)] = None,
    action: Annotated[str | None, Query(max_length=50)] = None,
    since: IsoTime | None = None,
    until: IsoTime | None = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="seq to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    found = store.audit_entries(
        actor=actor,
        object_type=object_type,
        object_id=object_id,
        action=action,
        since=_utc(since),
        until=_utc(until),
        after=after,
        limit=limit,
    )
    following = found[-1]["seq"] if len(found) == limit else None
    return AuditPage.model_validate({"entries": found, "next_after": following})
