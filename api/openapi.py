"""The OpenAPI document's problem responses, written in one place for every operation.

Which problems an operation can answer follows from how its route is built, so they are read
from the route rather than repeated on each handler:

=====  ==========================================================================================
401    the route depends on the caller (``get_principal``): no, unknown or revoked credentials
403    a role check (``require(...)``) admits only some roles
404    the path names a resource (a path parameter)
400    the operation takes a body (one that cannot be parsed as its media type)
413    the operation takes a body (bodies over the limit are refused while being read)
415    the operation takes a body in more than one media type, or reads it itself
422    the operation has parameters or a body (RFC 9457 ``errors`` name each field at fault)
=====  ==========================================================================================

Statuses a handler raises for its own reasons are declared on the route as usual
(``responses={409: {"description": ...}}``). Every 4xx and 5xx response of the document, the
derived and the declared alike, is then given the same content: ``application/problem+json``
with the ``Problem`` schema, because every error leaves the API through ``api.problems``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.deps import get_principal
from api.problems import PROBLEM_JSON
from api.schemas import Problem

_REF = "#/components/schemas/{model}"
DESCRIPTIONS = {
    400: "The body could not be parsed as its media type",
    401: "No valid credentials: send `Authorization: Bearer` with an API key or OIDC token",
    403: "The caller's role may not do this",
    404: "No such resource, or not one the caller may see",
    409: "Conflicts with the current state",
    413: "The body is over this endpoint's limit",
    415: "The body's media type is not one this operation reads",
    422: "Invalid input: `errors` names each field at fault and its value",
    503: "Not ready",
}
_UNAUTHORIZED_HEADERS = {
    "WWW-Authenticate": {
        "description": "the scheme to authenticate with",
        "schema": {"type": "string", "example": 'Bearer realm="pvsignal"'},
    }
}


def document_problems(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Make ``app.openapi()`` document the problem responses of every operation; those of the
    given (included) routers and of the app's own routes are read from their dependencies."""
    generate = app.openapi
    routes = _routes([app.router, *routers])

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_problems(generate(), routes)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point


def add_problems(document: dict[str, Any], routes: dict[tuple[str, str], APIRoute]) -> None:
    """Add and unify the problem responses of each operation of ``document`` (in place)."""
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            route = routes.get((method.upper(), path))
            responses = operation.setdefault("responses", {})
            for status in sorted(_derived(operation, route)):
                responses.setdefault(str(status), {})
            for key, response in responses.items():
                if key.isdigit() and int(key) >= 400:
                    _as_problem(int(key), response)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=_REF)
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    _drop_unreferenced(schemas, ("HTTPValidationError", "ValidationError"), document)


def _derived(operation: dict[str, Any], route: APIRoute | None) -> set[int]:
    found = set()
    calls = set(_calls(route.dependant)) if route is not None else set()
    if get_principal in calls:
        found.add(401)
    if any(hasattr(call, "allowed_roles") for call in calls):
        found.add(403)
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters):
        found.add(404)
    body = operation.get("requestBody")
    if body is not None:
        found |= {400, 413, 422}
        if len(body.get("content", {})) > 1 or (route is not None and route.body_field is None):
            found.add(415)  # several media types, or a body the handler reads and checks itself
    if parameters:
        found.add(422)
    return found


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _as_problem(status: int, response: dict[str, Any]) -> None:
    response["description"] = response.get("description") or DESCRIPTIONS.get(status, "Error")
    if response["description"] == "Validation Error":  # FastAPI's own 422
        response["description"] = DESCRIPTIONS[422]
    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": _REF.format(model="Problem")}}}
    if status == 401:
        response["headers"] = _UNAUTHORIZED_HEADERS


def _routes(routers: Iterable[APIRouter]) -> dict[tuple[str, str], APIRoute]:
    """(method, path template) -> route. Routers are read directly (their routes carry their
    prefix): how FastAPI holds an included router inside the app is its own business."""
    return {
        (method, route.path_format): route
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }


def _drop_unreferenced(schemas: dict[str, Any], names: Iterable[str], document: Any) -> None:
    """Remove FastAPI's validation-error schemas once no response refers to them."""
    for name in names:
        if name in schemas and f'"{_REF.format(model=name)}"' not in json.dumps(document):
            del schemas[name]
