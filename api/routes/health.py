"""Probes and metrics: the only routes that answer without credentials."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from api.deps import RuntimeDep
from api.problems import UnavailableError
from api.runtime import Runtime
from api.schemas import Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Liveness, summary="The process is alive")
def livez() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The store answers (and, with Kafka, the consumers' offsets are known), and the "
    "start's warm-up is done",
    responses={503: {"description": "not ready"}},
)
async def readyz(runtime: RuntimeDep) -> Readiness:
    return await run_in_threadpool(_readiness, runtime)


# How long a readiness check waits for the start's warm-up before it answers "not ready".
WARM_UP_WAIT_SECONDS = 20.0


def _readiness(runtime: Runtime) -> Readiness:
    if not runtime.warmed.wait(WARM_UP_WAIT_SECONDS):
        raise UnavailableError("the dashboard's first pages are being prepared")
    with runtime.pool.store() as store:
        if not store.ping():
            raise UnavailableError("the store does not answer")
        kafka = _kafka(runtime, store.offsets(runtime.settings.kafka_topic))
    return Readiness(status="ready", store="ok", kafka=kafka)


def _kafka(runtime: Runtime, offsets: dict[int, int]) -> dict[str, Any] | None:
    settings = runtime.settings
    if settings.kafka_bootstrap is None:
        return None
    lag = runtime.lag_probe(offsets) if runtime.lag_probe is not None else None
    return {
        "topic": settings.kafka_topic,
        "next_offsets": {str(p): o for p, o in sorted(offsets.items())},
        "lag": None if lag is None else {str(p): n for p, n in sorted(lag.items())},
        "total_lag": None if lag is None else sum(lag.values()),
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    # The app's metrics exist before its lifespan starts: no runtime needed.
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
