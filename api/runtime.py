"""The services one running app holds, built when its lifespan starts and closed when it ends.

A plain container: each service does one job (see its module). Connections are separate per
writer (ingest, detector) and pooled for readers, so a long detection never blocks a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api.auth import Authenticator
from api.detection import DetectionScheduler
from api.events import AlertFeed, Broker
from api.exposures import ExposureIntake
from api.intake import Limits, ReportIntake
from api.metrics import Metrics
from api.pool import StorePool
from api.query import CursorSigner
from api.snapshots import SignalCache
from api.tenancy import RegistryCache
from api.webhooks import DeliveryWorker, SecretBox
from pvsignal.detection import DetectionConfig, Detector
from pvsignal.monitoring import Monitor, Monitored
from pvsignal.rebuild import effective_scopes
from pvsignal.scopes import ScopeConfig
from pvsignal.scoring import ScoringConfig
from pvsignal.settings import Settings
from pvsignal.store import SqlStore, open_store

# Given offsets per partition, the lag per partition (Kafka's end offsets are the streams
# package's business; it may hand the app a probe).
LagProbe = Callable[[dict[int, int]], dict[int, int]]


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    pool: StorePool
    scopes: ScopeConfig
    registry: RegistryCache
    signals: SignalCache
    intake: ReportIntake
    exposures: ExposureIntake
    broker: Broker
    feed: AlertFeed
    webhooks: DeliveryWorker
    authenticator: Authenticator
    cursors: CursorSigner
    secrets: SecretBox
    scheduler: DetectionScheduler | None = None
    lag_probe: LagProbe | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # Set once what the process prepares at start for its first pages is ready (api.ui.warm_ui):
    # /readyz answers only then, so that no first user waits for it.
    warmed: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Start the background loops on the running event loop."""
        loops = [self.feed.run(), self.webhooks.run()]
        if self.scheduler is not None:
            loops.append(self.scheduler.run())
        self.tasks = [asyncio.create_task(loop) for loop in loops]
        self.signals.warm(self.known_scopes)

    @property
    def known_scopes(self) -> list[str]:
        with self.pool.store() as store:
            return store.scopes()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.broker.close()
        self.signals.close()
        self.intake.close()
        self.exposures.close()
        self.pool.close()


def build_runtime(settings: Settings, metrics: Metrics, lag_probe: LagProbe | None) -> Runtime:
    """Open the stores and wire the services (blocking: run it in a thread)."""
    secret = settings.secret_key.get_secret_value().encode()
    pool = StorePool(settings.store_url, settings.store_pool_size)
    with pool.store() as store:  # migrates once, before anything else opens the store
        scopes = effective_scopes(store, settings.scope_config)
    registry = RegistryCache(pool, settings.registry_freshness_seconds)
    signals = SignalCache(
        pool,
        stratify=scopes.stratify,
        scoring=ScoringConfig(),
        freshness_seconds=settings.signals_freshness_seconds,
        metrics=metrics,
        scopes=scopes,
    )
    secrets = SecretBox(secret)
    webhooks = DeliveryWorker(pool, secrets, settings, metrics)
    broker = Broker(registry, metrics)
    feed = AlertFeed(pool, registry, broker, settings.alerts_poll_seconds, webhooks.wake)
    scheduler = None
    if settings.detect_in_process:
        scheduler = DetectionScheduler(
            _monitored_detector(open_store(settings.store_url), scopes, settings),
            signals,
            metrics,
            debounce_seconds=settings.detect_debounce_seconds,
            on_alerts=feed.wake,
        )
    intake = ReportIntake(
        open_store(settings.store_url),
        scopes,
        registry,
        metrics,
        limits=Limits(settings.max_batch_records, settings.max_record_bytes),
        on_counts_changed=scheduler.notify if scheduler is not None else lambda _: None,
    )
    exposures = ExposureIntake(
        open_store(settings.store_url),
        scopes,
        registry,
        limits=Limits(settings.max_batch_records, settings.max_record_bytes),
        on_exposures_changed=scheduler.notify if scheduler is not None else lambda _: None,
    )
    return Runtime(
        settings=settings,
        metrics=metrics,
        pool=pool,
        scopes=scopes,
        registry=registry,
        signals=signals,
        intake=intake,
        exposures=exposures,
        broker=broker,
        feed=feed,
        webhooks=webhooks,
        authenticator=Authenticator(settings, pool),
        cursors=CursorSigner(secret),
        secrets=secrets,
        scheduler=scheduler,
        lag_probe=lag_probe,
    )


def _monitored_detector(store: SqlStore, scopes: ScopeConfig, settings: Settings) -> Monitored:
    """The disproportionality detector, then the scopes' sequential tests (active
    monitoring), on one store connection."""
    config = DetectionConfig(
        refit_in_background=True,  # a refit never delays alerts
        review_deadline_days=dict(settings.review_deadline_days),
    )
    return Monitored(Detector(store, scopes, config), Monitor(store, scopes, config))
