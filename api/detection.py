"""Detection after accepted reports, debounced: a burst of posts runs the detector once.

Each accepted batch names the scopes it touched. The scheduler collects them, waits a short
quiet interval, then runs the detector over all of them in a worker thread, rebuilds their
signal snapshots and wakes the alert feed. While it runs, new batches collect for the next run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable

from api.metrics import Metrics
from api.snapshots import SignalCache
from pvsignal.detection import Detector

log = logging.getLogger("api.detection")


class DetectionScheduler:
    def __init__(
        self,
        detector: Detector,
        cache: SignalCache,
        metrics: Metrics,
        *,
        debounce_seconds: float,
        on_alerts: Callable[[], None],
    ) -> None:
        self._detector, self._cache, self._metrics = detector, cache, metrics
        self._debounce, self._on_alerts = debounce_seconds, on_alerts
        self._pending: set[str] = set()
        self._running = False
        self._condition = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def notify(self, scopes: Iterable[str]) -> None:
        """Thread-safe: called from request threads after a batch was written."""
        scopes = set(scopes)
        if not scopes:
            return
        with self._condition:
            self._pending |= scopes
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is pending or running (tests, the demo)."""
        with self._condition:
            return self._condition.wait_for(
                lambda: not self._pending and not self._running, timeout
            )

    async def run(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        if self._pending:
            self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._debounce)  # let the burst finish
            with self._condition:
                scopes, self._pending = self._pending, set()
                self._running = True
            try:
                alerts = await asyncio.to_thread(self._detect, scopes)
                if alerts:
                    self._on_alerts()
            except Exception:  # a failed run must not stop detection for good
                log.exception("detection run failed", extra={"scopes": sorted(scopes)})
            finally:
                with self._condition:
                    self._running = False
                    self._condition.notify_all()

    def _detect(self, scopes: set[str]) -> int:
        started = time.perf_counter()
        alerts = self._detector.update(scopes)
        self._metrics.detector_run.observe(time.perf_counter() - started)
        for alert in alerts:
            self._metrics.alerts.labels(alert["transition"]).inc()
        self._cache.refresh(scopes)
        log.info(
            "detection run",
            extra={
                "scopes": sorted(scopes),
                "alerts": len(alerts),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return len(alerts)
