"""Sign-in through an OIDC provider: authorization code with PKCE (RFC 7636, S256), against a
small provider served in this process. The provider checks the verifier itself, so a session
only starts when the dashboard sent the verifier of the challenge it asked with."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import json
import secrets
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.postgres import free_port
from tests.support.server import serve_command
from tests.ui.conftest import Demo

CLIENT_ID = "pvsignal-dashboard"


@dataclass
class Provider:
    base: str
    key: rsa.RSAPrivateKey
    claims: dict[str, str]
    pending: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> its request
    redeemed: list[dict[str, str]] = field(default_factory=list)

    def public_pem(self) -> str:
        public = self.key.public_key()
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def token(self) -> str:
        now = dt.datetime.now(dt.UTC)
        payload = {"iss": self.base, "aud": "pvsignal", "sub": "alice", **self.claims}
        payload["exp"] = now + dt.timedelta(minutes=10)
        return jwt.encode(payload, self.key, algorithm="RS256")


def _handler(provider: Provider) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _json(self, status: int, document: dict) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._json(
                    200,
                    {
                        "issuer": provider.base,
                        "authorization_endpoint": f"{provider.base}/authorize",
                        "token_endpoint": f"{provider.base}/token",
                    },
                )
                return
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            ok = (
                query.get("response_type") == "code"
                and query.get("client_id") == CLIENT_ID
                and query.get("code_challenge_method") == "S256"
                and query.get("code_challenge")
            )
            if not ok:
                self._json(400, {"error": "invalid_request"})
                return
            code = secrets.token_urlsafe(16)
            provider.pending[code] = query  # the user signs in at once
            back = {"code": code, "state": query["state"]}
            self.send_response(302)
            self.send_header("Location", f"{query['redirect_uri']}?{urlencode(back)}")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            asked = provider.pending.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            if (
                asked is None
                or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != asked["redirect_uri"]
                or challenge != asked["code_challenge"]
            ):
                self._json(400, {"error": "invalid_grant"})
                return
            provider.redeemed.append(form)
            self._json(200, {"access_token": provider.token(), "token_type": "Bearer"})

    return Handler


@pytest.fixture
def provider(demo: Demo) -> Iterator[Provider]:
    port = free_port()
    found = Provider(
        f"http://127.0.0.1:{port}",
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        {"pvsignal_role": "mah", "pvsignal_org": demo.mah_a},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _handler(found))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


def _oidc_client(app_on, provider: Provider):
    return app_on(
        oidc_issuer=provider.base,
        oidc_audience="pvsignal",
        oidc_public_key=provider.public_pem(),
        oidc_client_id=CLIENT_ID,
    )


def _to_provider(client) -> tuple[str, dict[str, str]]:
    started = client.get("/ui/login/oidc?next=/ui/products", follow_redirects=False)
    assert started.status_code == 303
    location = started.headers["location"]
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_oidc_sign_in_with_pkce_starts_a_session_as_the_token_says(app_on, provider, demo):
    client = _oidc_client(app_on, provider)
    assert "/ui/login/oidc" in client.get("/ui/login").text  # offered when configured
    location, asked = _to_provider(client)
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["redirect_uri"] == "http://testserver/ui/login/oidc/callback"
    back = httpx.get(location, follow_redirects=False).headers["location"]
    answer = client.get(back.removeprefix("http://testserver"), follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/products"
    [redeemed] = provider.redeemed
    assert len(redeemed["code_verifier"]) >= 43  # RFC 7636: 43 to 128 characters
    page = client.get("/ui/products")
    assert page.status_code == 200 and f"{demo.mah_a}</span>" in page.text
    rows = page.text.count('data-testid="product-row"')
    assert rows == len(demo.products_of[demo.mah_a])  # the token's MAH, as on the API


def test_a_callback_with_another_state_or_a_stolen_code_starts_nothing(app_on, provider):
    client = _oidc_client(app_on, provider)
    location, asked = _to_provider(client)
    back = httpx.get(location, follow_redirects=False).headers["location"]
    code = parse_qs(urlsplit(back).query)["code"][0]
    forged = client.get(
        "/ui/login/oidc/callback", params={"code": code, "state": "forged"}, follow_redirects=False
    )
    assert forged.status_code == 401 and "state" in forged.text
    # Another browser, with the code but not the verifier cookie, gets nothing either.
    other = app_on()
    stolen = other.get(
        "/ui/login/oidc/callback",
        params={"code": code, "state": asked["state"]},
        follow_redirects=False,
    )
    assert stolen.status_code == 401
    assert provider.redeemed == [] and "pvsignal_session" not in client.cookies
    refused = client.get("/ui/login/oidc/callback", params={"error": "access_denied"})
    assert refused.status_code == 401 and "access_denied" in refused.text


def _served_redirect_uri(provider: Provider, tmp_path, **env: str) -> str:
    """`pvsignal serve` as the chart runs it (real uvicorn), asked to start an OIDC sign-in by
    a TLS proxy (X-Forwarded-Proto: https, the public Host): the redirect_uri it sends."""
    port = free_port()
    environment = {
        "PVSIGNAL_OIDC_ISSUER": provider.base,
        "PVSIGNAL_OIDC_AUDIENCE": "pvsignal",
        "PVSIGNAL_OIDC_PUBLIC_KEY": provider.public_pem(),
        "PVSIGNAL_OIDC_CLIENT_ID": CLIENT_ID,
        **env,
    }
    command = [sys.executable, "-m", "pvsignal.cli", "serve", "--port", str(port)]
    command += ["--store", f"sqlite:///{tmp_path}/proxy-{port}.db"]
    with serve_command(command, port, environment) as server:
        headers = {"X-Forwarded-Proto": "https", "Host": "pv.example.org"}
        started = httpx.get(f"{server.base}/ui/login/oidc", headers=headers)
        assert started.status_code == 303, started.text
        return parse_qs(urlsplit(started.headers["location"]).query)["redirect_uri"][0]


def test_behind_a_tls_proxy_the_callback_is_https(provider, tmp_path):
    """The provider only calls back where it was told: behind the chart's ingress that must
    be https. A proxy's headers are believed only from the configured addresses."""
    trusted = _served_redirect_uri(provider, tmp_path, PVSIGNAL_FORWARDED_ALLOW_IPS="*")
    assert trusted == "https://pv.example.org/ui/login/oidc/callback"
    default = _served_redirect_uri(provider, tmp_path, PVSIGNAL_FORWARDED_ALLOW_IPS="10.9.9.9")
    assert default == "http://pv.example.org/ui/login/oidc/callback"
