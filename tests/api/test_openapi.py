"""/openapi.json documents every problem an operation can answer, as RFC 9457 problems."""

from __future__ import annotations

import orjson

from api.problems import PROBLEM_JSON
from api.schemas import Problem
from tests.api.conftest import World

PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _operations(document: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }


def test_every_operation_documents_its_problems(world: World):
    document = world.client.get("/openapi.json").json()
    assert "Problem" in document["components"]["schemas"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    operations = _operations(document)
    for (method, path), operation in operations.items():
        responses = operation["responses"]
        errors = {int(status) for status in responses if int(status) >= 400}
        for status in errors:
            assert responses[str(status)]["content"] == PROBLEM, (method, path, status)
        guarded = "security" in operation
        assert (401 in errors) == guarded, (method, path)
        if guarded:
            assert "WWW-Authenticate" in responses["401"]["headers"]
        if "{" in path:
            assert 404 in errors, (method, path)
        if "requestBody" in operation:
            assert {413, 422} <= errors, (method, path)
        if operation.get("parameters"):
            assert 422 in errors, (method, path)
    # Role checks: an MAH may not submit, a hospital may not read signals.
    assert "403" in operations["POST", "/v1/reports"]["responses"]
    assert "403" in operations["GET", "/v1/signals"]["responses"]
    assert "415" in operations["POST", "/v1/reports"]["responses"]
    assert "404" in operations["GET", "/v1/signals"]["responses"]  # an unknown scope
    assert "409" in operations["PUT", "/v1/products/{product_id}"]["responses"]
    assert not {"401", "403"} & set(operations["GET", "/livez"]["responses"])


def test_the_documented_problems_are_the_ones_answered(world: World):
    operations = _operations(world.client.get("/openapi.json").json())
    hospital, regulator = world.headers("hospital"), world.headers("regulator")
    for method, template, path, kwargs, status in (
        ("GET", "/v1/signals", "/v1/signals", {}, 401),
        ("GET", "/v1/signals", "/v1/signals", {"headers": hospital}, 403),
        ("GET", "/v1/signals", "/v1/signals?scope=nowhere", {"headers": regulator}, 404),
        ("GET", "/v1/signals", "/v1/signals?limit=0", {"headers": regulator}, 422),
        ("GET", "/v1/products/{product_id}", "/v1/products/Z9", {"headers": regulator}, 404),
        (
            "POST",
            "/v1/reports",
            "/v1/reports",
            {"headers": {**hospital, "content-type": "text/csv"}, "content": b"a,b"},
            415,
        ),
        (
            "POST",
            "/v1/keys",
            "/v1/keys",
            {"headers": world.headers("admin"), "content": b"x" * 2_000_000},
            413,
        ),
    ):
        response = world.client.request(method, path, **kwargs)
        assert response.status_code == status, (path, response.text[:200])
        assert str(status) in operations[method, template]["responses"], (method, template, status)
        assert response.headers["content-type"] == PROBLEM_JSON
        Problem.model_validate(orjson.loads(response.content))
