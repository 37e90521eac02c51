"""Alerts: the past ones (GET /v1/alerts) and new ones live (GET /v1/alerts/stream, SSE)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.auth import Principal
from api.deps import IsoTime, Reader, RegistryDep, RuntimeDep, StoreDep, named_events
from api.events import StreamFilter, visible_alert
from api.runtime import Runtime
from api.schemas import AlertList, AlertMeasureName, AlertTransition

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
_REPLAY_LIMIT = 1000


@router.get(
    "",
    response_model=AlertList,
    summary="Past alerts, oldest first (or newest first)",
    description="One alert per (scope, product, PT) change of a detection run: `transition` "
    "is the most significant change (new > strengthened > weakened > closed), `changes` names "
    "each measure that moved, `measures` every measure's state. `ongoing` is a state, never an "
    "alert. Oldest first, page on with `after=next_after`; with `order=newest`, newest first, "
    "page back with `before=next_before`.",
)
def list_alerts(
    principal: Reader,
    store: StoreDep,
    registry: RegistryDep,
    scope: Annotated[str | None, Query(max_length=63)] = None,
    product_id: Annotated[str | None, Query(max_length=200)] = None,
    pt: Annotated[str | None, Query(max_length=500)] = None,
    measure: Annotated[
        AlertMeasureName | None, Query(description="alerts in which this measure moved")
    ] = None,
    transition: Annotated[
        AlertTransition | None,
        Query(description="alerts in which a measure (`measure`, if given) made this transition"),
    ] = None,
    since: Annotated[
        IsoTime | None,
        Query(
            description="alerts raised at or after this ISO 8601 time (without a UTC offset: "
            "UTC), e.g. 2026-11-30T08:00:00Z"
        ),
    ] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="alerts after this id")] = 0,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="alerts before this id")
    ] = None,
    order: Annotated[
        Literal["oldest", "newest"], Query(description="oldest first (default) or newest first")
    ] = "oldest",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    found = store.alerts_of(
        products=registry.visible_products(principal),
        scope=scope,
        product=product_id,
        event=None if pt is None else store.named_event(pt),
        measure=measure,
        transition=transition,
        since=None if since is None else _utc(since),
        after=after,
        before=before,
        newest_first=order == "newest",
        limit=limit,
    )
    following = found[-1]["alert_id"] if len(found) == limit else None
    if order == "newest":
        return AlertList.model_validate(
            {"alerts": found, "next_after": None, "next_before": following}
        )
    return AlertList.model_validate({"alerts": found, "next_after": following})


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    summary="New alerts as Server-Sent Events",
    description="Each event is `event: alert`, `id: <alert_id>`, `data: <alert JSON>`. Send "
    "`Last-Event-ID` to resume after a disconnect (missed alerts are replayed from the store). "
    "A `: ping` comment is sent every 15 s of silence to keep proxies from closing the stream. "
    "`max_events` ends the stream after that many alerts.",
)
async def stream_alerts(
    principal: Reader,
    runtime: RuntimeDep,
    scope: Annotated[str | None, Query(max_length=63)] = None,
    product_id: Annotated[str | None, Query(max_length=200)] = None,
    pt: Annotated[str | None, Query(max_length=500)] = None,
    measure: AlertMeasureName | None = None,
    max_events: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20, pattern=r"^\d+$")] = None,
) -> AsyncIterator[ServerSentEvent]:
    if pt is not None:
        (pt,) = await run_in_threadpool(named_events, runtime, [pt])
    filter_ = StreamFilter(scope, product_id, pt, measure)
    subscriber = runtime.broker.subscribe(principal, filter_)
    sent = 0
    try:
        if last_event_id is not None:
            replay = await run_in_threadpool(
                _replay, runtime, principal, filter_, int(last_event_id)
            )
            for alert in replay[: max_events or None]:
                yield _event(alert)
                sent += 1
        while max_events is None or sent < max_events:
            alert = await subscriber.queue.get()  # FastAPI sends keep-alive pings meanwhile
            if alert is None:
                return  # cut off (too slow, or shutting down): resume with Last-Event-ID
            yield _event(alert)
            sent += 1
    finally:
        runtime.broker.unsubscribe(subscriber)


def _utc(moment: dt.datetime) -> str:
    """The moment as the store writes alert times (UTC, ``isoformat``), so that they compare
    as strings."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


def _replay(
    runtime: Runtime, principal: Principal, filter_: StreamFilter, after: int
) -> list[dict[str, Any]]:
    registry = runtime.registry.current()
    with runtime.pool.store() as store:
        found = store.alerts_of(
            products=registry.visible_products(principal),
            scope=filter_.scope,
            product=filter_.product_id,
            event=filter_.pt,
            measure=filter_.measure,
            after=after,
            limit=_REPLAY_LIMIT,
        )
    return [a for a in found if visible_alert(principal, registry, a)]


def _event(alert: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=alert, event="alert", id=str(alert["alert_id"]))
