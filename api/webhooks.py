"""Webhooks: which alerts a subscription receives, how a delivery is signed, sent and retried.

Signature (Stripe-style, so receivers can use the usual recipe)::

    Pvsignal-Timestamp: 1764489600
    Pvsignal-Signature: v1=hex(HMAC-SHA256(secret, "1764489600." + body))

A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in constant
time and refuses timestamps older than a few minutes (replays).

Bodies: ``{"type": "signal.transition", "delivery_id", "alert": {...}}`` for one alert (the
shape of :mod:`pvsignal.detection`), or, for a subscription with ``digest`` hourly or daily,
``{"type": "signal.digest", "delivery_id", "digest": {"digest", "start", "end"},
"alerts": [...]}``: one delivery per period, each alert of the period listed once. A period is
closed ``DIGEST_GRACE`` after its end, so alerts raised just before the end still join it.

Failed deliveries (single or digest) are retried with exponential backoff (base *
2**(attempt-1), capped, with jitter) until the attempt limit, then marked failed; every
attempt's outcome is kept on the delivery.

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
import re
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


DIGEST_GRACE = dt.timedelta(seconds=60)


def check_url(url: str, settings: Settings, *, resolve: bool = False) -> None:
    """Refuse webhook targets the service must not call (SSRF): other schemes, hosts not
    allowed, and any address that is not globally routable unless configured (see
    :func:`address_problem`: IPv6 forms that embed an IPv4 address are judged by it)."""
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
    if not settings.private_webhooks_allowed:
        problem = host_problem(host)
        if problem is not None:
            return f"host {host!r} {problem}"
    return None


# Prefixes whose addresses carry an IPv4 address in their last 32 bits (RFC 6052 NAT64 well-
# known prefix; IPv4-compatible, deprecated by RFC 4291): judged by that IPv4 address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TRANSLATED = frozenset({"IPv4-mapped", "NAT64", "6to4"})
# Local-use NAT64 (RFC 8215): translated by a local network's own gateway, never global.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
# IPv4 written as one number, hex or octal parts ("2852039166", "0xa9.0xfe.0xa9.0xfe"): what
# inet_aton (and so many resolvers) accepts although ip_address() does not.
_LOOSE_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)


def host_problem(host: str) -> str | None:
    """Why the service must not call this host, or None: "localhost" and any IP literal that
    is not globally routable."""
    if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
        return "is a loopback name"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        if not _LOOSE_IPV4.match(host):
            return None  # a name: checked again, resolved, when a delivery is sent
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return address_problem(address)


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not globally routable, naming the IPv4 address an IPv6 form embeds
    (IPv4-mapped, NAT64, 6to4, Teredo, IPv4-compatible), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return "is a local-use NAT64 address (64:ff9b:1::/48), not globally routable"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, ipv4 = embedded
            inner = address_problem(ipv4)
            if inner is not None:
                return f"is the {form} form of {ipv4}, which {inner}"
            if form in _TRANSLATED:
                return None  # reaches that global IPv4 address
    if not address.is_global:
        return f"is a {_kind(address)} address, not globally routable"
    return None


def _embedded_ipv4(
    address: ipaddress.IPv6Address,
) -> tuple[str, ipaddress.IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return "IPv4-compatible", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "special-purpose"


def _resolved_problem(host: str, port: int | None) -> str | None:
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except OSError as error:
        return f"host {host!r} does not resolve ({error})"
    for info in infos:
        problem = address_problem(ipaddress.ip_address(info[4][0].split("%")[0]))
        if problem is not None:
            return f"host {host!r} resolves to {info[4][0]}, which {problem}"
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
        ("scopes", alert.get("scope")),
    ):
        chosen = wanted.get(key) or []
        if chosen and value not in chosen:
            return False
    return bool(relevant_changes(wanted, alert))


def relevant_changes(wanted: dict[str, Any], alert: dict[str, Any]) -> dict[str, str]:
    """The alert's changes a filter asks for: of its ``measures`` (all if none named) and its
    ``transitions`` (all alerting ones if none named)."""
    measures, transitions = wanted.get("measures") or [], wanted.get("transitions") or []
    return {
        measure: transition
        for measure, transition in (alert.get("changes") or {}).items()
        if (not measures or measure in measures) and (not transitions or transition in transitions)
    }


def delivery_body(delivery: dict[str, Any]) -> dict[str, Any]:
    """What is POSTed for a delivery: one alert, or a digest listing a period's alerts."""
    if "digest" in delivery:
        return {
            "type": "signal.digest",
            "delivery_id": delivery["delivery_id"],
            "digest": delivery["digest"],
            "alerts": delivery["alerts"],
        }
    return {
        "type": "signal.transition",
        "delivery_id": delivery["delivery_id"],
        "alert": delivery["alert"],
    }


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

    async def deliver_due(self, now: dt.datetime | None = None) -> int:
        """Close ended digest periods, then send what is due; ``now`` for tests."""
        now = now or dt.datetime.now(dt.UTC)
        await asyncio.to_thread(self._close_digests, now)
        lease = now + dt.timedelta(seconds=self._settings.webhook_timeout_seconds * 2)
        due = await asyncio.to_thread(self._claim, now.isoformat(), lease.isoformat())
        limit = asyncio.Semaphore(self._CONCURRENCY)

        async def one(delivery: dict[str, Any]) -> None:
            async with limit:
                await self._deliver(delivery)

        await asyncio.gather(*(one(d) for d in due))
        return len(due)

    def _close_digests(self, now: dt.datetime) -> None:
        with self._pool.store() as store:
            store.close_digests((now - DIGEST_GRACE).isoformat())

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
            body = orjson.dumps(delivery_body(delivery))
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
