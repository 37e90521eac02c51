"""Sign-in with an API key, or with the OIDC provider (authorization code + PKCE, RFC 7636),
sign-out, and the language switch.

The OIDC flow: ``/ui/login/oidc`` draws state, nonce and a PKCE verifier, keeps them in a
sealed ten-minute cookie and sends the browser to the provider's authorization endpoint
(discovered at ``{issuer}/.well-known/openid-configuration``); the callback checks the state,
redeems the code with the verifier at the token endpoint, and authenticates the access token
exactly as the API authenticates a bearer token (issuer, audience, signature, role and
organisation claims). The session keeps that token and ends when it expires.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.deps import RuntimeDep
from api.problems import ApiError, UnauthorizedError
from api.runtime import Runtime
from api.ui.i18n import LANG_COOKIE, LANGUAGES
from api.ui.session import (
    CSRF_FIELD,
    OIDC_COOKIE,
    PRESESSION_COOKIE,
    check_csrf,
    current_session,
    end_session,
    seal,
    set_cookie,
    start_session,
    unseal,
)
from api.ui.web import PageRoute, home_of, render, safe_next

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=PageRoute)
Next = Annotated[str | None, Query(max_length=2000)]
_OIDC_SECONDS = 600


class OidcError(ApiError):
    status, title, slug = 502, "Bad gateway", "oidc"


@router.get("/login")
def login_form(request: Request, runtime: RuntimeDep, next: Next = None) -> Response:
    return render(request, "login.html", _login_context(runtime, next, None))


def _login_context(runtime: Runtime, target: str | None, problem: str | None) -> dict[str, Any]:
    settings = runtime.settings
    return {
        "next": safe_next(target, ""),
        "problem": problem,
        "oidc": settings.oidc_enabled and settings.oidc_client_id is not None,
    }


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep) -> Response:
    form = await request.form()
    check_csrf(runtime, request.cookies.get(PRESESSION_COOKIE), form.get(CSRF_FIELD))
    key = str(form.get("api_key") or "").strip()
    target = str(form.get("next") or "")
    try:
        principal = await run_in_threadpool(runtime.authenticator.authenticate, key)
    except UnauthorizedError as error:
        context = _login_context(runtime, target, str(error))
        return render(request, "login.html", context, status=401)
    response = RedirectResponse(safe_next(target, home_of(principal)), status_code=303)
    start_session(response, runtime, key)
    return response


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    form = await request.form()
    session = await run_in_threadpool(current_session, request, runtime)
    if session is not None:
        check_csrf(runtime, session.nonce, form.get(CSRF_FIELD))
    response = RedirectResponse("/ui/login", status_code=303)
    await run_in_threadpool(end_session, response, runtime, session)
    return response


@router.get("/lang")
def switch_language(
    runtime: RuntimeDep,
    to: Annotated[str, Query(max_length=10)],
    next: Next = None,
) -> Response:
    """A preference only (no CSRF needed): the chosen language, then back where it was."""
    response = RedirectResponse(safe_next(next, "/ui"), status_code=303)
    if to in LANGUAGES:
        set_cookie(response, runtime, LANG_COOKIE, to, 365 * 86400)
    return response


# -- OIDC ---------------------------------------------------------------------------------------


def _discovery(runtime: Runtime) -> dict[str, Any]:
    issuer = (runtime.settings.oidc_issuer or "").rstrip("/")
    try:
        answer = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
        answer.raise_for_status()
        return answer.json()
    except (httpx.HTTPError, ValueError) as error:
        raise OidcError(f"the OIDC provider's configuration could not be read: {error}") from None


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _callback_url(request: Request) -> str:
    return str(request.url_for("oidc_callback"))


@router.get("/login/oidc")
async def oidc_start(request: Request, runtime: RuntimeDep, next: Next = None) -> Response:
    settings = runtime.settings
    if not (settings.oidc_enabled and settings.oidc_client_id):
        raise OidcError("OIDC sign-in is not configured (PVSIGNAL_OIDC_CLIENT_ID)")
    provider = await run_in_threadpool(_discovery, runtime)
    state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    query = {
        "response_type": "code",
        "client_id": settings.oidc_client_id,
        "redirect_uri": _callback_url(request),
        "scope": "openid",
        "state": state,
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    pending = {"s": state, "v": verifier, "n": safe_next(next, "")}
    response = RedirectResponse(
        f"{provider['authorization_endpoint']}?{urlencode(query)}", status_code=303
    )
    set_cookie(response, runtime, OIDC_COOKIE, seal(runtime, b"oidc", pending), _OIDC_SECONDS)
    return response


@router.get("/login/oidc/callback", name="oidc_callback")
async def oidc_callback(
    request: Request,
    runtime: RuntimeDep,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    error_description: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    pending = unseal(runtime, b"oidc", request.cookies.get(OIDC_COOKIE), _OIDC_SECONDS)
    if error is not None:
        raise UnauthorizedError(f"the OIDC provider refused: {error} {error_description or ''}")
    if pending is None or state is None or not secrets.compare_digest(pending["s"], state):
        raise UnauthorizedError("state: this sign-in was not started here, or it took too long")
    if code is None:
        raise UnauthorizedError("code: the OIDC provider sent no authorization code")
    token = await run_in_threadpool(_redeem, runtime, code, pending["v"], _callback_url(request))
    principal = await run_in_threadpool(runtime.authenticator.authenticate, token)
    expires = jwt.decode(token, options={"verify_signature": False}).get("exp")  # verified above
    response = RedirectResponse(safe_next(pending["n"], home_of(principal)), status_code=303)
    start_session(response, runtime, token, float(expires) if expires else time.time())
    response.delete_cookie(OIDC_COOKIE, path="/ui")
    return response


def _redeem(runtime: Runtime, code: str, verifier: str, redirect_uri: str) -> str:
    """The access token for the authorization code (the PKCE verifier proves we asked)."""
    settings = runtime.settings
    provider = _discovery(runtime)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": settings.oidc_client_id or "",
        "code_verifier": verifier,
    }
    if settings.oidc_client_secret is not None:
        form["client_secret"] = settings.oidc_client_secret.get_secret_value()
    try:
        answer = httpx.post(provider["token_endpoint"], data=form, timeout=10)
    except httpx.HTTPError as error:
        raise OidcError(f"the OIDC token endpoint could not be reached: {error}") from None
    if answer.status_code != 200:
        raise UnauthorizedError(f"the OIDC provider refused the code: {answer.text[:200]}")
    token = answer.json().get("access_token")
    if not isinstance(token, str):
        raise OidcError("the OIDC token endpoint answered no access_token")
    return token
