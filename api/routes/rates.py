"""GET /v1/rates: incidence and observed/expected per product, PT and period (JSON or CSV),
for the products the caller may see (an MAH its own, as for signals)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from api.auth import Principal
from api.deps import Reader, RegistryDep, RuntimeDep, StoreDep
from api.problems import NotFoundError
from api.runtime import Runtime
from api.schemas import RatePage
from api.tenancy import RegistrySnapshot
from pvsignal.rates import COLUMNS, PERIODS, RateQuery, rates
from pvsignal.scopes import Scope
from pvsignal.store import SqlStore

router = APIRouter(prefix="/v1/rates", tags=["rates"])

Period = Literal[PERIODS]  # type: ignore[valid-type]


def _scope(runtime: Runtime, scope: str) -> Scope:
    configured = {s.name: s for s in runtime.scopes.all_scopes()}
    if scope not in configured:
        raise NotFoundError(f"no scope {scope!r}")
    return configured[scope]


def visible_rates(
    principal: Principal,
    runtime: Runtime,
    registry: RegistrySnapshot,
    store: SqlStore,
    scope: str,
    product_id: str | None = None,
    pt: str | None = None,
    period: str = "total",
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """The rate rows of the products the caller may see (another MAH's product_id is answered
    as one without exposure): GET /v1/rates' query, for the dashboard too."""
    visible = registry.visible_products(principal)  # None: every product
    products = None if product_id is None else [product_id]
    if visible is not None:
        products = [p for p in (products or visible) if p in set(visible)]
    pts = None if pt is None else [store.named_event(pt)]
    query = RateQuery(_scope(runtime, scope), products, pts, period, level)
    return rates(store, query, registry.registry, registry.institutions)


def visible_test(
    principal: Principal,
    runtime: Runtime,
    registry: RegistrySnapshot,
    store: SqlStore,
    scope: str,
    product_id: str,
    pt: str,
) -> dict[str, Any] | None:
    """The state of the pair's sequential test in the scope (pvsignal.monitoring), when the
    caller may see the product and the scope monitors it; else None, as for no test."""
    _scope(runtime, scope)
    if not registry.can_see(principal, product_id):
        return None
    return store.sequential_tests(scope).get((product_id, pt))


@router.get(
    "",
    response_model=RatePage,
    summary="Incidence and observed/expected from exposures",
    description="Per product with exposures in the scope, per PT (with cases, or with a "
    "reference rate in the scope's monitoring configuration) and per period: cases, patients "
    "exposed (and patient-years where every exposure gives its patient-time), incidence per "
    "1,000 patients with its exact Garwood interval, and observed/expected against the "
    "reference rates with its exact interval. An MAH sees only its own products; another's "
    "product_id is answered as one without exposure. `format=csv` gives the same rows.",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        404: {"description": "no such scope"},
    },
)
async def list_rates(
    principal: Reader,
    runtime: RuntimeDep,
    registry: RegistryDep,
    store: StoreDep,
    scope: Annotated[str, Query(max_length=63)] = "all",
    product_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    pt: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
    period: Period = "total",
    level: Annotated[float, Query(gt=0, lt=1)] = 0.95,
    format: Literal["json", "csv"] = "json",
) -> Response:
    found = await run_in_threadpool(
        visible_rates, principal, runtime, registry, store, scope, product_id, pt, period, level
    )
    if format == "csv":
        sink = io.StringIO()
        writer = csv.DictWriter(sink, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(found)
        return Response(sink.getvalue(), media_type="text/csv; charset=utf-8")
    document = {"scope": scope, "period": period, "level": level, "rates": found}
    return Response(orjson.dumps(document), media_type="application/json")
