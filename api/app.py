"""``create_app(settings)``: the FastAPI application, its routers, errors and lifespan.

The lifespan opens the stores, starts the background loops (debounced detection, the alert
feed, webhook delivery) and closes everything on shutdown. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from api.deps import get_principal, refuse_undeclared_query
from api.metrics import Metrics
from api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from api.openapi import document_problems
from api.problems import install_problem_handlers
from api.routes import (
    alerts,
    audit,
    cases,
    duplicates,
    exposures,
    fits,
    health,
    institutions,
    keys,
    products,
    rates,
    receipts,
    reports,
    reviews,
    scopes,
    signals,
    subscriptions,
    terms,
    trends,
)
from api.runtime import LagProbe, build_runtime
from api.ui import mount_ui, warm_ui
from pvsignal.exposures import Exposure
from pvsignal.reports import Report
from pvsignal.settings import Settings

DESCRIPTION = """Pharmacovigilance signal detection for innovative and pilot-imported products.

Hospitals submit reports; MAH safety teams read signals and alerts of **their own** products
and subscribe webhooks; regulators read everything and keep the product registry. Send an API
key (`pvsignal keys create`) or an OIDC token as `Authorization: Bearer ...`. Errors are RFC
9457 problem details (`application/problem+json`).
"""


def create_app(
    settings: Settings,
    *,
    lag_probe: LagProbe | None = None,
    metrics: Metrics | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> FastAPI:
    """Build the app; its lifespan does the I/O. ``clock`` (UTC now) dates reviews and
    decides what is overdue."""
    metrics = metrics if metrics is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await asyncio.to_thread(build_runtime, settings, metrics, lag_probe)
        app.state.runtime = runtime
        runtime.start()
        warm_ui(runtime)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="pvsignal",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(refuse_undeclared_query)],
    )
    app.state.metrics = metrics
    app.state.clock = clock if clock is not None else (lambda: dt.datetime.now(dt.UTC))
    install_problem_handlers(app)
    routers = [
        module.router
        for module in (
            health,
            reports,
            receipts,
            trends,  # before signals: the pair detail's {pt:path} would take /trend
            reviews,  # before signals: its /{pt:path}/review must match before /{pt:path}
            signals,
            scopes,
            cases,
            products,
            institutions,
            duplicates,
            fits,
            subscriptions,
            alerts,
            keys,
            audit,
            terms,
            exposures,
            rates,
        )
    ]
    for router in routers:
        app.include_router(router)
    document_problems(app, routers)
    _documentation(app, settings)
    mount_ui(app)  # the dashboard at /ui (not in the OpenAPI document)
    # Report batches may be large; every other body stays under the general limit.
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        per_path={
            "/v1/reports": settings.max_report_body_bytes,
            "/v1/exposures": settings.max_report_body_bytes,
            "/ui/upload": settings.max_report_body_bytes,  # the dashboard's upload of reports
        },
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)  # outermost
    metrics.known_routes(_route_templates(app))
    return app


def _documentation(app: FastAPI, settings: Settings) -> None:
    """/openapi.json and /docs: open in development, behind credentials in production."""
    guard = [] if settings.environment == "development" else [Depends(get_principal)]
    report_schema = Report.model_json_schema(ref_template="#/components/schemas/{model}")
    exposure_schema = Exposure.model_json_schema(ref_template="#/components/schemas/{model}")

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # Whoever asks first (the route templates for metrics, at build time) gets the whole
        # document: the Report schema the body of POST /v1/reports refers to is in it.
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(report_schema.pop("$defs", {}))
            schemas["Report"] = report_schema
            schemas.update(exposure_schema.pop("$defs", {}))
            schemas["Exposure"] = exposure_schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    # Swagger UI's scripts are served from the installed bundle, not a CDN: hospital and
    # regulator networks (and this project's machines) are often offline. Only in development:
    # elsewhere nothing but health and metrics answers without credentials.
    if settings.environment == "development":
        app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="pvsignal API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )


def _route_templates(app: FastAPI) -> list[tuple[str, str]]:
    """(method, template) of every documented route, from the OpenAPI paths."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]
