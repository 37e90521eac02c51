"""The dashboard's session: a sealed cookie holding the credential the browser signed in with.

Each request re-authenticates that credential with the API's own ``Authenticator`` (a revoked
key or an expired token ends the session at once), so the dashboard's principal is always the
one the API would see for the same credential. The cookie is sealed (Fernet: AES-CBC + HMAC under
a key derived from ``secret_key``), HttpOnly, SameSite=Lax (the OIDC provider's redirect back is a
top-level GET) and Secure outside development; it ends ``ui_session_minutes`` after sign-in, or
when the token inside it expires, whichever comes first, or at sign-out: signing out records the
session as ended in the store (``ended_sessions``), so a copied cookie is refused afterwards.

CSRF: every form carries ``csrf_token`` = HMAC(secret, the session's nonce); before sign-in the
nonce is a cookie of its own (sign-in forms are protected too: no logging a victim in as
someone else).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

import orjson
from cryptography.fernet import Fernet, InvalidToken
from fastapi import Depends, Request
from starlette.responses import Response

from api.auth import Principal
from api.deps import RuntimeDep
from api.problems import ApiError, UnauthorizedError
from api.runtime import Runtime

SESSION_COOKIE = "pvsignal_session"
PRESESSION_COOKIE = "pvsignal_presession"
OIDC_COOKIE = "pvsignal_oidc"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):  # noqa: N818 - a redirect, not an error
    """No (live) session: the page sends the browser to the sign-in form."""


class CsrfError(ApiError):
    status, title, slug = 403, "Forbidden", "csrf"


@dataclass(frozen=True)
class Session:
    credential: str
    expires: float  # epoch seconds
    nonce: str


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    session: Session


def _fernet(runtime: Runtime, purpose: bytes) -> Fernet:
    secret = runtime.settings.secret_key.get_secret_value().encode()
    key = hashlib.sha256(b"pvsignal-ui-" + purpose + b"\0" + secret).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(runtime: Runtime, purpose: bytes, document: dict) -> str:
    return _fernet(runtime, purpose).encrypt(orjson.dumps(document)).decode()


def unseal(runtime: Runtime, purpose: bytes, token: str | None, max_age: int) -> dict | None:
    if not token:
        return None
    try:
        return orjson.loads(_fernet(runtime, purpose).decrypt(token.encode(), ttl=max_age))
    except (InvalidToken, ValueError):
        return None


def set_cookie(response: Response, runtime: Runtime, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="lax",
        secure=runtime.settings.environment != "development",
    )


def start_session(
    response: Response, runtime: Runtime, credential: str, token_expires: float | None = None
) -> None:
    """Sign the browser in: the credential was just authenticated by the caller."""
    lifetime = runtime.settings.ui_session_minutes * 60
    expires = time.time() + lifetime
    if token_expires is not None:
        expires = min(expires, token_expires)
    session = {"c": credential, "x": expires, "n": secrets.token_urlsafe(16)}
    set_cookie(response, runtime, SESSION_COOKIE, seal(runtime, b"session", session), lifetime)
    response.delete_cookie(PRESESSION_COOKIE, path="/ui")


def end_session(response: Response, runtime: Runtime, session: Session | None) -> None:
    """Sign out: the session is recorded as ended in the store (every process refuses a copy
    of its cookie from now on), and the browser forgets the cookie."""
    if session is not None:
        with runtime.pool.store() as store:
            store.end_session(_digest(session.nonce), session.expires, time.time())
    response.delete_cookie(SESSION_COOKIE, path="/ui")


def _digest(nonce: str) -> str:
    """What the store keeps of an ended session: not its nonce (the CSRF tokens' seed)."""
    return hashlib.sha256(b"pvsignal-ui-session\0" + nonce.encode()).hexdigest()


def current_session(request: Request, runtime: Runtime) -> Session | None:
    """The browser's live session: sealed by us, not expired, not signed out."""
    lifetime = runtime.settings.ui_session_minutes * 60
    found = unseal(runtime, b"session", request.cookies.get(SESSION_COOKIE), lifetime)
    if found is None or found["x"] <= time.time():
        return None
    with runtime.pool.store() as store:
        if store.session_ended(_digest(found["n"])):
            return None
    return Session(found["c"], found["x"], found["n"])


def signed_in(request: Request, runtime: RuntimeDep) -> SignedIn:
    """The session's principal, authenticated as the API authenticates a bearer credential."""
    session = current_session(request, runtime)
    if session is None:
        raise SignInRequired
    try:
        principal = runtime.authenticator.authenticate(session.credential)
    except UnauthorizedError:
        raise SignInRequired from None  # revoked key, expired token
    request.state.principal = principal  # for the access log
    request.state.ui_user = user = SignedIn(principal, session)  # for error pages
    return user


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


def csrf_token(runtime: Runtime, nonce: str) -> str:
    secret = runtime.settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, b"pvsignal-ui-csrf\0" + nonce.encode(), "sha256").hexdigest()


def presession_nonce(request: Request) -> str:
    """The nonce of the sign-in form's CSRF token (a new one when the browser has none)."""
    return request.cookies.get(PRESESSION_COOKIE) or secrets.token_urlsafe(16)


def check_csrf(runtime: Runtime, nonce: str | None, sent: object) -> None:
    if (
        not nonce
        or not isinstance(sent, str)
        or not hmac.compare_digest(csrf_token(runtime, nonce), sent)
    ):
        raise CsrfError("the form's csrf_token is missing or stale: reload the page and retry")
