"""POST /v1/exposures: exposure records (JSON, NDJSON or CSV), answered per record."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from api.deps import AuditActor, RuntimeDep, Submitter
from api.exposures import CSV_TYPES, exposure_media_type
from api.intake import JSON_TYPES, NDJSON_TYPES, media_type
from api.routes.reports import IdempotencyKey, _problem, _submit, receipt_response
from api.schemas import SubmissionReceipt
from pvsignal.exposures import CSV_COLUMNS, Exposure

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
