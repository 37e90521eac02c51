"""POST /v1/reports: one report (JSON), a batch (NDJSON) or E2B(R3) XML, answered per record."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from api.deps import RuntimeDep, Submitter
from api.intake import JSON_TYPES, media_type
from api.problems import UnprocessableError
from api.schemas import SubmissionReceipt

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_NDJSON_EXAMPLE = (
    '{"case_id": "CN-HI-2026-000123", "report_id": "HOSP-7-0001", "version": 1, '
    '"received": "2026-03-02", "region": "CN-HI", "patient": {"age_years": 54, "sex": "F"}, '
    '"products": [{"name": "dupilumab", "role": "suspect"}], '
    '"reactions": [{"pt": "Conjunctivitis", "serious": false}]}\n'
)
_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/Report"},
            "example": {
                "case_id": "CN-HI-2026-000123",
                "report_id": "HOSP-7-0001",
                "version": 1,
                "received": "2026-03-02",
                "region": "CN-HI",
                "patient": {"age_years": 54, "sex": "F"},
                "products": [{"name": "dupilumab", "role": "suspect"}],
                "reactions": [{"pt": "Conjunctivitis", "serious": False}],
            },
        },
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "one wire-format report per line"},
            "example": _NDJSON_EXAMPLE,
        },
        "application/xml": {
            "schema": {"type": "string", "description": "an ICH E2B(R3) ICSR batch or message"},
        },
    },
}


@router.post(
    "",
    response_model=SubmissionReceipt,
    summary="Submit reports",
    description="One report as JSON, a batch as NDJSON (one report per line) or E2B(R3) XML. "
    "Each record is validated and applied with case semantics (follow-ups, nullifications, "
    "duplicates); the answer lists every record's outcome and is kept as a receipt. A single "
    "JSON report that is invalid is answered 422 naming the field; in a batch, invalid records "
    "are listed as rejected with their field and reason.",
    openapi_extra={"requestBody": _BODY},
    responses={
        413: {"description": "body or record count over the limit"},
        415: {"description": "unsupported content type"},
    },
)
async def submit_reports(request: Request, principal: Submitter, runtime: RuntimeDep) -> Response:
    body = await request.body()
    content_type = request.headers.get("content-type")
    receipt = await run_in_threadpool(runtime.intake.submit, principal, content_type, body)
    document = receipt.document(principal)
    if media_type(content_type) in JSON_TYPES and receipt.summary.get("rejected"):
        result = receipt.results[0]
        raise UnprocessableError(
            result["reason"], errors=_problems(result), extra={"receipt_id": receipt.receipt_id}
        )
    del document["org"], document["role"]
    return Response(orjson.dumps(document), media_type="application/json")


def _problems(result: dict[str, str]) -> list[dict[str, str]]:
    """'a: why (value x); b: why' as one error per field."""
    found = []
    for problem in result["reason"].split("; "):
        field, separator, reason = problem.partition(": ")
        if not separator:
            field, reason = result["field"], problem
        found.append({"field": f"body.{field}", "reason": reason})
    return found
