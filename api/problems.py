"""RFC 9457 problem details: every error leaves the API as ``application/problem+json``.

Domain errors are raised where they arise (pvsignal's ``InputError``, the API's ``ApiError``
subclasses) and mapped to HTTP here, once, by exception handlers.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api.logs import request_id
from pvsignal.errors import InputError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("api.errors")


class ApiError(Exception):
    """An error with its HTTP status; raised by routes and services, mapped once."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail, self.errors, self.extra = detail, errors, extra or {}

    @property
    def headers(self) -> dict[str, str]:
        return {}


class UnauthorizedError(ApiError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="pvsignal"'}


class ForbiddenError(ApiError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFoundError(ApiError):
    status, title, slug = 404, "Not found", "not-found"


class ConflictError(ApiError):
    status, title, slug = 409, "Conflict", "conflict"


class ContentTooLargeError(ApiError):
    status, title, slug = 413, "Content too large", "content-too-large"


class UnsupportedMediaTypeError(ApiError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class UnprocessableError(ApiError):
    status, title, slug = 422, "Unprocessable content", "invalid-input"


class UnavailableError(ApiError):
    status, title, slug = 503, "Service unavailable", "unavailable"


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    slug: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:pvsignal:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request_id(),
    }
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def _validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as {field, reason, value}; the field is 'query.limit', 'body.url'."""
    found = []
    for item in error.errors():
        field = ".".join(str(part) for part in item.get("loc", ())) or "(request)"
        value = item.get("input")
        shown = (
            value if isinstance(value, str | int | float | bool | None) else type(value).__name__
        )
        found.append({"field": field, "reason": item.get("msg", "invalid"), "value": shown})
    return found


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return problem(
        request,
        error.status,
        error.title,
        error.detail,
        error.slug,
        errors=error.errors,
        extra=error.extra,
        headers=error.headers,
    )


async def _request_validation(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = _validation_errors(error)
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return problem(
        request,
        422,
        "Unprocessable content",
        f"invalid {fields}",
        "invalid-input",
        errors=errors,
    )


async def _input_error(request: Request, error: Exception) -> Response:
    return problem(request, 422, "Unprocessable content", str(error), "invalid-input")


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed", 413: "content-too-large"}.get(
        error.status_code, "http-error"
    )
    detail = error.detail if isinstance(error.detail, str) else "request refused"
    if error.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}"
    return problem(
        request,
        error.status_code,
        _reason(error.status_code),
        detail,
        slug,
        headers=dict(error.headers or {}),
    )


async def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem(
        request,
        500,
        "Internal server error",
        "the server failed; quote the request id when reporting it",
        "internal",
    )


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error the API can raise to a problem response, once."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
