"""GET /v1/signals/{scope}/{product_id}/{pt}/trend: one pair over received periods.

Included before the signals router: the detail route's ``{pt:path}`` would take ``/trend``.
Tenancy as the pair's detail: an MAH reads only its own products' pairs; another MAH's pair
and an absent one are the same 404.
"""

from __future__ import annotations

import csv
import io
from typing import Literal

import numpy as np
import orjson
from fastapi import APIRouter
from starlette.responses import Response

from api.deps import Reader, RegistryDep, RuntimeDep, StoreDep
from api.problems import NotFoundError
from api.series_schemas import Trend as TrendModel
from pvsignal.trends import COUNTS, STATISTICS, Period, Trend, pair_trend

router = APIRouter(prefix="/v1/signals", tags=["signals"])


@router.get(
    "/{scope}/{product_id}/{pt:path}/trend",
    response_model=TrendModel,
    summary="One pair's trend: new and cumulative counts and every measure per received period",
    description="Per month, quarter or year from the scope's first received date to its last: "
    "the counts within the period (`new`, as in EVDAS's eRMR) and cumulative to its end "
    "(`total`), with every measure, its bounds and its flag computed from the cumulative counts "
    "(EBGM under the scope's current MGPS prior, named in `prior`). Reports without a received "
    "date form the last period, `unknown`. `format=csv` gives the same rows.",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def signal_trend(
    scope: str,
    product_id: str,
    pt: str,
    principal: Reader,
    runtime: RuntimeDep,
    registry: RegistryDep,
    store: StoreDep,
    period: Period = "month",
    format: Literal["json", "csv"] = "json",
) -> Response:
    missing = NotFoundError(f"no pair ({product_id!r}, {pt!r}) in scope {scope!r}")
    if not registry.can_see(principal, product_id):
        raise missing
    snapshot = runtime.signals.get(scope)
    if snapshot is None:
        raise missing
    counts = store.period_counts(scope, product_id, pt)
    if not counts.pair:
        raise missing
    trend = pair_trend(
        counts, period=period, theta=snapshot.theta, stratify=runtime.scopes.stratify
    )
    if trend is None:
        raise missing
    if format == "csv":
        return Response(
            _csv(trend),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="trend-{scope}.csv"'},
        )
    document = {
        "scope": scope,
        "product_id": product_id,
        "pt": pt,
        "period": period,
        "prior": {
            "theta": snapshot.theta._asdict(),
            "fitted_at": snapshot.fit.get("fitted_at"),
            "theta_source": snapshot.fit.get("theta_source"),
        },
        "points": trend.rows(),
    }
    return Response(orjson.dumps(document), media_type="application/json")


def _csv(trend: Trend) -> str:
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(["period", *(f"new_{name}" for name in COUNTS), *STATISTICS])
    for i, label in enumerate(trend.labels):
        writer.writerow(
            [
                label,
                *(int(trend.new[name][i]) for name in COUNTS),
                *(_cell(trend.statistics[name][i]) for name in STATISTICS),
            ]
        )
    return sink.getvalue()


def _cell(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    number = float(value)  # type: ignore[arg-type]
    if number != number:
        return ""
    return repr(number) if not number.is_integer() else str(int(number))
