"""The dashboard at /ui: server-rendered pages over the API's own handlers (see routes)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from api.ui import routes, signin

STATIC = Path(__file__).parent / "static"


def mount_ui(app: FastAPI) -> None:
    """Serve the dashboard at /ui (its scripts and styles from the package) and send / there."""
    app.include_router(signin.router)
    app.include_router(routes.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)
