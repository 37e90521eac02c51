"""The dashboard at /ui: server-rendered pages over the API's own handlers (see routes)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from api.runtime import Runtime
from api.ui import routes, signin
from api.ui.i18n import compile_templates

STATIC = Path(__file__).parent / "static"


def mount_ui(app: FastAPI) -> None:
    """Serve the dashboard at /ui (its scripts and styles from the package) and send / there."""
    app.include_router(signin.router)
    app.include_router(routes.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)


def warm_ui(runtime: Runtime) -> None:
    """Beside the process's start: count the overviews of the readers who see everything
    (routes.warm_overviews) while the templates are compiled; then the process is ready
    (``runtime.warmed``, which /readyz waits for)."""

    def warm() -> None:
        try:
            counting = routes.warm_overviews(runtime)  # threads of their own
            compile_templates()
            for count in counting:
                count.join()
        except Exception:  # the pages do it on their first view instead
            logging.getLogger("api.ui").exception("dashboard warm-up failed")
        finally:
            runtime.warmed.set()

    threading.Thread(target=warm, name="ui-warm-up", daemon=True).start()
