"""Credentials: every route but the probes and metrics needs them; keys and OIDC tokens."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import hash_key
from pvsignal.store import open_store
from tests.api.conftest import World, copy_world, test_settings

PUBLIC = {"/livez", "/readyz", "/metrics"}


def _operations(client: TestClient) -> list[tuple[str, str]]:
    schema = client.get("/openapi.json").json()
    return [
        (method.upper(), path.replace("{pt}", "x").replace("{", "").replace("}", ""))
        for path, operations in schema["paths"].items()
        for method in operations
    ]


def test_only_probes_and_metrics_answer_without_credentials(world: World):
    operations = _operations(world.client)
    assert len(operations) > 15
    for method, path in operations:
        response = world.client.request(method, path)
        if path in PUBLIC:
            assert response.status_code == 200, path
        else:
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["type"].endswith("unauthorized")


@pytest.mark.parametrize("credential", ["pvs_not-a-key", "garbage", "a.b.c"])
def test_a_wrong_credential_is_401(world: World, credential: str):
    response = world.client.get("/v1/signals", headers={"Authorization": f"Bearer {credential}"})
    assert response.status_code == 401


ROLE_RULES = [
    ("GET", "/v1/signals", {"hospital": 403, "mah_a": 200, "regulator": 200, "admin": 200}),
    ("GET", "/v1/fits", {"hospital": 403, "mah_a": 200, "regulator": 200}),
    # MAHs are the main ICSR senders under China's GVP: they submit and read their receipts.
    ("GET", "/v1/receipts", {"hospital": 200, "mah_a": 200, "regulator": 200}),
    ("PUT", "/v1/products/Z9", {"hospital": 403, "mah_a": 403}),
    ("GET", "/v1/duplicates", {"hospital": 403, "mah_a": 403, "regulator": 200}),
    ("POST", "/v1/duplicates/1", {"hospital": 403, "mah_a": 403}),
    ("GET", "/v1/institutions", {"hospital": 403, "mah_a": 403, "regulator": 200}),
    ("PUT", "/v1/institutions/H9", {"hospital": 403, "mah_a": 403}),
    ("GET", "/v1/keys", {"hospital": 403, "mah_a": 403, "regulator": 403, "admin": 200}),
    ("POST", "/v1/keys", {"regulator": 403}),
]


@pytest.mark.parametrize(("method", "path", "expected"), ROLE_RULES)
def test_roles(world: World, method: str, path: str, expected: dict[str, int]):
    for who, status in expected.items():
        response = world.client.request(method, path, headers=world.headers(who), json={})
        assert response.status_code == status, (who, response.text)


def test_admins_create_and_revoke_keys(fresh_world: World):
    created = fresh_world.client.post(
        "/v1/keys", headers=fresh_world.headers("admin"), json={"role": "mah", "org": "MAH-C"}
    )
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["key_id"]
    as_new = {"Authorization": f"Bearer {key}"}
    assert (
        fresh_world.client.get("/v1/products", headers=as_new).json()["products"][0]["product_id"]
        == "C1"
    )
    listed = fresh_world.get("admin", "/v1/keys").json()["keys"]
    assert key_id in {k["key_id"] for k in listed} and key not in json.dumps(listed)
    revoked = fresh_world.client.delete(f"/v1/keys/{key_id}", headers=fresh_world.headers("admin"))
    assert revoked.status_code == 204
    assert fresh_world.client.get("/v1/products", headers=as_new).status_code == 401
    missing_org = fresh_world.client.post(
        "/v1/keys", headers=fresh_world.headers("admin"), json={"role": "hospital"}
    )
    assert missing_org.status_code == 422


def test_keys_are_stored_as_hashes_only(world: World, seeded):
    data = seeded.path.read_bytes()
    for key in seeded.keys.values():
        assert key.encode() not in data


# -- OIDC -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _token(key, **claims) -> str:
    now = dt.datetime.now(dt.UTC)
    payload = {
        "iss": "https://idp.test",
        "aud": "pvsignal",
        "sub": "user-1",
        "exp": now + dt.timedelta(minutes=5),
        "pvsignal_role": "mah",
        "pvsignal_org": "MAH-B",
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})


def _oidc_app(seeded, tmp_path, **oidc) -> TestClient:
    url = copy_world(seeded, tmp_path / "oidc.db")
    settings = test_settings(url, oidc_issuer="https://idp.test", oidc_audience="pvsignal", **oidc)
    return TestClient(create_app(settings))


def test_oidc_tokens_give_role_and_organisation(seeded, tmp_path, rsa_key):
    with _oidc_app(seeded, tmp_path, oidc_public_key=_public_pem(rsa_key)) as client:

        def status(token: str, path: str = "/v1/products") -> int:
            return client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code

        good = _token(rsa_key)
        products = client.get("/v1/products", headers={"Authorization": f"Bearer {good}"})
        assert {p["product_id"] for p in products.json()["products"]} == {"B1", "B2"}
        assert status(_token(rsa_key, aud="someone-else")) == 401
        assert status(_token(rsa_key, iss="https://evil.test")) == 401
        expired = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        assert status(_token(rsa_key, exp=expired)) == 401
        assert status(_token(rsa_key, pvsignal_role="superuser")) == 401
        assert status(_token(rsa_key, pvsignal_org=None)) == 401
        for blank in ("", "   ", 7):
            assert status(_token(rsa_key, pvsignal_org=blank)) == 401, blank
            assert status(_token(rsa_key, pvsignal_role="hospital", pvsignal_org=blank)) == 401
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert status(_token(other)) == 401  # signed by another key
        hospital = _token(rsa_key, pvsignal_role="hospital", pvsignal_org="H-9")
        assert status(hospital, "/v1/receipts") == 200
        assert status(hospital, "/v1/signals") == 403


def test_oidc_keys_from_a_jwks_endpoint(seeded, tmp_path, rsa_key):
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    document = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        jwks_url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        with _oidc_app(seeded, tmp_path, oidc_jwks_url=jwks_url) as client:
            response = client.get(
                "/v1/products", headers={"Authorization": f"Bearer {_token(rsa_key)}"}
            )
            assert response.status_code == 200
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            refused = client.get(
                "/v1/products", headers={"Authorization": f"Bearer {_token(other)}"}
            )
            assert refused.status_code == 401
    finally:
        server.shutdown()
        server.server_close()


def test_a_key_for_an_organisation_needs_a_non_blank_one(fresh_world: World):
    for org in ("", "   "):
        created = fresh_world.client.post(
            "/v1/keys", headers=fresh_world.headers("admin"), json={"role": "mah", "org": org}
        )
        assert created.status_code == 422, created.text
    # A key stored with a blank organisation (written before this check) is refused.
    store = open_store(fresh_world.url)
    try:
        for org in ("", " "):
            key = f"pvs_blank-org-{len(org)}"
            store.create_api_key(hash_key(key), f"blank{len(org)}", "mah", org, None)
            answer = fresh_world.client.get(
                "/v1/products", headers={"Authorization": f"Bearer {key}"}
            )
            assert answer.status_code == 401, answer.text
    finally:
        store.close()
