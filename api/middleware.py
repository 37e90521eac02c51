"""Per request: an id (taken from X-Request-ID or made), metrics by route template, an
access log line; and body size limits. Pure ASGI, so streaming responses pass untouched."""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logs import bind_request_id, request_id, unbind_request_id
from api.metrics import UNMATCHED, Metrics
from api.problems import PROBLEM_JSON

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("api.access")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given is not None and _VALID_ID.match(given) else uuid.uuid4().hex
        token = bind_request_id(rid)
        began = time.perf_counter()
        status = 500

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Answered here, where the request id is still known; logged with it.
            log.exception("unhandled error", extra={"request_id": rid, "path": scope["path"]})
            if status == 500 and not started:
                await _send_problem(
                    send_with_id,
                    scope,
                    500,
                    "internal",
                    "Internal server error",
                    "the server failed; quote the request id when reporting it",
                )
        finally:
            seconds = time.perf_counter() - began
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe_request(scope["method"], template, status, seconds)
            principal = scope.get("state", {}).get("principal")
            log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": scope["method"],
                    "route": template,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "principal": None if principal is None else principal.describe(),
                },
            )
            unbind_request_id(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class BodyLimitMiddleware:
    """Refuse bodies over the limit with a 413 problem: at once when Content-Length says so,
    else as soon as the streamed bytes pass it. Report batches get their own, larger limit."""

    def __init__(self, app: ASGIApp, default: int, per_path: dict[str, int]) -> None:
        self.app, self.default, self.per_path = app, default, per_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_too_large(scope, send, limit, f"Content-Length: {declared}")
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException: FastAPI re-raises it from body parsing (not a 400).
                    raise HTTPException(
                        413, _too_large(limit, f"{received} received, the rest not read")
                    )
            return message

        await self.app(scope, counted, send)


def _too_large(limit: int, value: str) -> str:
    return f"the body exceeds this endpoint's limit of {limit} bytes ({value})"


async def _send_too_large(scope: Scope, send: Send, limit: int, value: str) -> None:
    await _send_problem(
        send, scope, 413, "content-too-large", "Content too large", _too_large(limit, value)
    )


async def _send_problem(
    send: Send, scope: Scope, status: int, slug: str, title: str, detail: str
) -> None:
    """A problem response sent from middleware (no route, no exception handler involved)."""
    body = orjson.dumps(
        {
            "type": f"urn:pvsignal:problem:{slug}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope["path"],
            "request_id": request_id(),
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
