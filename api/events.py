"""The alerts outbox, read once per new alert and fanned out: webhook deliveries (or, for digest
subscriptions, digest items) are queued in the store with the feed's cursor, atomically, and
live streams are fed in memory.

The feed keeps its own cursor in ``outbox_cursors``; it never marks alerts published, which is
the Kafka publisher's mark. Each stream subscriber holds a bounded queue; one that falls behind
is cut off and resumes from the store with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api.auth import Principal
from api.metrics import Metrics
from api.pool import StorePool
from api.tenancy import RegistryCache, RegistrySnapshot
from api.webhooks import matches

WEBHOOK_CURSOR = "api.webhooks"
_PAGE = 1000
log = logging.getLogger("api.events")


@dataclass(frozen=True)
class StreamFilter:
    scope: str | None = None
    product_id: str | None = None
    pt: str | None = None
    measure: str | None = None

    def admits(self, alert: dict[str, Any]) -> bool:
        """Does the alert match? ``measure``: that measure moved in it."""
        if self.measure is not None and self.measure not in (alert.get("changes") or {}):
            return False
        return all(
            wanted is None or alert.get(key) == wanted
            for key, wanted in (
                ("scope", self.scope),
                ("product_id", self.product_id),
                ("pt", self.pt),
            )
        )


def visible_alert(principal: Principal, registry: RegistrySnapshot, alert: dict[str, Any]) -> bool:
    return registry.can_see(principal, alert.get("product_id", ""))


@dataclass(eq=False)
class Subscriber:
    principal: Principal
    filter: StreamFilter
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=1000)
    )
    overflowed: bool = False


class Broker:
    """Live alert streams: each subscriber gets the alerts it may see and asked for."""

    def __init__(self, registry: RegistryCache, metrics: Metrics) -> None:
        self._registry, self._metrics = registry, metrics
        self._subscribers: set[Subscriber] = set()

    def subscribe(self, principal: Principal, filter_: StreamFilter) -> Subscriber:
        subscriber = Subscriber(principal, filter_)
        self._subscribers.add(subscriber)
        self._metrics.sse_clients.set(len(self._subscribers))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        self._metrics.sse_clients.set(len(self._subscribers))

    def publish(self, alerts: list[dict[str, Any]], registry: RegistrySnapshot) -> None:
        for subscriber in list(self._subscribers):
            for alert in alerts:
                if subscriber.overflowed:
                    break
                if visible_alert(
                    subscriber.principal, registry, alert
                ) and subscriber.filter.admits(alert):
                    try:
                        subscriber.queue.put_nowait(alert)
                    except asyncio.QueueFull:
                        subscriber.overflowed = True
                        subscriber.queue.get_nowait()
                        subscriber.queue.put_nowait(None)  # end of stream: resume from the store

    def close(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.queue.put_nowait(None)


class AlertFeed:
    """Polls the outbox (or is woken by the detector) and fans new alerts out."""

    def __init__(
        self,
        pool: StorePool,
        registry: RegistryCache,
        broker: Broker,
        poll_seconds: float,
        on_queued: Callable[[], None],
    ) -> None:
        self._pool, self._registry, self._broker = pool, registry, broker
        self._poll, self._on_queued = poll_seconds, on_queued
        self._wake = asyncio.Event()
        self._stream_cursor: int | None = None
        self.rounds = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                if await self.step() >= _PAGE:
                    continue  # more are waiting
            except Exception:  # a failing store must not end the feed
                log.exception("alert fan-out failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    async def step(self) -> int:
        """One round: queue deliveries for new alerts, publish them to live streams."""
        read, fresh, queued, registry = await asyncio.to_thread(self._fan_out)
        if fresh:
            self._broker.publish(fresh, registry)
        if queued:
            self._on_queued()
        self.rounds += 1
        return read

    def _fan_out(self) -> tuple[int, list[dict[str, Any]], int, RegistrySnapshot]:
        """(alerts read, those new to live streams, deliveries queued, the registry used)."""
        registry = self._registry.current()
        with self._pool.store() as store:
            latest = store.latest_alert_id()
            if self._stream_cursor is None:
                self._stream_cursor = latest  # streams get what is raised from now on
            webhook_cursor = store.outbox_cursor(WEBHOOK_CURSOR)
            if webhook_cursor is None:
                webhook_cursor = latest  # subscriptions only get alerts raised after start
                store.fan_out(WEBHOOK_CURSOR, latest, [])
            start = min(webhook_cursor, self._stream_cursor)
            alerts = store.alerts_after(start, _PAGE)
            if not alerts:
                return 0, [], 0, registry
            subscriptions = store.subscriptions()
            matched = [
                (s, a["alert_id"])
                for a in alerts
                if a["alert_id"] > webhook_cursor
                for s in subscriptions
                if matches(s, a, registry)
            ]
            # One delivery per alert, or (digest subscriptions) an item of the period's digest.
            deliveries = [(s["subscription_id"], a) for s, a in matched if not s.get("digest")]
            items = [(s["subscription_id"], a) for s, a in matched if s.get("digest")]
            through = alerts[-1]["alert_id"]
            store.fan_out(WEBHOOK_CURSOR, max(through, webhook_cursor), deliveries, items)
        fresh = [a for a in alerts if a["alert_id"] > self._stream_cursor]
        self._stream_cursor = max(self._stream_cursor, through)
        return len(alerts), fresh, len(deliveries), registry
