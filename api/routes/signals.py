"""GET /v1/signals (filtered, sorted, paginated, or CSV) and one pair's detail and history."""

from __future__ import annotations

import functools
import io
import itertools
from typing import Annotated, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response, StreamingResponse

from api.auth import Principal
from api.deps import IsoTime, Reader, RegistryDep, RuntimeDep, StoreDep, named_events
from api.problems import NotFoundError
from api.query import (
    SORTABLE,
    SignalFilter,
    next_cursor,
    order_of,
    page,
    ranked,
    rows,
    selection,
    start_position,
)
from api.schemas import Measure, SignalDetail, SignalPage
from api.snapshots import STATISTICS, ScopeSnapshot
from api.tenancy import RegistrySnapshot
from pvsignal.detection import MEASURES
from pvsignal.export import (
    CSV_HEADER,
    EXPORT_CHUNK,
    csv_rows,
    export_table,
    in_order,
    quoted_labels,
    write_csv,
)
from pvsignal.memory import released_after
from pvsignal.products import Kind, Pathway

router = APIRouter(prefix="/v1/signals", tags=["signals"])

Status = Literal["new", "ongoing", "strengthened", "weakened", "closed", "open"]
# The CSV keeps the columns of `pvsignal analyze`; the event level its rows are at is here.
LEVEL_HEADER = "Pvsignal-Event-Level"
_SORTS = SORTABLE + tuple(f"-{name}" for name in SORTABLE if name != "product")
# A statistic ascending, or descending with '-' ("product" is the (product, PT) order).
Sort = Literal[_SORTS]  # type: ignore[valid-type]


def _snapshot(runtime: RuntimeDep, scope: str) -> ScopeSnapshot:
    snapshot = runtime.signals.get(scope)
    if snapshot is None:
        raise NotFoundError(f"scope {scope!r} has no counted pairs")
    return snapshot


@router.get(
    "",
    response_model=SignalPage,
    summary="List product–event pairs with their statistics and signal states",
    description="Every filter narrows the list; an MAH only ever sees its own products. "
    "`status` and `since` apply to `measure` if given, else to any measure; `measure` alone "
    "lists the pairs whose rule for that measure holds now. `format=csv` returns every "
    "matching pair with the columns of `pvsignal analyze`.",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        404: {"description": "no such scope"},
    },
)
def list_signals(
    principal: Reader,
    runtime: RuntimeDep,
    registry: RegistryDep,
    scope: Annotated[str, Query(max_length=63)] = "all",
    product_id: Annotated[list[str] | None, Query(max_length=100)] = None,
    mah_id: Annotated[str | None, Query(max_length=100)] = None,
    pathway: Pathway | None = None,
    kind: Kind | None = None,
    pt: Annotated[list[str] | None, Query(max_length=100)] = None,
    measure: Measure | None = None,
    status: Status | None = None,
    min_a: Annotated[int | None, Query(ge=0, le=2**31)] = None,
    since: IsoTime | None = None,
    sort: Sort = "-eb05",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=4096,
            pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
            description="the next_cursor of the previous page (opaque, signed by the server)",
        ),
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    snapshot = runtime.signals.get(scope)
    level = _level_of(runtime, scope)
    if snapshot is None:
        if scope not in {s.name for s in runtime.scopes.all_scopes()}:
            raise NotFoundError(f"no scope {scope!r}")
        return _empty(scope, format, level)  # configured, but nothing counted there yet
    query = SignalFilter(
        product_ids=tuple(product_id or ()),
        mah_id=mah_id,
        pathway=None if pathway is None else pathway.value,
        kind=None if kind is None else kind.value,
        pts=named_events(runtime, pt or ()),
        measure=measure,
        status=status,
        min_a=min_a,
        since=since,
    )
    mask = selection(snapshot, principal, registry, query)
    order = order_of(snapshot, sort)
    if format == "csv":
        return _csv(snapshot, ranked(order, np.flatnonzero(mask)), level)
    decoded = runtime.cursors.decode(cursor) if cursor is not None else None
    start = start_position(snapshot, order, sort, decoded)
    found = page(mask, order, start, limit)
    document = {
        "scope": scope,
        "level": level,
        "total": found.total,
        "signals": rows(snapshot, found.rows, registry),
        "next_cursor": next_cursor(runtime.cursors, snapshot, order, sort, found),
        "theta": snapshot.theta._asdict(),
        "fitted_at": snapshot.fit.get("fitted_at"),
    }
    return Response(orjson.dumps(document), media_type="application/json")


def _level_of(runtime: RuntimeDep, scope: str) -> str:
    """The event level the scope counts at (its pairs' ``pt`` are terms of that level)."""
    for configured in runtime.scopes.all_scopes():
        if configured.name == scope:
            return configured.level.value
    return "pt"


def _empty(scope: str, format: str, level: str) -> Response:
    """The page (or CSV, header only) of a configured scope that counts no pair yet."""
    if format == "csv":
        sink = io.BytesIO()
        write_csv(
            export_table(
                np.empty(0, object), np.empty(0, object), {name: np.empty(0) for name in STATISTICS}
            ),
            sink,
        )
        return Response(
            sink.getvalue(),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="signals-{scope}.csv"',
                LEVEL_HEADER: level,
            },
        )
    document = {
        "scope": scope,
        "level": level,
        "total": 0,
        "signals": [],
        "next_cursor": None,
        "theta": {},
        "fitted_at": None,
    }
    return Response(orjson.dumps(document), media_type="application/json")


def _csv(snapshot: ScopeSnapshot, indices: np.ndarray, level: str) -> StreamingResponse:
    """Every selected pair, the export's columns and number format, streamed in chunks
    (formatted on worker threads a few chunks ahead)."""
    products, events = quoted_labels(snapshot.products), quoted_labels(snapshot.events)

    def rows(part: np.ndarray) -> bytes:
        return csv_rows(
            products.take(snapshot.product_code[part]),
            events.take(snapshot.event_code[part]),
            {name: snapshot.statistics[name][part] for name in STATISTICS},
        ).to_pybytes()

    starts = range(0, indices.size, EXPORT_CHUNK)
    jobs = (functools.partial(rows, indices[start : start + EXPORT_CHUNK]) for start in starts)
    return StreamingResponse(
        released_after(itertools.chain([CSV_HEADER], in_order(jobs))),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="signals-{snapshot.scope}.csv"',
            LEVEL_HEADER: level,
        },
    )


@router.get(
    "/{scope}/{product_id}/{pt:path}",
    response_model=SignalDetail,
    summary="One pair: statistics, counts, state per measure, history and transitions",
)
def signal_detail(
    scope: str,
    product_id: str,
    pt: str,
    principal: Reader,
    runtime: RuntimeDep,
    registry: RegistryDep,
    store: StoreDep,
) -> Response:
    _visible_or_404(principal, registry, product_id, pt)
    snapshot = _snapshot(runtime, scope)
    i = snapshot.pair_index(product_id, pt)
    history = store.history(scope, product_id, pt)
    if i is None and not history:
        raise NotFoundError(f"no pair ({product_id!r}, {pt!r}) in scope {scope!r}")
    transitions = [  # each measure's change of each alert (an alert covers the pair)
        {"alert_id": alert["alert_id"], "at": alert["at"], "measure": m, "transition": t}
        for alert in store.alerts_of(
            products=None, scope=scope, product=product_id, event=pt, limit=10_000
        )
        for m, t in alert["changes"].items()
    ]
    row = rows(snapshot, np.array([i]), registry)[0] if i is not None else None
    document = {
        "level": _level_of(runtime, scope),
        "signal": row,
        "states": {m: snapshot.state_at(m, i) if i is not None else None for m in MEASURES},
        "history": history,
        "transitions": transitions,
        "theta": snapshot.theta._asdict(),
    }
    return Response(orjson.dumps(document), media_type="application/json")


def _visible_or_404(
    principal: Principal, registry: RegistrySnapshot, product_id: str, pt: str
) -> None:
    if not registry.can_see(principal, product_id):
        raise NotFoundError(f"no pair ({product_id!r}, {pt!r})")
