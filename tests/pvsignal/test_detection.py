"""Signal lifecycle, hysteresis, alerts outbox and history."""

import json
from urllib.parse import quote

import pytest

from pvsignal.cli_store import reader_for
from pvsignal.detection import (
    SIGNIFICANCE,
    DetectionConfig,
    Detector,
    SignalState,
    next_state,
    signal_link,
)
from pvsignal.ingest import Ingestor
from pvsignal.products import load_products
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate import SimulationConfig, sidecar_paths, write_simulation

CONFIG = DetectionConfig(close_after=3, change_log2=1.0)


def _run(sequence, measure="ebgm"):
    """Feed (flagged, value) evaluations; return the alerting transitions made and the states
    passed through."""
    state, made, states = None, [], []
    for step, (flagged, value) in enumerate(sequence):
        state, transition = next_state(state, flagged, value, measure, CONFIG, str(step))
        if transition:
            made.append(transition)
        states.append(state.status)
    return made, state, states


def test_lifecycle_new_ongoing_strengthened_weakened_closed():
    made, state, states = _run(
        [(True, 2), (True, 2.2), (True, 5), (True, 2), (False, 1), (False, 1), (False, 1)]
    )
    # ongoing is a state the signal passes through, not an alert.
    assert states[:2] == ["new", "ongoing"]
    assert made == ["new", "strengthened", "weakened", "closed"]
    assert state.status == "closed"


def test_a_pair_flickering_at_the_threshold_alerts_once():
    flicker = [(True, 2.0), (False, 1.9)] * 20
    made, state, _ = _run(flicker)
    assert made == ["new"]
    assert state.status == "ongoing"


def test_an_infinite_level_that_stays_infinite_is_no_change():
    # PRR with no other product reporting the event: +inf now and at the last transition.
    made, _, _ = _run([(True, float("inf")), (True, float("inf")), (True, float("inf"))], "prr")
    assert made == ["new"]


def test_a_closed_signal_can_open_again():
    made, _, _ = _run([(True, 3), (False, 1), (False, 1), (False, 1), (True, 3)])
    assert made == ["new", "closed", "new"]


def test_the_most_significant_change_names_the_alert():
    assert min(["closed", "weakened", "new"], key=SIGNIFICANCE.index) == "new"
    assert min(["closed", "strengthened"], key=SIGNIFICANCE.index) == "strengthened"
    assert signal_link("all", "unregistered:x/y", "A/B c") == (
        "/v1/signals/all/unregistered%3Ax%2Fy/A%2FB%20c"
    )


def test_ic_levels_are_on_their_own_scale():
    state = SignalState("ongoing", "0", 0.5)
    _, transition = next_state(state, True, 1.6, "ic", CONFIG, "1")
    assert transition == "strengthened"


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "reports.jsonl"
    write_simulation(SimulationConfig(reports=12_000, seed=11), out)
    products, signals, _ = sidecar_paths(out)
    return out, load_products(products), json.loads(signals.read_text())


def test_planted_signal_raises_exactly_one_new_alert(simulation, new_store):
    path, products, signals = simulation
    store = new_store("sqlite")
    store.save_products(products)
    ingestor = Ingestor(store, ScopeConfig(), batch_size=1_000)
    detector = Detector(store, ScopeConfig(), DetectionConfig(refit_cases=4_000))
    records = list(reader_for("jsonl")([path]))
    for start in range(0, len(records), 1_000):
        touched = ingestor.apply(records[start : start + 1_000]).summary.touched_scopes
        detector.update(touched)
    pilot = signals[0]
    alerts = store.alerts(product=pilot["product_id"], event=pilot["pt"], limit=10_000)
    prr_transitions = [a["changes"]["prr"] for a in alerts if "prr" in a["changes"]]
    assert prr_transitions.count("new") == 1, prr_transitions
    first = alerts[0]
    assert first["transition"] == "new" and first["mah_id"] is not None
    assert first["statistics"]["a"] >= 3
    # One alert per pair and run, carrying every measure and the product's identity.
    assert set(first["measures"]) == {"prr", "ror", "ic", "ebgm"}
    assert set(first["changes"]) <= set(first["measures"])
    assert all(first["measures"][m]["status"] == t for m, t in first["changes"].items())
    assert first["product"]["names"] and first["pathway"] is not None
    assert first["link"] == f"/v1/signals/all/{pilot['product_id']}/" + quote(pilot["pt"], safe="")
    every = store.alerts(limit=100_000)
    assert "ongoing" not in {a["transition"] for a in every}
    runs = [(a["at"], a["scope"], a["product_id"], a["pt"]) for a in every]
    assert len(runs) == len(set(runs)), "one alert per pair and detection run"
    # The same state never alerts twice: an update with nothing new adds no alert.
    before = len(store.alerts(limit=100_000))
    assert detector.update(["all"]) == []
    assert len(store.alerts(limit=100_000)) == before
    # The pair's trend is kept, and every fit was recorded with its convergence report.
    history = store.history("all", pilot["product_id"], pilot["pt"])
    assert history and history[-1]["a"] == alerts[-1]["statistics"]["a"]
    fits = store.fits("all")
    assert len(fits) >= 2 and fits[-1]["warm_start"] and fits[-1]["converged"]


def test_outbox_publication_marks(new_store):
    store = new_store("sqlite")
    alert = {
        "product_id": "P",
        "pt": "E",
        "changes": {"prr": "new"},
        "transition": "new",
        "mah_id": "M",
        "scope": "all",
    }
    store.write_detection("all", {}, [], [alert, {**alert, "pt": "F"}], "now")
    pending = store.pending_alerts()
    assert [p["payload"]["pt"] for p in pending] == ["E", "F"]
    store.mark_alerts_published([pending[0]["alert_id"]])
    assert [p["payload"]["pt"] for p in store.pending_alerts()] == ["F"]


def test_the_registry_is_reloaded_only_after_it_changed(simulation, new_store):
    _, products, _ = simulation
    store = new_store("sqlite")
    store.save_products(products)
    detector = Detector(store, ScopeConfig())
    first = detector._current_registry()
    assert detector._current_registry() is first  # unchanged store: the cached registry
    changed = products[0].model_copy(update={"mah_id": "MAH-NEW"})
    store.save_products([changed])
    assert detector._current_registry().get(changed.product_id).mah_id == "MAH-NEW"


def test_a_background_refit_is_adopted_by_a_later_update(simulation, new_store):
    path, products, _ = simulation
    store = new_store("sqlite")
    store.save_products(products)
    ingestor = Ingestor(store, ScopeConfig())
    config = DetectionConfig(refit_cases=1_000, refit_in_background=True)
    detector = Detector(store, ScopeConfig(), config)
    records = list(reader_for("jsonl")([path]))
    ingestor.apply(records[:4_000])
    detector.update(["all"])
    assert len(store.fits("all")) == 1  # the first fit is waited for: there is no prior yet
    first = detector._theta["all"]
    ingestor.apply(records[4_000:8_000])
    detector.update(["all"])  # the refit is due: it starts, this update keeps the prior
    assert detector._theta["all"] == first and len(store.fits("all")) == 1
    detector._fitting["all"].result(timeout=60)
    detector.update(["all"])
    fits = store.fits("all")
    assert len(fits) == 2 and fits[-1]["warm_start"] and fits[-1]["cases"] > fits[0]["cases"]
    assert detector._theta["all"] != first


def test_reports_of_other_pairs_do_not_open_a_signal(simulation, new_store):
    """Every report moves every pair's expected count a little; a pair at a threshold must not
    open because of reports that are not about it (only pairs with new cases open)."""
    path, products, _ = simulation
    store = new_store("sqlite")
    store.save_products(products)
    ingestor = Ingestor(store, ScopeConfig())
    detector = Detector(store, ScopeConfig())
    records = list(reader_for("jsonl")([path]))
    detector.update(ingestor.apply(records).summary.touched_scopes)
    touched = ingestor.apply(_unrelated("UNRELATED", 2)).summary.touched_scopes
    assert detector.update(touched) == []
    # Only the pair that received cases may open.
    raised = detector.update(ingestor.apply(_unrelated("MORE", 6)).summary.touched_scopes)
    assert {(a["product_id"], a["pt"]) for a in raised} <= {UNRELATED_PAIR}


UNRELATED_PAIR = ("unregistered:an unrelated product", "An unrelated reaction")


def _unrelated(prefix, n):
    return [
        RawRecord(
            f"{prefix}:{i}",
            json.dumps(
                {
                    "case_id": f"{prefix}-{i}",
                    "report_id": f"{prefix}-{i}",
                    "version": 1,
                    "received": "2026-03-01",
                    "products": [{"name": "an unrelated product", "role": "suspect"}],
                    "reactions": [{"pt": UNRELATED_PAIR[1]}],
                }
            ),
        )
        for i in range(n)
    ]
