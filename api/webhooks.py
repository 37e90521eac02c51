"""Webhooks: which alerts a subscription receives, how a delivery is signed, sent and retried.

Signature (Stripe-style, so receivers can use the usual recipe)::

    Pvsignal-Timestamp: 1764489600
    Pvsignal-Signature: v1=hex(HMAC-SHA256(secret, "1764489600." + body))

A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in constant
time and refuses timestamps older than a few minutes (replays). Failed deliveries are retried
with exponential backoff (base * 2**(attempt-1), capped, with jitter) until the attempt limit,
then marked failed; every attempt's outcome is kept on the delivery.

Secrets are stored sealed (Fernet, keyed from the service's secret key) and shown only once,
when the subscription is created.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography.fernet import Fernet, InvalidToken

from api.auth import Role
from api.metrics import Metrics
from api.pool import StorePool
from api.problems import UnprocessableError
from api.tenancy import RegistrySnapshot
from pvsignal.settings import Settings

SIGNATURE_HEADER = "Pvsignal-Signature"
TIMESTAMP_HEADER = "Pvsignal-Timestamp"
DELIVERY_HEADER = "Pvsignal-Delivery"
log = logging.getLogger("api.webhooks")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300
) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps."""
    try:
        moment = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - moment) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, moment, body), signature)


class SecretBox:
    """Seals webhook secrets at rest with a key derived from the service's secret."""

    def __init__(self, secret: bytes) -> None:
        key = hashlib.sha256(b"pvsignal-webhook-secrets\0" + secret).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()


def check_url(url: str, settings: Settings, *, resolve: bool = False) -> None:
    """Refuse webhook targets the service must not call (SSRF): other schemes, hosts not
    allowed, and loopback/private/link-local addresses unless configured."""
    parts = urlsplit(url)
    problem = _url_problem(parts.scheme, parts.hostname, settings)
    if problem is None and resolve and not settings.private_webhooks_allowed:
        problem = _resolved_problem(parts.hostname or "", parts.port)
    if problem is not None:
        raise UnprocessableError(
            f"url: {problem}", errors=[{"field": "body.url", "reason": problem, "value": url}]
        )


def _url_problem(scheme: str, host: str | None, settings: Settings) -> str | None:
    allowed_schemes = ("https",) if settings.environment == "production" else ("https", "http")
    if scheme not in allowed_schemes:
        return f"the scheme must be {' or '.join(allowed_schemes)}"
    if not host:
        return "the URL names no host"
    if settings.webhook_allowed_hosts and host not in settings.webhook_allowed_hosts:
        return f"host {host!r} is not among the allowed webhook hosts"
    if not settings.private_webhooks_allowed and _private(host):
        return f"host {host!r} is a loopback, private or link-local address"
    return None


def _private(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def _resolved_problem(host: str, port: int | None) -> str | None:
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except OSError as error:
        return f"host {host!r} does not resolve ({error})"
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_global:
            return f"host {host!r} resolves to a non-public address"
    return None


def matches(
    subscription: dict[str, Any], alert: dict[str, Any], registry: RegistrySnapshot
) -> bool:
    """Does the alert go to the subscription? Tenancy first, then the subscriber's filter."""
    product = alert.get("product_id")
    if subscription["owner_role"] == Role.mah.value:
        if registry.mah_of.get(product) != subscription["owner_org"]:
            return False
    elif subscription["owner_role"] not in (Role.regulator.value, Role.admin.value):
        return False
    if str(alert.get("at", "")) < subscription["created_at"]:
        return False  # only alerts raised after the subscription was made
    wanted = subscription["filter"]
    for key, value in (
        ("products", product),
        ("pts", alert.get("pt")),
        ("measures", alert.get("measure")),
        ("transitions", alert.get("transition")),
        ("scopes", alert.get("scope")),
    ):
        chosen = wanted.get(key) or []
        if chosen and value not in chosen:
            return False
    return True


def backoff(attempt: int, settings: Settings, rng: random.Random) -> float:
    """Seconds before the next try after ``attempt`` failed tries (1-based)."""
    delay = min(
        settings.webhook_backoff_seconds * 2 ** (attempt - 1), settings.webhook_backoff_max_seconds
    )
    return delay * (1 + settings.webhook_jitter * rng.uniform(-1, 1))


class DeliveryWorker:
    """Sends due deliveries, records each attempt, schedules retries."""

    _CONCURRENCY = 8

    def __init__(
        self, pool: StorePool, box: SecretBox, settings: Settings, metrics: Metrics
    ) -> None:
        self._pool, self._box, self._settings, self._metrics = pool, box, settings, metrics
        self._wake = asyncio.Event()
        self._rng = random.Random()
        self._client: httpx.AsyncClient | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        timeout = httpx.Timeout(self._settings.webhook_timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            self._client = client
            while True:
                try:
                    await self.deliver_due()
                except Exception:  # a failing store must not end the worker
                    log.exception("webhook delivery round failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.webhook_poll_seconds)
                self._wake.clear()

    async def deliver_due(self) -> int:
        now = dt.datetime.now(dt.UTC)
        lease = now + dt.timedelta(seconds=self._settings.webhook_timeout_seconds * 2)
        due = await asyncio.to_thread(self._claim, now.isoformat(), lease.isoformat())
        limit = asyncio.Semaphore(self._CONCURRENCY)

        async def one(delivery: dict[str, Any]) -> None:
            async with limit:
                await self._deliver(delivery)

        await asyncio.gather(*(one(d) for d in due))
        return len(due)

    def _claim(self, now: str, lease_until: str) -> list[dict[str, Any]]:
        with self._pool.store() as store:
            due = store.due_deliveries(now)
            return [d for d in due if store.claim_delivery(d["delivery_id"], now, lease_until)]

    async def _deliver(self, delivery: dict[str, Any]) -> None:
        assert self._client is not None
        attempt = delivery["attempts"] + 1
        status: int | None = None
        try:
            await asyncio.to_thread(check_url, delivery["url"], self._settings, resolve=True)
            secret = self._box.open(delivery["secret"])
            body = orjson.dumps(
                {
                    "type": "signal.transition",
                    "delivery_id": delivery["delivery_id"],
                    "alert": delivery["alert"],
                }
            )
            timestamp = int(time.time())
            response = await self._client.post(
                delivery["url"],
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "pvsignal-webhooks/1",
                    TIMESTAMP_HEADER: str(timestamp),
                    SIGNATURE_HEADER: sign(secret, timestamp, body),
                    DELIVERY_HEADER: str(delivery["delivery_id"]),
                },
            )
            status = response.status_code
            error = None if response.is_success else f"HTTP {status}"
        except (httpx.HTTPError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        except InvalidToken:
            error = "the secret cannot be unsealed (was the service's secret key changed?)"
        except UnprocessableError as refused:
            error = refused.detail
        await asyncio.to_thread(self._record, delivery["delivery_id"], attempt, error, status)

    def _record(
        self, delivery_id: int, attempt: int, error: str | None, status: int | None
    ) -> None:
        if error is None:
            result, next_at = "delivered", None
        elif attempt >= self._settings.webhook_max_attempts:
            result, next_at = "failed", None
        else:
            delay = backoff(attempt, self._settings, self._rng)
            next_at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)).isoformat()
            result = "pending"
        with self._pool.store() as store:
            store.record_attempt(
                delivery_id,
                status=result,
                attempts=attempt,
                next_attempt_at=next_at,
                error=error,
                http_status=status,
            )
        self._metrics.webhook_deliveries.labels("retried" if result == "pending" else result).inc()
        if error is not None:
            log.warning(
                "webhook delivery failed",
                extra={"delivery_id": delivery_id, "attempt": attempt, "error": error},
            )
