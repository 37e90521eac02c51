"""GET /v1/cases (a line listing of the cases behind a scope's pair) and one case's detail.

Every role reads cases, each at its own level (api.tenancy.case_access; the masks are in
pvsignal.case_access, applied before anything is rendered, JSON and CSV alike). A case the
caller may not see answers 404 like an absent one. Listing cursors are sealed (encrypted and
authenticated), since the key they continue from is a case's owner and id.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
from collections.abc import Iterator
from typing import Annotated, Literal

import orjson
from cryptography.fernet import Fernet, InvalidToken
from fastapi import APIRouter, Query
from starlette.responses import Response, StreamingResponse

from api.deps import AuditActor, CaseReader, RegistryDep, RuntimeDep, StoreDep
from api.problems import NotFoundError, UnprocessableError
from api.runtime import Runtime
from api.series_schemas import CaseDetail, CasePage
from api.tenancy import case_access
from pvsignal.audit import audit_read
from pvsignal.case_access import CaseAccess, CaseQuery, case_series

router = APIRouter(prefix="/v1/cases", tags=["cases"])

Id = Annotated[str, Query(min_length=1, max_length=200)]


def _keys(runtime: Runtime) -> tuple[bytes, Fernet]:
    secret = runtime.settings.secret_key.get_secret_value().encode()
    reference = hashlib.sha256(b"pvsignal-case-ref\0" + secret).digest()
    cursor = hashlib.sha256(b"pvsignal-case-cursor\0" + secret).digest()
    return reference, Fernet(base64.urlsafe_b64encode(cursor))


def _access(runtime: Runtime, principal: CaseReader, registry: RegistryDep) -> CaseAccess:
    return case_access(principal, registry, _keys(runtime)[0])


@router.get(
    "",
    response_model=CasePage,
    summary="Line listing of the active cases counted in a scope (for a pair, a period)",
    description="The latest version of every active case counted in `scope` (with `product_id` "
    "and `pt` counted together, when given; `received_from`/`received_to` bound the latest "
    "version's received date, inclusive), in (owner, case_id) order. A regulator reads every "
    "field; an MAH only cases counted with one of its products, at the restricted level "
    "(age group, sex, reactions with seriousness and outcome, products with roles, received "
    "month, country and province, reporter qualification); a hospital only its own cases. "
    "`format=csv` lists every matching case with the same masks.",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        404: {"description": "no such scope"},
    },
)
def list_cases(
    principal: CaseReader,
    actor: AuditActor,
    runtime: RuntimeDep,
    registry: RegistryDep,
    store: StoreDep,
    scope: Annotated[str, Query(max_length=63)] = "all",
    product_id: Id | None = None,
    pt: Id | None = None,
    received_from: dt.date | None = None,
    received_to: dt.date | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=4096, description="the next_cursor of the previous page (opaque)"),
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    if scope not in {s.name for s in runtime.scopes.all_scopes()}:
        raise NotFoundError(f"no scope {scope!r}")
    access = _access(runtime, principal, registry)
    query = CaseQuery(
        scope,
        product_id,
        None if pt is None else store.named_event(pt),
        None if received_from is None else received_from.isoformat(),
        None if received_to is None else received_to.isoformat(),
    )
    sealer = _keys(runtime)[1]
    listing = orjson.dumps(query.__dict__).decode()
    if format == "csv":
        audit_read(store, actor, "case_series", listing, detail={"format": "csv"})
        return _csv(store, access, query)
    after = None if cursor is None else _unseal(sealer, cursor, query)
    cases, more = case_series(store, access, query, after=after, limit=limit)
    shown = [access.mask(case) for case in cases]
    audit_read(store, actor, "case_series", listing, detail={"cases": len(shown)})
    document = {
        "scope": scope,
        "level": access.level.value,
        "cases": shown,
        "next_cursor": None if more is None else _seal(sealer, more, query),
    }
    return Response(orjson.dumps(document), media_type="application/json")


def _digest(query: CaseQuery) -> str:
    return hashlib.sha256(orjson.dumps(query.__dict__)).hexdigest()[:16]


def _seal(sealer: Fernet, after: tuple[str, str], query: CaseQuery) -> str:
    return sealer.encrypt(orjson.dumps({"k": list(after), "q": _digest(query)})).decode()


def _unseal(sealer: Fernet, cursor: str, query: CaseQuery) -> tuple[str, str]:
    problem = UnprocessableError(
        "cursor: not a cursor of this listing",
        errors=[{"field": "query.cursor", "reason": "invalid cursor", "value": cursor}],
    )
    try:
        document = orjson.loads(sealer.decrypt(cursor.encode()))
    except (InvalidToken, ValueError):
        raise problem from None
    if document.get("q") != _digest(query):
        raise problem
    owner, case_id = document["k"]
    return owner, case_id


def _csv(store: StoreDep, access: CaseAccess, query: CaseQuery) -> StreamingResponse:
    columns = access.columns()

    def chunks() -> Iterator[bytes]:
        after: tuple[str, str] | None = None
        first = True
        while True:
            cases, after = case_series(store, access, query, after=after, limit=1000)
            sink = io.StringIO()
            writer = csv.DictWriter(sink, columns, lineterminator="\n")
            if first:
                writer.writeheader()
                first = False
            for case in cases:
                writer.writerow(access.flat(access.mask(case)))
            yield sink.getvalue().encode()
            if after is None:
                return

    return StreamingResponse(
        chunks(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="cases-{query.scope}.csv"'},
    )


@router.get(
    "/{owner}/{case_id}",
    response_model=CaseDetail,
    summary="One case: its latest version (at the caller's level) and its version history",
    description="The version history lists every version applied since the store kept "
    "histories (schema migration 8): version, received date, outcome (new, follow_up, stale, "
    "resent, nullified, refused) and where it came from (restricted level: outcome and "
    "received month only).",
)
def case_detail(
    owner: str,
    case_id: str,
    principal: CaseReader,
    actor: AuditActor,
    runtime: RuntimeDep,
    registry: RegistryDep,
    store: StoreDep,
) -> Response:
    access = _access(runtime, principal, registry)
    case = store.stored_case(owner, case_id)
    if case is None or not access.admits(case):
        raise NotFoundError(f"no case {case_id!r} of {owner!r}")
    versions = store.case_versions(owner, case_id)
    audit_read(store, actor, "case", f"{owner}/{case_id}")
    document = {"level": access.level.value, "case": access.mask(case, versions)}
    return Response(orjson.dumps(document), media_type="application/json")
