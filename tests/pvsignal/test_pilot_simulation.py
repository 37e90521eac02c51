"""The simulated Lecheng pilot (pvsignal.simulate.exposures): with a true rate ratio of 3 the
planted pair's sequential test signals and alerts once through the normal pipeline; with a
rate ratio of 1, over 200 streams, the test signals in at most alpha of them (± binomial
error), computed at the runner's level (``monitoring.advance``, month by month)."""

from __future__ import annotations

import math

import pytest

from detectors.sequential import rejection_probability, start
from pvsignal.detection import Detector
from pvsignal.exposures import ExposureIngestor
from pvsignal.ingest import Ingestor
from pvsignal.institutions import InstitutionRegistry
from pvsignal.monitoring import MEASURE, Monitor, Monitored, advance
from pvsignal.products import Registry
from pvsignal.rates import RateQuery, rates
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate.exposures import SCOPE, PilotConfig, pilot_stream, planted_counts
from pvsignal.store import open_store

STREAMS = 200


def test_the_planted_pair_signals_and_alerts_once_through_the_pipeline(tmp_path):
    stream = pilot_stream(PilotConfig(seed=1))
    config = ScopeConfig.model_validate(stream.scopes)
    store = open_store(f"sqlite:///{tmp_path}/pilot.db")
    store.save_products(stream.products)
    store.save_institutions(stream.institutions)
    exposures, reports = ExposureIngestor(store, config), Ingestor(store, config)
    pipeline = Monitored(Detector(store, config), Monitor(store, config))
    alerts = []
    for month in stream.months:  # what the service does as each month's records arrive
        touched = exposures.apply(
            [RawRecord(f"{month.period}:e{i}", line) for i, line in enumerate(month.exposures)]
        ).summary.touched_scopes
        touched |= reports.apply(
            [RawRecord(f"{month.period}:r{i}", line) for i, line in enumerate(month.reports)]
        ).summary.touched_scopes
        alerts += [a for a in pipeline.update(touched) if MEASURE in a["changes"]]
    assert [(a["scope"], a["product_id"], a["pt"], a["transition"]) for a in alerts] == [
        (SCOPE, *stream.planted, "new")
    ]
    [alert] = alerts
    outbox = [a for a in store.pending_alerts() if MEASURE in a["payload"]["changes"]]
    assert [a["alert_id"] for a in outbox] == [outbox[0]["alert_id"]]
    assert outbox[0]["payload"]["mah_id"] == "MAH-001"
    # The test's numbers: LLR(c, μ) = c ln(c/μ) − (c − μ) at the signal, over the critical value.
    c, mu = alert["statistics"]["observed"], alert["statistics"]["expected"]
    assert alert["statistics"]["llr"] == pytest.approx(c * math.log(c / mu) - (c - mu))
    assert alert["statistics"]["llr"] >= alert["statistics"]["critical_value"]
    assert c >= stream.config.min_events
    # The rates of the scope count the same: observed/expected near 3 for the planted pair.
    registry, institutions = Registry(stream.products), InstitutionRegistry(stream.institutions)
    rows = rates(store, RateQuery(config.all_scopes()[1]), registry, institutions)
    planted = next(r for r in rows if (r["product_id"], r["pt"]) == stream.planted)
    assert planted["cases"] == sum(stream.observed)
    assert planted["oe_lower"] > 1.0
    # A detector started afresh (a restart) leaves the sequential tests' states to the monitor.
    assert not [a for a in Detector(store, config).update({SCOPE}) if MEASURE in a["changes"]]
    store.close()


def _signals(rate_ratio: float) -> int:
    """How many of STREAMS simulated pilots signal for the planted pair, month by month."""
    signalled = 0
    for seed in range(STREAMS):
        config = PilotConfig(seed=1000 + seed, rate_ratio=rate_ratio)
        test = start(config.length, config.min_events, config.alpha)
        expected = observed = 0.0
        for mu, c in zip(*planted_counts(config), strict=True):
            expected, observed = expected + mu, observed + c
            test = advance(test, expected, int(observed)) or test
        signalled += test.signalled_at is not None
    return signalled


def test_with_no_excess_risk_the_test_signals_in_at_most_alpha_of_the_streams():
    config = PilotConfig()
    # Every stream reaches the surveillance length: the whole alpha is at stake.
    assert min(sum(planted_counts(PilotConfig(seed=s))[0]) for s in range(5)) > config.length
    signalled = _signals(1.0)
    error = 2.576 * math.sqrt(config.alpha * (1 - config.alpha) / STREAMS)  # 99 % binomial
    assert signalled / STREAMS <= config.alpha + error
    # Judged month by month, a test can only signal less than the continuous one would.
    cv = start(config.length, config.min_events, config.alpha).critical_value
    assert rejection_probability(config.length, config.min_events, cv) == pytest.approx(
        config.alpha, abs=1e-3
    )


def test_with_a_rate_ratio_of_3_nearly_every_stream_signals():
    assert _signals(3.0) / STREAMS >= 0.9
