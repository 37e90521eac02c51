"""Incremental detection equals a full rescoring, after every batch of any stream.

The reference is a Detector with ``incremental=False``: every run reads the scope's counts
whole from the store and evaluates every candidate pair. The detector under test keeps the
counts in memory, applies only what batches changed and evaluates only what its bounds
(pvsignal.drift) cannot certify steady; ``sweep_share=1`` keeps it from falling back to a
full sweep because much is uncertain, so the bounds decide. Both run over their own store fed
the same stream (new cases, follow-ups that change products and reactions, nullifications:
counts move up and down), with the same clock, and must agree exactly — alerts, stored
states, history — after every batch.
"""

from __future__ import annotations

import json
from concurrent.futures import Future

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from detectors.mgps import Hyperparameters, posterior
from pvsignal import drift
from pvsignal.cli import main
from pvsignal.detection import DetectionConfig, Detector
from pvsignal.errors import LeaseLostError
from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig

# Skewed vocabularies: P0 and E0 are common, so some pairs cross thresholds both ways.
PRODUCTS = ["P0", "P0", "P0", "P1", "P1", "P2", "P3", "P4"]
EVENTS = ["E0", "E0", "E1", "E1", "E2", "E3", "E4", "E5"]
CASES = [f"C{i}" for i in range(40)]


@st.composite
def streams(draw):
    """Batches of case versions: a case's next version replaces its previous one."""
    versions: dict[str, int] = {}
    stream = []
    for _ in range(draw(st.integers(2, 7))):
        batch = []
        for _ in range(draw(st.integers(1, 30))):
            case = draw(st.sampled_from(CASES))
            versions[case] = versions.get(case, 0) + 1
            products = draw(st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=2))
            # An associated pair: P1 reports tend to name E1.
            events = ["E1"] if "P1" in products and draw(st.booleans()) else []
            events += draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=2))
            batch.append(
                {
                    "case_id": case,
                    "report_id": f"{case}-{versions[case]}",
                    "version": versions[case],
                    "nullified": draw(st.integers(0, 12)) == 0,
                    "received": "2026-03-01",
                    "patient": {"sex": draw(st.sampled_from([None, "F", "M"]))},
                    "products": [{"name": p, "role": "suspect"} for p in products],
                    "reactions": [{"pt": e} for e in events],
                }
            )
        # Reports about other products and events: they move N and nothing else, so open
        # signals drift across their bands without a case of their own.
        for k in range(draw(st.integers(0, 40))):
            filler = f"F{len(stream)}-{k}"
            batch.append(
                {
                    "case_id": filler,
                    "report_id": filler,
                    "version": 1,
                    "received": "2026-03-01",
                    "products": [{"name": f"Q{k % 3}", "role": "suspect"}],
                    "reactions": [{"pt": f"R{k % 4}"}],
                }
            )
        stream.append(batch)
    return stream


def _records(batch, offset):
    return [RawRecord(f"s:{offset + k}", json.dumps(r)) for k, r in enumerate(batch)]


def _history(store):
    return store._query(
        "SELECT scope, product, event, at, a, statistics FROM signal_history ORDER BY id"
    )


class _QuickFit:
    """A stand-in for the MGPS fit (seconds per fit): a prior that depends on the data, so
    that refits change θ (and force a full sweep) as real ones do."""

    def __init__(self, a, expected, starts=None, squashing=None):
        self.theta = Hyperparameters(0.2 + 0.01 * (a.size % 7), 0.1, 2.0, 4.0, 1 / 3)

    def report(self):
        return {"theta": self.theta._asdict()}


@pytest.fixture(autouse=True)
def _quick_fits(monkeypatch):
    monkeypatch.setattr("pvsignal.detection.fit_hyperparameters", _QuickFit)


# Short lifecycles and frequent refits, so that short streams exercise every transition.
LIFECYCLE = {"refit_cases": 25, "close_after": 2, "change_log2": 0.3}


class _Clock:
    """The detectors' clock: one tick per batch, the same for every detector compared."""

    run = 0

    def __call__(self) -> str:
        return f"2026-03-01T00:00:{self.run:02d}+00:00"


def _run_both(new_store, kind, stream, *, after_batch=None, **overrides):
    """Run an incremental detector and a full rescoring side by side and compare them after
    every batch; ``after_batch(store)`` looks at the incremental side's store then."""
    clock = _Clock()
    config = {**LIFECYCLE, **overrides}
    sides = []
    for incremental in (True, False):
        store = new_store(kind)
        detector = Detector(
            store,
            ScopeConfig(),
            DetectionConfig(incremental=incremental, sweep_share=1.0, **config),
            clock=clock,
        )
        sides.append((store, Ingestor(store, ScopeConfig()), detector))
    skipped = 0
    offset = 0
    for batch in stream:
        clock.run += 1
        results = []
        for _, ingestor, detector in sides:
            touched = ingestor.apply(_records(batch, offset)).summary.touched_scopes
            results.append(detector.update(touched))
        offset += len(batch)
        (store, _, detector), (reference, _, _) = sides
        assert results[0] == results[1]
        assert store.signal_states("all") == reference.signal_states("all")
        assert _history(store) == _history(reference)
        if after_batch is not None:
            after_batch(store)
        evaluated, known = detector.evaluated.get("all", (0, 0))
        skipped += known - evaluated
    return skipped


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams())
def test_incremental_detection_equals_a_full_rescoring(new_store, kind, stream):
    _run_both(new_store, kind, stream)


class _SwingingFit(_QuickFit):
    """Refits whose θ swings between a vague prior and one that pulls every EBGM towards 1,
    so that at a refit open EBGM signals fail and close without a case of their own (and
    others open as their pairs grow)."""

    def __init__(self, a, expected, starts=None, squashing=None):
        vague = Hyperparameters(0.2, 0.1, 2.0, 4.0, 1 / 3)
        shrinking = Hyperparameters(40.0, 40.0, 60.0, 60.0, 0.5)
        self.theta = shrinking if a.size % 2 else vague


class _RunAtOnce:
    """The fitting thread's stand-in: each job runs when submitted, so that a background refit
    is there to be swapped in at the next update, the same in every run of the test."""

    def __init__(self, **_):
        pass

    def submit(self, function, *args):
        done = Future()
        done.set_result(function(*args))
        return done


@pytest.mark.parametrize("background", [False, True])
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams())
def test_a_refit_re_evaluates_what_theta_moves_as_a_full_rescoring_does(
    new_store, monkeypatch, background, stream
):
    """A refit moves EBGM alone: the incremental detector re-evaluates every open EBGM signal
    (not every pair) and still equals a full rescoring. With ``refit_in_background`` the fit
    runs off the update that found it due and θ is swapped in at the next update, on both
    sides alike: that update is then the refit's."""
    monkeypatch.setattr("pvsignal.detection.fit_hyperparameters", _SwingingFit)
    monkeypatch.setattr("pvsignal.detection.ThreadPoolExecutor", _RunAtOnce)
    _run_both(new_store, "sqlite", stream, refit_in_background=background)


def _reports(tag, pairs):
    """One single-product, single-event report per (product, event)."""
    return [
        {
            "case_id": f"{tag}{k}",
            "report_id": f"{tag}{k}",
            "version": 1,
            "received": "2026-03-01",
            "products": [{"name": product, "role": "suspect"}],
            "reactions": [{"pt": event}],
        }
        for k, (product, event) in enumerate(pairs)
    ]


def _fillers(tag, size):
    """Reports about other products and events: N grows, P1-E1's cells stay."""
    return _reports(tag, [(f"Q{k % 5}", f"R{k % 7}") for k in range(size)])


@pytest.mark.parametrize("background", [False, True])
def test_a_refit_alone_closes_a_steady_ebgm_signal_as_a_full_rescoring_does(
    new_store, monkeypatch, background
):
    """P1-E1 (a = 6, b = c = 3) opens on EBGM under a vague prior and turns steady in every
    measure (N grows by 3 % a batch: PRR, ROR and IC stay within their bands); then, from the
    fourth batch, refits give a prior that shrinks every EBGM towards 1. P1-E1 has no new case,
    yet its EB05 fell below 2 with θ: it fails and closes, as in a full rescoring."""

    class _PriorByReports(_QuickFit):
        def __init__(self, a, expected, starts=None, squashing=None):
            vague = Hyperparameters(0.2, 0.1, 2.0, 4.0, 1 / 3)
            shrinking = Hyperparameters(40.0, 40.0, 60.0, 60.0, 0.5)
            self.theta = vague if a.sum() < 340 else shrinking

    monkeypatch.setattr("pvsignal.detection.fit_hyperparameters", _PriorByReports)
    monkeypatch.setattr("pvsignal.detection.ThreadPoolExecutor", _RunAtOnce)
    first = [("P1", "E1")] * 6 + [("P1", "R9")] * 3 + [("Q9", "E1")] * 3
    stream = [_reports("A", first) + _fillers("F", 300)]
    stream += [_fillers(f"G{b}-", 10) for b in range(6)]
    statuses = []

    def ebgm_status(store):
        statuses.append(store.signal_states("all")[("unregistered:p1", "E1", "ebgm")]["status"])

    _run_both(new_store, "sqlite", stream, after_batch=ebgm_status, refit_in_background=background)
    assert statuses[:3] == ["new", "ongoing", "ongoing"] and statuses[-1] == "closed"


def test_the_incremental_detector_skips_what_cannot_have_changed(new_store):
    """A long stream in which most pairs stay put: the bounds certify some of them, and the
    results still equal a full rescoring."""
    rng = np.random.default_rng(3)
    stream = []
    for b in range(8):
        pairs = []
        for _ in range(40):
            product = str(rng.choice(["P0", "P1", "P2", "P3"], p=[0.4, 0.3, 0.2, 0.1]))
            event = "E1" if product == "P1" and rng.random() < 0.6 else f"E{rng.integers(6)}"
            pairs.append((product, event))
        stream.append(_reports(f"B{b}-", pairs))
    assert _run_both(new_store, "sqlite", stream) > 0


# -- the bounds themselves, against exact recomputation ---------------------------------------

THETA = Hyperparameters(0.2, 0.1, 2.0, 4.0, 1 / 3)


@settings(max_examples=200, deadline=None)
@given(
    a=st.integers(1, 60),
    e0=st.floats(0.01, 50),
    ratio=st.floats(0.5, 2.0),
)
def test_the_eb05_bound_holds(a, e0, ratio):
    """Whenever the tilting bound certifies, the exactly recomputed EB05 lies in it."""
    e1 = e0 * ratio
    p = 0.05
    base = posterior(np.array([a]), np.array([e0]), THETA, lower=p, upper=0.95)
    side = posterior(
        np.array([a]), np.array([e0]), THETA, lower=p * drift.KAPPA, upper=p / drift.KAPPA
    )
    now = posterior(np.array([a]), np.array([e1]), THETA, lower=p, upper=0.95).lower[0]
    qn = base.qn[0]
    delta = e1 - e0
    z = qn * (1 + delta / (THETA.beta1 + e0)) ** -(THETA.alpha1 + a) + (1 - qn) * (
        1 + delta / (THETA.beta2 + e0)
    ) ** -(THETA.alpha2 + a)
    eb05 = base.lower[0]
    rounding = 1e-8 * eb05
    if delta >= 0:
        assert now <= eb05 + rounding  # (i) monotone in E
        if z >= drift.KAPPA:
            assert now >= side.lower[0] - rounding  # (ii)
    else:
        assert now >= eb05 - rounding
        if z <= 1 / drift.KAPPA:
            assert now <= side.upper[0] + rounding  # (iii)


@settings(max_examples=100, deadline=None)
@given(a=st.integers(0, 80), e0=st.floats(0.0, 100), e1=st.floats(0.0, 100))
def test_the_ic025_shift_is_exact(a, e0, e1):
    """IC025 moved from E0 to E1 equals IC025 at E1, with the gamma quantile from scipy
    (independent of the detectors' code)."""
    q = scipy_stats.gamma.ppf(0.025, a + 0.5)
    ic0, ic1 = np.log2(q / (e0 + 0.5)), np.log2(q / (e1 + 0.5))
    shifted = drift.shifted_ic025(np.array([ic0]), np.array([e0]), np.array([e1]))[0]
    assert shifted == pytest.approx(ic1, abs=1e-9)


# -- detection shards ---------------------------------------------------------------------------


def _sorted_history(store):
    return sorted(_history(store))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams())
def test_two_detection_shards_give_the_states_and_alerts_of_one(new_store, stream):
    """Shards 0/2 and 1/2 over one store (each owning a hash range of products, shard 0 fitting
    the prior) end every batch with the states, alerts and history of a single detector."""
    clock = _Clock()
    config = DetectionConfig(**LIFECYCLE)
    single_store, shared_store = new_store("sqlite"), new_store("sqlite")
    single = Detector(single_store, ScopeConfig(), config, clock=clock)
    shards = [
        Detector(shared_store, ScopeConfig(), config, clock=clock, shard=(k, 2)) for k in (0, 1)
    ]
    feeds = [Ingestor(single_store, ScopeConfig()), Ingestor(shared_store, ScopeConfig())]
    offset = 0
    for batch in stream:
        clock.run += 1
        touched = feeds[0].apply(_records(batch, offset)).summary.touched_scopes
        alone = single.update(touched)
        touched = feeds[1].apply(_records(batch, offset)).summary.touched_scopes
        together = [alert for shard in shards for alert in shard.update(touched)]
        offset += len(batch)

        def by_pair(alerts):
            return sorted(alerts, key=lambda x: (x["product_id"], x["pt"]))

        assert by_pair(together) == by_pair(alone)
        assert shared_store.signal_states("all") == single_store.signal_states("all")
        assert _sorted_history(shared_store) == _sorted_history(single_store)


def test_a_shard_has_one_holder_and_a_superseded_one_is_fenced(new_store):
    store = new_store("sqlite")
    first = store.acquire_lease("0/2", "a", 60)
    assert first is not None and first.epoch == 1
    assert store.acquire_lease("0/2", "b", 60) is None  # held: no second owner
    assert store.acquire_lease("0/2", "a", 60) == first  # renewal keeps the epoch
    with store.write_transaction() as cursor:
        store._execute(cursor, "UPDATE detection_leases SET expires_at = '2000-01-01'")
    taken = store.acquire_lease("0/2", "b", 60)
    assert taken.epoch == 2
    with pytest.raises(LeaseLostError, match="'a'.*epoch 1"):
        store.write_detection("all", {("P", "E", "prr"): _ROW}, [], [], "now", lease=first)
    assert store.signal_states("all") == {}  # the stale holder wrote nothing
    store.write_detection("all", {("P", "E", "prr"): _ROW}, [], [], "now", lease=taken)
    assert store.signal_states("all")[("P", "E", "prr")]["status"] == "new"


def test_a_second_detector_for_a_held_shard_does_nothing(new_store):
    store = new_store("sqlite")
    Ingestor(store, ScopeConfig()).apply(_records(_associated_batch(), 0))
    holder = Detector(store, ScopeConfig(), shard=(0, 1))
    assert holder.update(["all"])  # P1-E1 opens
    intruder = Detector(store, ScopeConfig(), shard=(0, 1))
    before = store.signal_states("all")
    assert intruder.update(["all"]) == [] and store.signal_states("all") == before


def _a_run_outlasting_its_lease(store, monkeypatch, *, taken_meanwhile):
    """The store's lease expires (and is taken by another, if so) just after a run began."""
    acquire, calls = store.acquire_lease, []

    def acquire_then_expire(shard, holder, seconds):
        lease = acquire(shard, holder, seconds)
        if not calls:
            with store.write_transaction() as cursor:
                store._execute(cursor, "UPDATE detection_leases SET expires_at = '2000-01-01'")
            if taken_meanwhile:
                acquire(shard, "another", seconds)
        calls.append(lease)
        return lease

    monkeypatch.setattr(store, "acquire_lease", acquire_then_expire)


def test_a_run_that_outlasts_its_lease_renews_it_before_writing(new_store, monkeypatch):
    store = new_store("sqlite")
    Ingestor(store, ScopeConfig()).apply(_records(_associated_batch(), 0))
    _a_run_outlasting_its_lease(store, monkeypatch, taken_meanwhile=False)
    alerts = Detector(store, ScopeConfig(), shard=(0, 1)).update(["all"])
    assert [(a["product_id"], a["pt"]) for a in alerts] == [("unregistered:p1", "E1")]
    assert store.signal_states("all")[("unregistered:p1", "E1", "prr")]["status"] == "new"


def test_a_run_whose_shard_was_taken_meanwhile_writes_nothing(new_store, monkeypatch):
    store = new_store("sqlite")
    Ingestor(store, ScopeConfig()).apply(_records(_associated_batch(), 0))
    _a_run_outlasting_its_lease(store, monkeypatch, taken_meanwhile=True)
    with pytest.raises(LeaseLostError):
        Detector(store, ScopeConfig(), shard=(0, 1)).update(["all"])
    assert store.signal_states("all") == {}


_ROW = {
    "status": "new",
    "since": "now",
    "reference": 1.0,
    "failures": 0,
    "last_a": 3,
    "last_level": 1.0,
}


def _associated_batch():
    return _reports("A", [("P1", "E1") if k < 6 else (f"Q{k}", f"R{k}") for k in range(30)])


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams(), turns=st.lists(st.integers(0, 1), min_size=7, max_size=7))
def test_a_detector_whose_scope_another_wrote_reads_it_again(new_store, stream, turns):
    """Leadership moving between two consumers: each detector runs when it leads, and one
    whose states another detector wrote meanwhile must not trust its memory — the results
    equal two full-rescoring detectors taking the same turns."""
    clock = _Clock()
    config = LIFECYCLE
    sides = []
    for incremental in (True, False):
        store = new_store("sqlite")
        detectors = [
            Detector(
                store,
                ScopeConfig(),
                DetectionConfig(incremental=incremental, **config),
                clock=clock,
            )
            for _ in range(2)
        ]
        sides.append((store, Ingestor(store, ScopeConfig()), detectors))
    offset = 0
    for batch, turn in zip(stream, turns, strict=False):
        clock.run += 1
        results = []
        for _, ingestor, detectors in sides:
            touched = ingestor.apply(_records(batch, offset)).summary.touched_scopes
            results.append(detectors[turn].update(touched))
        offset += len(batch)
        assert results[0] == results[1]
        assert sides[0][0].signal_states("all") == sides[1][0].signal_states("all")


def test_detect_workers_of_two_shards_write_what_one_detector_writes(new_store, capsys):
    """`pvsignal detect --shard K/2 --once` for each shard, over a PostgreSQL store, leaves
    the signal states a single in-process detector leaves on a store fed the same reports."""
    reference, shared = new_store("sqlite"), new_store("postgresql")
    stream = [_associated_batch()]
    for store in (reference, shared):
        Ingestor(store, ScopeConfig()).apply(_records(stream[0], 0))
    Detector(reference, ScopeConfig()).update(["all"])
    for k in (0, 1):
        assert main(["detect", "--shard", f"{k}/2", "--once", "--store", shared.url]) == 0

    def states(store):
        return {key: (s["status"], s["last_a"]) for key, s in store.signal_states("all").items()}

    assert states(shared) == states(reference) != {}
    with pytest.raises(SystemExit):
        main(["detect", "--shard", "2/2", "--store", shared.url])
    assert "K must be in 0..N-1" in capsys.readouterr().err


def test_an_ic_signal_whose_cases_are_all_withdrawn_keeps_a_level(new_store):
    """Its IC025 is undefined once the pair has no report: its level is -inf, as for the
    other measures. (It was NaN, stored as NULL, so every later run counted another failure
    and the close wrote a NULL reference, which the store refuses.)"""
    store = new_store("sqlite")
    ingestor = Ingestor(store, ScopeConfig())
    detector = Detector(store, ScopeConfig(), DetectionConfig(close_after=2))
    batch = _associated_batch()
    ingestor.apply(_records(batch, 0))
    detector.update(["all"])
    [key] = [k for k in store.signal_states("all") if k[1:] == ("E1", "ic")]
    assert store.signal_states("all")[key]["status"] == "new"
    withdrawn = [{**r, "version": 2, "nullified": True} for r in batch[:6]]
    for run in range(3):
        ingestor.apply(_records(withdrawn if run == 0 else [], 100 * (run + 1)))
        detector.update(["all"])
    state = store.signal_states("all")[key]
    assert state["last_a"] == 0 and state["last_level"] == float("-inf")
    assert (state["status"], state["failures"]) == ("new", 1)  # one evaluation without cases
