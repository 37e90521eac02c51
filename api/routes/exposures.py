"""POST /v1/exposures: exposure records (JSON, NDJSON or CSV), answered per record; GET
/v1/exposures: the caller's records as stored (a regulator's: every organisation's)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from api.deps import AuditActor, CaseReader, RegistryDep, RuntimeDep, StoreDep, Submitter
from api.exposures import CSV_TYPES, exposure_media_type
from api.intake import JSON_TYPES, NDJSON_TYPES, media_type
from api.routes.reports import IdempotencyKey, _problem, _submit, receipt_response
from api.schemas import SubmissionReceipt
from api.tenancy import exposure_owner
from pvsignal.audit import audit_read
from pvsignal.exposures import CSV_COLUMNS, Exposure, ExposureRow

router = APIRouter(prefix="/v1/exposures", tags=["exposures"])

_EXAMPLE = Exposure.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
_BODY = {
    "required": True,
    "content": {
        **{
            kind: {"schema": {"$ref": "#/components/schemas/Exposure"}, "example": _EXAMPLE}
            for kind in sorted(JSON_TYPES)
        },
        **{
            kind: {
                "schema": {
                    "type": "string",
                    "description": "one exposure per line, each as the JSON body",
                },
                "example": orjson.dumps(_EXAMPLE).decode() + "\n",
            }
            for kind in sorted(NDJSON_TYPES)
        },
        **{
            kind: {
                "schema": {
                    "type": "string",
                    "description": "a header of field names (any of "
                    f"{', '.join(CSV_COLUMNS)}), then one exposure per row; an empty cell "
                    "is an absent value",
                },
                "example": "exposure_id,product_id,institution_id,start,patients\n"
                "LC-H01-2026-Q1,P-0001,LC-H01,2026-01-01,14\n",
            }
            for kind in sorted(CSV_TYPES)
        },
    },
}


@router.post(
    "",
    response_model=SubmissionReceipt,
    response_model_exclude_none=True,
    summary="Submit exposures",
    description="Exposure records — one patient's use of a product, or several patients at an "
    "institution in a period — as one JSON record, NDJSON or CSV. Each is validated and "
    "applied with its version (a higher version corrects, `withdrawn: true` withdraws for "
    "good); exposures are owned like cases (the caller's organisation; a regulator's records "
    "belong to the `sender` they name). The answer lists every record's outcome and is kept as "
    "a receipt; a single invalid JSON record is answered 422 naming the field. Limits as for "
    "reports (`PVSIGNAL_MAX_BATCH_RECORDS`, `PVSIGNAL_MAX_RECORD_BYTES`).",
    openapi_extra={"requestBody": _BODY},
    responses={
        409: _problem("an Idempotency-Key first used with another body"),
        413: _problem("the body, the records in it or one record over its limit"),
        415: _problem("a Content-Type other than those of the request body"),
        422: _problem(
            "a single JSON record that is not valid, or a CSV with no valid row (its receipt "
            "records why)"
        ),
    },
)
async def submit_exposures(
    request: Request,
    principal: Submitter,
    actor: AuditActor,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    content_type = request.headers.get("content-type")
    exposure_media_type(content_type)  # a 415 before any of the body is read
    receipt = await _submit(
        request, principal, actor, runtime.exposures, content_type, idempotency_key
    )
    kind = media_type(content_type)
    # A JSON record that is invalid, or a CSV of which nothing could be read (no header of known
    # columns, no valid row), is refused naming the field; the receipt keeps why.
    invalid = (kind in JSON_TYPES and bool(receipt.summary.get("rejected"))) or (
        kind in CSV_TYPES and 0 < receipt.records == receipt.summary.get("rejected", 0)
    )
    return receipt_response(receipt, principal, invalid=invalid)


@router.get(
    "",
    summary="Exposure records as stored",
    description="The latest version of each exposure record, in (owner, exposure_id) order: "
    "an organisation reads its own records, a regulator or an admin every one. `status` "
    "selects active or withdrawn records; `next_after` (owner, exposure_id) continues the "
    "listing as `after_owner` and `after_exposure_id`. Each listing "
    "is written to the audit trail (the rows are patient-level).",
)
def list_exposures(
    principal: CaseReader,
    actor: AuditActor,
    registry: RegistryDep,
    store: StoreDep,
    product_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    status: Literal["active", "withdrawn"] | None = None,
    after_owner: Annotated[
        str | None, Query(max_length=200, description="next_after.owner of the previous page")
    ] = None,
    after_exposure_id: Annotated[
        str | None,
        Query(max_length=200, description="next_after.exposure_id of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    owner = exposure_owner(principal, registry.institutions)
    rows = store.exposure_listing(
        owner=owner,
        product=product_id,
        status=status,
        after=_after(after_owner, after_exposure_id),
        limit=limit,
    )
    listing = {
        "owner": owner,
        "product_id": product_id,
        "status": status,
        "after": [after_owner, after_exposure_id],
    }
    audit_read(
        store, actor, "exposures", orjson.dumps(listing).decode(), detail={"rows": len(rows)}
    )
    document = {
        "exposures": [_shown(row) for row in rows],
        "next_after": (
            {"owner": rows[-1].owner, "exposure_id": rows[-1].exposure_id}
            if len(rows) == limit
            else None
        ),
    }
    return Response(orjson.dumps(document), media_type="application/json")


def _shown(row: ExposureRow) -> dict[str, Any]:
    return {
        "owner": row.owner,
        "exposure_id": row.exposure_id,
        "version": row.version,
        "status": row.status,
        "product_id": row.product,
        "institution_id": row.institution,
        "start": row.start,
        "period": row.period,
        "age_years": row.age_years,
        "age_band": row.age_band,
        "sex": row.sex,
        "patients": row.patients,
        "doses": row.doses,
        "patient_days": row.patient_days,
    }


def _after(owner: str | None, exposure_id: str | None) -> tuple[str, str] | None:
    """The listing's start: after this key (either part alone: the other from its start)."""
    if owner is None and exposure_id is None:
        return None
    return owner or "", exposure_id or ""
