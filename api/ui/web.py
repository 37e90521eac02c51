"""What every dashboard page shares: rendering in the browser's language, the page route that
turns a missing session into the sign-in page and an API error into an error page, and the
bridge to the API's own handlers and role checks."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, get_args
from urllib.parse import quote

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.auth import Principal, Role
from api.problems import ApiError
from api.runtime import Runtime
from api.ui.i18n import LANGUAGES, environment, language_of
from api.ui.session import (
    PRESESSION_COOKIE,
    SignedIn,
    SignInRequired,
    csrf_token,
    presession_nonce,
    set_cookie,
)

# Scripts, styles and images only from this server; no framing; forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# The pages of each role, in the order of the navigation bar: (endpoint path, message id).
NAVIGATION = {
    "overview": ("/ui/overview", "Overview"),
    "signals": ("/ui/signals", "Signals"),
    "products": ("/ui/products", "Products"),
    "alerts": ("/ui/alerts", "Alerts"),
    "subscriptions": ("/ui/subscriptions", "Subscriptions"),
    "cases": ("/ui/cases", "Cases"),
    "upload": ("/ui/upload", "Upload"),
    "keys": ("/ui/keys", "Keys"),
}
PAGES_OF = {
    Role.regulator: ("overview", "signals", "products", "alerts", "upload"),
    Role.admin: ("overview", "signals", "products", "alerts", "subscriptions", "upload", "keys"),
    Role.mah: ("overview", "signals", "products", "alerts", "subscriptions", "upload"),
    Role.hospital: ("upload", "cases"),
}


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


def home_of(principal: Principal) -> str:
    return NAVIGATION[PAGES_OF[principal.role][0]][0]


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    user: SignedIn | None = None,
    status: int = 200,
) -> HTMLResponse:
    runtime = runtime_of(request)
    language = language_of(request)
    nonce = user.session.nonce if user is not None else presession_nonce(request)
    principal = user.principal if user is not None else None
    page = environment(language).get_template(template)
    html = page.render(
        request=request,
        principal=principal,
        csrf=csrf_token(runtime, nonce),
        navigation=[NAVIGATION[p] for p in PAGES_OF[principal.role]] if principal else [],
        here=request.url.path,
        here_with_query=_here(request),
        other_language="en" if language == "zh-CN" else "zh-CN",
        languages=LANGUAGES,
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if user is None and PRESESSION_COOKIE not in request.cookies:
        set_cookie(response, runtime, PRESESSION_COOKIE, nonce, 3600)
    return response


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def safe_next(target: str | None, fallback: str) -> str:
    """Only a path of the dashboard itself (no open redirect to another site)."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback


class PageRoute(APIRoute):
    """A dashboard page: no session sends the browser to sign in (and back afterwards); an
    API error (404 for what the caller may not see, 403, 422 naming the field) is an error
    page in the browser's language with the same status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = quote(_here(request), safe="/?=&")
                if request.method != "GET":
                    target = "/ui"
                return RedirectResponse(f"/ui/login?next={target}", status_code=303)
            except ApiError as error:
                return render(
                    request,
                    "error.html",
                    {"status": error.status, "detail": str(error)},
                    user=getattr(request.state, "ui_user", None),
                    status=error.status,
                )

        return page


def admitted(alias: Any, principal: Principal) -> Principal:
    """Run the role check of one of api.deps' principal aliases (``Reader``, ``Regulator``,
    ...) on the session's principal: the dashboard admits exactly whom the API admits."""
    for metadata in get_args(alias)[1:]:
        check = getattr(metadata, "dependency", None)
        if check is not None:
            return check(principal)
    raise TypeError(f"{alias!r} carries no role check")


def may(alias: Any, principal: Principal) -> bool:
    try:
        admitted(alias, principal)
    except ApiError:
        return False
    return True


def body_of(response: Response) -> Any:
    """The JSON document an API handler answered."""
    return orjson.loads(response.body)
