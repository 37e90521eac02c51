"""`pvsignal serve --demo`: a store a newcomer can explore at once.

Simulated reports (with follow-ups, nullifications, duplicates and planted signals) and their
product registry, with pilot-import products, are ingested and detection is run, so signals and
alerts exist before the first request. An active-monitoring pilot (pvsignal.simulate.exposures:
every patient treated with three Boao Lecheng products registered, a planted excess risk) adds
its exposures, cases and sequential tests, in a scope of its own (``lecheng-active``). A key is
made for each role: a regulator, the MAH of the first planted signal, a Lecheng hospital and an
admin, to show what each one may do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.auth import Role, issue_key
from pvsignal.detection import Detector
from pvsignal.exposures import ExposureIngestor
from pvsignal.ingest import Ingestor, IngestSummary
from pvsignal.monitoring import Monitor, Monitored
from pvsignal.priors import CAERS_THETA
from pvsignal.readers import RawRecord
from pvsignal.rebuild import SCOPES_SETTING, effective_scopes
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.simulate.exposures import PilotConfig, PilotStream, pilot_stream, scope_config
from pvsignal.store import SqlStore, open_store

DEMO_URL = "sqlite:///pvsignal-demo.db"
DEMO_HOSPITAL = "LC-HOSP-01"  # a Boao Lecheng hospital of the simulation
# The pilot pathways as scopes of their own, each a few hundred reports: too few for a prior of
# their own, so they borrow all's. The simulated background has no spread for a fit to find
# (all's own fit runs to a bound), so all is given a national database's prior, as a
# deployment without national data of its own would do.
DEMO_SCOPES = ScopeConfig.model_validate(
    {
        "scopes": [
            {
                "name": "all",
                "description": "every report; prior: openEBGM's fit on FDA CAERS",
                "prior": {"source": "given", "theta": CAERS_THETA._asdict()},
            },
            *(
                {"name": name, "filter": {"pathways": [pathway]}}
                for name, pathway in (
                    ("lecheng", "lecheng_special_import"),
                    ("gba-connect", "gba_hkmacao_connect"),
                    ("rare-disease", "rare_disease_pilot"),
                )
            ),
            *scope_config(PilotConfig())["scopes"],  # lecheng-active, with its monitoring
        ]
    }
)


@dataclass(frozen=True)
class DemoStore:
    reports: int
    summary: IngestSummary
    alerts: int
    regulator_key: str
    mah_key: str | None
    mah_id: str | None
    hospital_key: str
    hospital_id: str
    admin_key: str
    planted: list[tuple[str, str]]
    monitored: tuple[str, str] = ("", "")  # the pilot's planted (product id, PT)


def load_demo(url: str, *, reports: int = 20_000, seed: int = 7) -> DemoStore:
    """Simulate, ingest and detect into the store at ``url``; make two keys."""
    simulation = simulate(SimulationConfig(reports=reports, seed=seed))
    store = open_store(url)
    try:
        pilot = pilot_stream(PilotConfig())
        store.save_products([*simulation.products, *pilot.products])
        store.save_institutions(pilot.institutions)
        if store.setting(SCOPES_SETTING) is None:  # a store of its own keeps its scopes
            store.set_setting(SCOPES_SETTING, DEMO_SCOPES.model_dump_json())
        scopes = effective_scopes(store, None)
        ingestor = Ingestor(store, scopes, source="demo")
        summary = IngestSummary()
        for number, chunk in enumerate(simulation.chunks()):
            records = [
                RawRecord(f"demo:{number * len(chunk) + i + 1}", line)
                for i, line in enumerate(chunk)
            ]
            summary.merge(ingestor.apply(records).summary)
        monitor = Monitor(store, scopes)
        alerts = _load_pilot(store, scopes, ingestor, monitor, pilot, summary)
        pipeline = Monitored(Detector(store, scopes), monitor)
        alerts += pipeline.update(summary.touched_scopes or {"all"})
        regulator_key, _ = issue_key(store, Role.regulator, None, "demo regulator")
        registry = {p.product_id: p for p in simulation.products}
        first = simulation.signals[0] if simulation.signals else None
        mah_id = registry[first.product_id].mah_id if first else None
        mah_key = issue_key(store, Role.mah, mah_id, "demo MAH")[0] if mah_id else None
        hospital_key, _ = issue_key(store, Role.hospital, DEMO_HOSPITAL, "demo hospital")
        admin_key, _ = issue_key(store, Role.admin, None, "demo admin")
    finally:
        store.close()
    return DemoStore(
        reports=reports,
        summary=summary,
        alerts=len(alerts),
        regulator_key=regulator_key,
        mah_key=mah_key,
        mah_id=mah_id,
        hospital_key=hospital_key,
        hospital_id=DEMO_HOSPITAL,
        admin_key=admin_key,
        planted=[(s.product_id, s.pt) for s in simulation.signals],
        monitored=pilot.planted,
    )


def _load_pilot(
    store: SqlStore,
    scopes: ScopeConfig,
    reports: Ingestor,
    monitor: Monitor,
    pilot: PilotStream,
    summary: IngestSummary,
) -> list[dict[str, Any]]:
    """The pilot's exposures and cases, month by month, each month's sequential tests brought
    up to date as the service would (its registry entries are saved); the alerts raised."""
    exposures = ExposureIngestor(store, scopes, source="demo-pilot")
    alerts: list[dict[str, Any]] = []
    for month in pilot.months:
        touched: set[str] = set()
        for kind, ingest, lines in (
            ("e", exposures, month.exposures),
            ("r", reports, month.reports),
        ):
            located = [
                RawRecord(f"pilot:{month.period}:{kind}{i}", line) for i, line in enumerate(lines)
            ]
            applied = ingest.apply(located).summary
            touched |= applied.touched_scopes
            summary.merge(applied)
        alerts += monitor.update(touched)
    return alerts
