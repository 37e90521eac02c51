"""Sign-in, the session cookie, CSRF, sign-out and expiry, without a browser (TestClient)."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

from api.ui import session as ui_session
from pvsignal.cli import main
from tests.ui.conftest import Demo


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client: TestClient, key: str) -> None:
    form = client.get("/ui/login")
    answer = client.post(
        "/ui/login",
        data={"csrf_token": csrf_of(form.text), "api_key": key},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def test_the_root_opens_the_dashboard_and_pages_want_a_session(app_on, demo: Demo):
    client = app_on()
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui"
    answer = client.get("/ui/signals?pathway=innovative", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=/ui/signals?pathway=innovative"
    page = client.get("/ui/login")
    assert 'name="api_key"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


@pytest.mark.parametrize("environment", ["development", "production"])
def test_the_session_cookie_is_httponly_samesite_and_secure_outside_development(
    app_on, demo: Demo, environment: str
):
    extra = {"secret_key": "s" * 40} if environment == "production" else {}
    client = app_on(environment=environment, **extra)
    if environment == "production":
        client.base_url = "https://testserver"  # a Secure cookie is only sent back over TLS
    form = client.get("/ui/login")
    answer = client.post(
        "/ui/login",
        data={"csrf_token": csrf_of(form.text), "api_key": demo.keys["regulator"]},
        follow_redirects=False,
    )
    cookie = next(
        v for k, v in answer.headers.multi_items() if k == "set-cookie" and "pvsignal_session" in v
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/ui" in cookie
    assert ("Secure" in cookie) == (environment == "production")
    assert demo.keys["regulator"] not in cookie  # sealed, not readable
    assert answer.headers["location"] == "/ui/overview"


def test_forms_without_the_csrf_token_are_refused(app_on, demo: Demo):
    client = app_on()
    client.get("/ui/login")
    refused = client.post("/ui/login", data={"api_key": demo.keys["regulator"]})
    assert refused.status_code == 403 and "csrf_token" in refused.text
    sign_in(client, demo.keys["regulator"])
    product_id, pt = demo.planted[0]
    pair = {"scope": "all", "product_id": product_id, "pt": pt, "status": "validation"}
    forged = client.post("/ui/signal/review", data={**pair, "csrf_token": "0" * 64})
    assert forged.status_code == 403
    page = client.get("/ui/signal", params={"product_id": product_id, "pt": pt})
    assert 'data-testid="review-status">unreviewed<' in page.text  # nothing moved


def test_a_wrong_key_is_named_and_no_session_starts(app_on):
    client = app_on()
    form = client.get("/ui/login")
    answer = client.post(
        "/ui/login", data={"csrf_token": csrf_of(form.text), "api_key": "pvs_nope"}
    )
    assert answer.status_code == 401 and "unknown or revoked API key" in answer.text
    assert "pvsignal_session" not in client.cookies


def test_sign_out_ends_the_session_on_the_server_too(app_on, demo: Demo):
    client = app_on()
    sign_in(client, demo.keys["mah_a"])
    page = client.get("/ui/signals")
    assert page.status_code == 200
    replay = {"Cookie": f"pvsignal_session={client.cookies['pvsignal_session']}"}
    other = app_on()  # a second process on the same store (one app each)
    assert other.get("/ui/signals", headers=replay, follow_redirects=False).status_code == 200
    sign_in(other, demo.keys["mah_a"])  # and a session of its own, with the same key
    client.post("/ui/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert client.get("/ui/signals", follow_redirects=False).status_code == 303
    # The cookie copied before sign-out, replayed: refused by both processes.
    for process in (app_on(), app_on()):
        replayed = process.get("/ui/signals", headers=replay, follow_redirects=False)
        assert replayed.status_code == 303
        assert replayed.headers["location"].startswith("/ui/login")
    # Only that session ended: the other one goes on.
    assert other.get("/ui/signals", follow_redirects=False).status_code == 200


def test_a_session_expires_and_a_revoked_key_ends_it(app_on, demo: Demo, monkeypatch):
    client = app_on(ui_session_minutes=5)
    sign_in(client, demo.keys["admin"])
    assert client.get("/ui/keys", follow_redirects=False).status_code == 200
    now = time.time()
    monkeypatch.setattr(ui_session.time, "time", lambda: now + 5 * 60 + 1)
    assert client.get("/ui/keys", follow_redirects=False).status_code == 303
    monkeypatch.undo()

    sign_in(client, demo.keys["mah_b"])
    assert client.get("/ui/signals", follow_redirects=False).status_code == 200
    runtime = client.app.state.runtime
    with runtime.pool.store() as store:
        key_id = next(
            k["key_id"] for k in store.api_keys() if k["org"] == demo.mah_b and not k["revoked_at"]
        )
    assert main(["keys", "revoke", key_id, "--store", runtime.settings.store_url]) == 0
    assert client.get("/ui/signals", follow_redirects=False).status_code == 303
