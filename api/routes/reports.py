"""POST /v1/reports: one report (JSON), a batch (NDJSON) or E2B(R3) XML, answered per record."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from api.auth import Principal
from api.deps import AuditActor, RuntimeDep, Submitter
from api.intake import (
    JSON_TYPES,
    NDJSON_TYPES,
    XML_TYPES,
    BodyFeed,
    Receipt,
    ReportIntake,
    media_type,
    supported,
)
from api.problems import PROBLEM_JSON, UnprocessableError
from api.schemas import SubmissionReceipt
from pvsignal.audit import Actor

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_NDJSON_EXAMPLE = (
    '{"case_id": "CN-HI-2026-000123", "report_id": "HOSP-7-0001", "version": 1, '
    '"received": "2026-03-02", "region": "CN-HI", "patient": {"age_years": 54, "sex": "F"}, '
    '"products": [{"name": "dupilumab", "role": "suspect"}], '
    '"reactions": [{"pt": "Conjunctivitis", "serious": false}]}\n'
)
_JSON_EXAMPLE = {
    "case_id": "CN-HI-2026-000123",
    "report_id": "HOSP-7-0001",
    "version": 1,
    "received": "2026-03-02",
    "region": "CN-HI",
    "patient": {"age_years": 54, "sex": "F"},
    "products": [{"name": "dupilumab", "role": "suspect"}],
    "reactions": [{"pt": "Conjunctivitis", "serious": False}],
}
_NDJSON = {
    "schema": {
        "type": "string",
        "description": "one report per line, each as the JSON body (the Report schema); blank "
        "lines are skipped, and a line that is not a valid report is listed as rejected",
    },
    "example": _NDJSON_EXAMPLE,
}
_XML = {
    "schema": {
        "type": "string",
        "description": "an ICH E2B(R3) ICSR batch (MCCI_IN200100UV01) or message "
        "(PORR_IN049016UV); a DTD or entities are refused unexpanded",
    }
}
# Every type the intake accepts (api.intake.SUPPORTED), each with what it holds.
_BODY = {
    "required": True,
    "content": {
        **{
            kind: {"schema": {"$ref": "#/components/schemas/Report"}, "example": _JSON_EXAMPLE}
            for kind in sorted(JSON_TYPES)
        },
        **{kind: _NDJSON for kind in sorted(NDJSON_TYPES)},
        **{kind: _XML for kind in sorted(XML_TYPES)},
    },
}
_PROBLEM = {
    "type": "object",
    "description": "an RFC 9457 problem",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "examples": ["urn:pvsignal:problem:content-too-large"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "description": "422: each invalid field of the report",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
        "receipt_id": {"type": "string", "description": "422: the receipt kept of the refusal"},
        "limit": {
            "type": "string",
            "enum": ["max_records", "max_record_bytes"],
            "description": "413: the limit passed (absent when the body size was)",
        },
        "maximum": {"type": "integer", "description": "413: the limit's value"},
        "value": {
            "type": "integer",
            "description": "413: what was read when it was passed (records, or bytes of the "
            "record); the rest of the body was not read",
        },
    },
}


# A submission's Idempotency-Key header (reports, exposures).
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="any unique token of the client's (printable ASCII): the same key "
        "again returns the first submission's receipt and writes nothing",
    ),
]


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _PROBLEM}},
    }


_LIMITS = (
    "Limits, checked while the body is read: the request is refused with a 413 as soon as one "
    "is passed, and nothing of it is applied. The body: 64 MiB "
    "(`PVSIGNAL_MAX_REPORT_BODY_BYTES`); records in one body: 100,000 "
    "(`PVSIGNAL_MAX_BATCH_RECORDS`); one report, an NDJSON line or a JSON body: 1 MiB "
    "(`PVSIGNAL_MAX_RECORD_BYTES`), refused unparsed; a report names at most 200 products "
    "and 500 reactions. Those are the defaults; a deployment may set others."
)


@router.post(
    "",
    response_model=SubmissionReceipt,
    summary="Submit reports",
    description="One report as JSON, a batch as NDJSON (one report per line) or E2B(R3) XML. "
    "Each record is validated and applied with case semantics (follow-ups, nullifications, "
    "duplicates); the answer lists every record's outcome and is kept as a receipt. A single "
    "JSON report that is invalid is answered 422 naming the field; in a batch, invalid records "
    "are listed as rejected with their field and reason.\n\n" + _LIMITS,
    openapi_extra={"requestBody": _BODY},
    responses={
        409: _problem("an Idempotency-Key first used with another body"),
        413: _problem("the body, the records in it or one report over its limit"),
        415: _problem("a Content-Type other than those of the request body"),
        422: _problem("a single JSON report that is not valid (its receipt records why)"),
    },
)
async def submit_reports(
    request: Request,
    principal: Submitter,
    actor: AuditActor,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    content_type = request.headers.get("content-type")
    supported(content_type)  # a 415 before any of the body is read
    receipt = await _submit(
        request, principal, actor, runtime.intake, content_type, idempotency_key
    )
    if receipt.e2b is not None and _wants_xml(request.headers.get("accept")):
        replayed = {"Idempotent-Replayed": "true"} if receipt.replayed else {}
        return Response(receipt.acknowledgement(), media_type="application/xml", headers=replayed)
    invalid = media_type(content_type) in JSON_TYPES and bool(receipt.summary.get("rejected"))
    return receipt_response(receipt, principal, invalid=invalid)


def receipt_response(receipt: Receipt, principal: Principal, *, invalid: bool) -> Response:
    """A submission's answer: its receipt as JSON, or, when the submission was ``invalid`` as a
    whole (a single JSON record), a 422 naming the field (the receipt keeps why)."""
    if invalid:
        result = receipt.results[0]
        raise UnprocessableError(
            result["reason"], errors=_problems(result), extra={"receipt_id": receipt.receipt_id}
        )
    replayed = {"Idempotent-Replayed": "true"} if receipt.replayed else {}
    document = receipt.document(principal)
    del document["org"], document["role"]
    return Response(orjson.dumps(document), media_type="application/json", headers=replayed)


def _wants_xml(accept: str | None) -> bool:
    """An E2B gateway asks for its acknowledgement in XML (and not for JSON first)."""
    wanted = [media_type(part) for part in (accept or "").split(",")]
    return bool(wanted) and wanted[0] in XML_TYPES


async def _submit(
    request: Request,
    principal: Principal,
    actor: Actor,
    intake: ReportIntake,
    content_type: str | None,
    idempotency_key: str | None,
) -> Receipt:
    """Feed the body, chunk by chunk, to the intake reading it on a worker thread.

    Reading stops as soon as the worker has its answer (a limit passed: its 413 is sent without
    reading the rest). If the body ends early (the client left, the transport limit), the
    worker is told so and applies nothing.
    """
    feed = BodyFeed()

    def work() -> Receipt:
        try:
            return intake.submit(principal, actor, content_type, feed.chunks(), idempotency_key)
        finally:
            feed.stopped()

    worker = asyncio.ensure_future(run_in_threadpool(work))
    try:
        async for chunk in request.stream():
            if chunk and not await feed.put(chunk):
                break
        else:
            await feed.end()
    except BaseException:
        feed.abort()
        with contextlib.suppress(BaseException):
            await asyncio.shield(worker)  # the worker ends before the request does
        raise
    return await worker


def _problems(result: dict[str, str]) -> list[dict[str, str]]:
    """'a: why (value x); b: why' as one error per field."""
    found = []
    for problem in result["reason"].split("; "):
        field, separator, reason = problem.partition(": ")
        if not separator:
            field, reason = result["field"], problem
        found.append({"field": f"body.{field}", "reason": reason})
    return found
