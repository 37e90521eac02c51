"""Who is asking: API keys (stored as SHA-256 hashes) or OIDC/JWT bearer tokens.

Roles: ``hospital`` submits reports and reads its own receipts; ``mah`` reads signals, alerts
and history of the products its organisation holds and manages its own subscriptions;
``regulator`` reads everything and manages the registry; ``admin`` does what a regulator does
and manages keys.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from api.pool import StorePool
from api.problems import UnauthorizedError
from pvsignal.errors import InputError
from pvsignal.settings import Settings
from pvsignal.store import SqlStore

KEY_PREFIX = "pvs_"


class Role(StrEnum):
    hospital = "hospital"
    mah = "mah"
    regulator = "regulator"
    admin = "admin"


# Roles that act for one organisation and must name it.
ORGANISATION_ROLES = frozenset({Role.hospital, Role.mah})


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    org: str | None
    subject: str  # key id, or the token's subject

    @property
    def sees_everything(self) -> bool:
        return self.role in (Role.regulator, Role.admin)

    def describe(self) -> str:
        return f"{self.role.value}:{self.org or '-'}:{self.subject}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(
    store: SqlStore, role: Role | str, org: str | None, name: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Create a key: 32 random bytes, shown once; only its hash is stored."""
    role = Role(role)
    org = org.strip() if org is not None else None
    if role in ORGANISATION_ROLES and not org:
        raise InputError(f"role {role.value!r} acts for an organisation: give --org (not blank)")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = store.create_api_key(hash_key(key), secrets.token_hex(8), role.value, org, name)
    return key, record


class Authenticator:
    """Turns a bearer credential into a principal, or refuses it (401)."""

    def __init__(self, settings: Settings, pool: StorePool) -> None:
        self._settings, self._pool = settings, pool
        self._jwks: jwt.PyJWKClient | None = None
        if settings.oidc_enabled and settings.oidc_jwks_url is not None:
            self._jwks = jwt.PyJWKClient(settings.oidc_jwks_url, cache_keys=True, lifespan=300)

    def authenticate(self, credential: str | None) -> Principal:
        if not credential:
            raise UnauthorizedError("send credentials: Authorization: Bearer KEY")
        if credential.startswith(KEY_PREFIX):
            return self._api_key(credential)
        if self._settings.oidc_enabled and credential.count(".") == 2:
            return self._token(credential)
        raise UnauthorizedError("the bearer credential is not a valid API key or token")

    def _api_key(self, key: str) -> Principal:
        with self._pool.store() as store:
            record = store.api_key(hash_key(key))
        if record is None:
            raise UnauthorizedError("unknown or revoked API key")
        role = Role(record["role"])
        if role in ORGANISATION_ROLES and not _named(record["org"]):
            # Only a key written before issue_key refused blank organisations.
            raise UnauthorizedError(f"this {role.value} key names no organisation; issue a new one")
        return Principal(role, record["org"] or None, record["key_id"])

    def _token(self, token: str) -> Principal:
        settings = self._settings
        try:
            key = self._signing_key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=list(settings.oidc_algorithms),
                audience=settings.oidc_audience,
                issuer=settings.oidc_issuer,
                options={"require": ["exp", "iss", "sub"]},
            )
        except (jwt.PyJWTError, ValueError) as error:
            raise UnauthorizedError(f"token refused: {error}") from None
        return _principal_from_claims(claims, settings)

    def _signing_key(self, token: str) -> Any:
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key
        assert self._settings.oidc_public_key is not None
        return self._settings.oidc_public_key.get_secret_value()


def _principal_from_claims(claims: dict[str, Any], settings: Settings) -> Principal:
    raw_role = claims.get(settings.oidc_role_claim)
    try:
        role = Role(raw_role)
    except ValueError:
        raise UnauthorizedError(
            f"token claim {settings.oidc_role_claim!r} must be one of "
            f"{', '.join(r.value for r in Role)}, got {raw_role!r}"
        ) from None
    org = claims.get(settings.oidc_org_claim)
    if not _named(org):
        if role in ORGANISATION_ROLES:
            raise UnauthorizedError(
                f"token claim {settings.oidc_org_claim!r} must name the organisation of a "
                f"{role.value}, got {org!r}"
            )
        org = None
    return Principal(role, org, str(claims["sub"]))


def _named(org: object) -> bool:
    """An organisation id: a string with more than blanks (an empty org matches nothing and
    must never stand for one)."""
    return isinstance(org, str) and bool(org.strip())
