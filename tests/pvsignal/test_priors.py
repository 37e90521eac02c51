"""Where a scope's MGPS prior comes from: configuration, the choice, and its record."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import gamma, nbinom

from detectors.mgps import Hyperparameters, posterior
from detectors.mgps_fit import fit_hyperparameters
from pvsignal.cli import main
from pvsignal.detection import Detector
from pvsignal.errors import InputError
from pvsignal.ingest import Ingestor
from pvsignal.priors import PriorChoice, decide, needs_own_fit, parents_first
from pvsignal.readers import RawRecord
from pvsignal.rebuild import SCOPES_SETTING, effective_scopes
from pvsignal.scopes import ScopeConfig, load_scope_config
from pvsignal.signals import scope_statistics
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.terminology.normalise import normalise_term

# openEBGM's published fit on CAERS (the "posteriorCalcs" vignette): a national database's prior.
CAERS_THETA = {
    "alpha1": 3.25379356,
    "beta1": 0.39988854,
    "alpha2": 2.02612692,
    "beta2": 1.90807970,
    "p": 0.06534557,
}


def _config(tmp_path: Path, text: str) -> ScopeConfig:
    path = tmp_path / "scopes.yaml"
    path.write_text(text)
    return load_scope_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "scopes:\n  - {name: lecheng, prior: {parent: hainan}}\n",
            "scopes[0].prior.parent: unknown scope 'hainan' (scopes: all, lecheng)",
        ),
        (
            "scopes:\n  - {name: lecheng, prior: {parent: lecheng}}\n",
            "scopes[0].prior.parent: scope 'lecheng' cannot borrow from itself",
        ),
        (
            "scopes:\n  - {name: all, prior: {parent: gba}}\n  - {name: gba}\n",
            "scopes[0].prior.parent: 'gba' makes a cycle of borrowed priors (all -> gba -> all)",
        ),
        (
            "scopes:\n  - {name: all, prior: {source: borrow}}\n",
            "scopes[0].prior.parent: scope 'all' borrows but names no parent to borrow from",
        ),
        (
            "scopes:\n  - {name: gba, prior: {source: given}}\n",
            "scopes.0.prior: Value error, source: given needs theta",
        ),
        (
            "scopes:\n  - {name: gba, prior: {theta: {alpha1: 1, beta1: 1, alpha2: 1, "
            "beta2: 1, p: 0.1}}}\n",
            "theta is only read with source: given, not 'auto'",
        ),
        (
            "scopes:\n  - {name: gba, prior: {source: given, theta: {alpha1: -1, beta1: 1, "
            "alpha2: 1, beta2: 1, p: 0.1}}}\n",
            "scopes.0.prior.theta.alpha1: Input should be greater than 0 (value -1)",
        ),
        (
            "scopes:\n  - {name: gba, prior: {source: guess}}\n",
            "scopes.0.prior.source: Input should be 'auto', 'fit', 'borrow' or 'given' "
            "(value 'guess')",
        ),
    ],
)
def test_a_bad_prior_choice_names_its_field_and_value(tmp_path, text, message):
    with pytest.raises(InputError) as error:
        _config(tmp_path, text)
    assert message in str(error.value)


def test_parents_come_first_and_default_to_all(tmp_path):
    config = _config(
        tmp_path,
        "scopes:\n"
        "  - {name: a-clinic, prior: {source: borrow, parent: hainan}}\n"
        "  - {name: hainan}\n"
        "  - {name: devices, prior: {source: fit}}\n",
    )
    assert config.prior_of("hainan").parent_of("hainan") == "all"
    assert config.prior_of("all").parent_of("all") is None
    order = parents_first(["a-clinic", "devices", "hainan", "all"], _parent_of(config))
    assert order == ["all", "devices", "hainan", "a-clinic"]


def _parent_of(config):
    return lambda scope: config.prior_of(scope).parent_of(scope)


def test_a_prior_change_needs_no_recount_and_the_store_keeps_the_latest(tmp_path, store):
    first = tmp_path / "first.yaml"
    first.write_text("scopes:\n  - {name: gba, filter: {pathways: [gba_hkmacao_connect]}}\n")
    effective_scopes(store, first)
    second = tmp_path / "second.yaml"
    second.write_text(
        "scopes:\n  - {name: gba, filter: {pathways: [gba_hkmacao_connect]}, "
        "prior: {source: borrow}}\n"
    )
    assert effective_scopes(store, second).prior_of("gba").source == "borrow"
    stored = ScopeConfig.model_validate_json(store.setting(SCOPES_SETTING))
    assert stored.prior_of("gba").source == "borrow"
    changed = tmp_path / "third.yaml"
    changed.write_text("scopes:\n  - {name: gba, filter: {pathways: [innovative]}}\n")
    with pytest.raises(InputError, match="differs from the one this store's counts were made"):
        effective_scopes(store, changed)


# -- the choice itself, on arrays -----------------------------------------------------------


@pytest.fixture(scope="module")
def fits():
    """An interior fit (openEBGM's shape of data: two well separated components) and a fit
    on a bound (every pair at lambda = 1: the background has no spread to fit)."""
    rng = np.random.default_rng(1)
    e = rng.gamma(1.0, 1.0, 4000)
    lam = np.where(rng.random(4000) < 0.1, rng.gamma(2, 0.5, 4000), rng.gamma(20, 20, 4000))
    n = rng.poisson(lam * e)
    interior = fit_hyperparameters(n[n > 0], e[n > 0])
    e = rng.gamma(1.0, 0.2, 3000)
    n = rng.poisson(e)
    bound = fit_hyperparameters(n[n > 0], e[n > 0])
    assert not interior.on_bound and interior.converged and bound.on_bound
    return interior, bound


def _own(fit):
    return fit, {"theta_source": "fitted", **fit.report()}


def _given(name="all"):
    choice = PriorChoice(source="given", theta=CAERS_THETA)
    return decide(name, choice, pairs=10, own=None, parent=None)


def test_auto_fits_a_large_scope_with_an_interior_fit(fits):
    interior, _ = fits
    decision = decide("gba", PriorChoice(), pairs=5000, own=_own(interior), parent=_given)
    assert decision.source == "fitted" and decision.theta == interior.theta
    assert decision.report["reason"] == "fitted on the scope: 5000 pairs, interior fit"


def test_auto_borrows_when_the_own_fit_sits_on_a_bound(fits):
    _, bound = fits
    decision = decide("gba", PriorChoice(), pairs=5000, own=_own(bound), parent=_given)
    assert decision.source == "borrowed"
    assert decision.theta == Hyperparameters(**CAERS_THETA)
    report = decision.report
    assert report["decision"] == "borrowed from all"
    assert report["reason"].startswith("its own fit sits on a bound of the search (")
    assert report["own_fit"]["on_bound"] == list(bound.on_bound)
    assert report["parent_theta_source"] == "given" and report["on_bound"] == []


def test_auto_borrows_without_fitting_below_min_pairs():
    called = []

    def parent():
        called.append(True)
        return _given()

    decision = decide("gba", PriorChoice(min_pairs=800), pairs=799, own=None, parent=parent)
    assert called and decision.report["decision"] == "borrowed from all"
    assert decision.report["reason"] == "too few pairs for its own fit (799 < min_pairs 800)"
    assert decision.report["own_fit"] is None


def test_a_scope_without_parent_keeps_its_own_fit_and_says_why(fits):
    _, bound = fits
    decision = decide("all", PriorChoice(), pairs=5000, own=_own(bound), parent=None)
    assert decision.source == "fitted" and decision.on_bound == list(bound.on_bound)
    assert decision.report["reason"].startswith(
        "fitted on the scope, with no parent to borrow from: its own fit sits on a bound"
    )
    assert decision.report["warnings"]  # the fit's bound warning stays


def test_fit_and_borrow_do_as_configured(fits):
    _, bound = fits
    fitted = decide("gba", PriorChoice(source="fit"), pairs=9, own=_own(bound), parent=_given)
    assert fitted.source == "fitted" and fitted.theta == bound.theta
    borrowed = decide(
        "gba", PriorChoice(source="borrow"), pairs=9000, own=None, parent=lambda: fitted
    )
    assert borrowed.source == "borrowed" and borrowed.theta == bound.theta
    assert borrowed.report["reason"] == "configured (source: borrow)"
    # A parent's warnings travel with its prior, named as the parent's.
    assert borrowed.report["warnings"][0].startswith("all's prior: theta sits on a bound")


# -- the detector and the export, on both stores ---------------------------------------------

PILOT_CONFIG = {
    "scopes": [
        {"name": "all", "prior": {"source": "given", "theta": CAERS_THETA}},
        {"name": "lecheng", "filter": {"regions": ["CN-HI"]}},
    ]
}


@pytest.fixture(scope="module")
def small_simulation():
    simulation = simulate(SimulationConfig(reports=3_000, seed=4))
    lines = list(simulation.lines())
    return simulation.products, [RawRecord(f"sim:{i}", line) for i, line in enumerate(lines)]


def test_the_detector_borrows_for_a_small_scope_and_records_why(small_simulation, store):
    products, records = small_simulation
    scopes = ScopeConfig.model_validate(PILOT_CONFIG)
    store.save_products(products)
    touched = Ingestor(store, scopes).apply(records).summary.touched_scopes
    detector = Detector(store, scopes)
    detector.update(sorted(touched, reverse=True))  # the child first: parents are put first
    pilot, parent = store.fits("lecheng"), store.fits("all")
    assert len(pilot) == len(parent) == 1
    assert parent[0]["theta_source"] == "given" and parent[0]["theta"] == CAERS_THETA
    record = pilot[0]
    assert record["theta_source"] == "borrowed" and record["decision"] == "borrowed from all"
    assert record["reason"].startswith("too few pairs for its own fit (")
    assert record["theta"] == CAERS_THETA and record["pairs"] < 1000
    assert detector.priors["lecheng"].source == "borrowed"
    # Nothing changed: nothing more is recorded.
    detector.update(touched)
    assert len(store.fits("lecheng")) == 1
    # The export path makes the same choice through the same function.
    exported = scope_statistics(store, "lecheng", scopes=scopes, record_fit=False)
    assert exported.theta == Hyperparameters(**CAERS_THETA)
    assert exported.fit["decision"] == "borrowed from all"
    assert exported.fit["reason"] == record["reason"]


def test_signals_export_prints_and_records_the_choice(small_simulation, tmp_path, capsys):
    products, records = small_simulation
    url = f"sqlite:///{tmp_path}/export.db"
    config = tmp_path / "scopes.yaml"
    config.write_text(json.dumps(PILOT_CONFIG))  # JSON is YAML
    from pvsignal.store import open_store

    store = open_store(url)
    try:
        store.save_products(products)
        Ingestor(store, effective_scopes(store, config)).apply(records)
    finally:
        store.close()
    out = tmp_path / "lecheng.json"
    export = ["signals", "export", "--store", url, "--scope", "lecheng", "--format", "json"]
    assert main([*export, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "MGPS prior of 'lecheng': borrowed from all (too few pairs for its own fit (" in err
    document = json.loads(out.read_text())
    assert document["fit"]["theta_source"] == "borrowed"
    assert document["fit"]["theta"] == CAERS_THETA
    assert main(["fits", "--store", url, "--scope", "lecheng"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("lecheng\t")
    assert "\tborrowed from all (too few pairs for its own fit (" in line
    assert line.endswith("; theta alpha1 3.254, beta1 0.3999, alpha2 2.026, beta2 1.908, p 0.06535")


def test_signals_export_scores_with_the_recorded_prior_and_fits_nothing(small_simulation, tmp_path):
    """The detector's recorded prior is the export's while the scope's configured choice is
    the one it was decided under; another choice is decided (and recorded) anew."""
    products, records = small_simulation
    url = f"sqlite:///{tmp_path}/export.db"
    from pvsignal.store import open_store

    store = open_store(url)
    try:
        store.save_products(products)
        scopes = effective_scopes(store, None)
        Detector(store, scopes).update(
            Ingestor(store, scopes).apply(records).summary.touched_scopes
        )
        [recorded] = store.fits("all")
    finally:
        store.close()
    assert recorded["theta_source"] == "fitted"
    out = tmp_path / "all.json"
    assert main(["signals", "export", "--store", url, "--format", "json", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["fit"]["fitted_at"] == recorded["fitted_at"]
    assert document["fit"]["theta"] == recorded["theta"]
    store = open_store(url)
    try:
        assert store.fits("all") == [recorded]  # nothing fitted, nothing recorded
        expected = scope_statistics(
            store, "all", theta=Hyperparameters(**recorded["theta"]), record_fit=False
        ).statistics["eb05"]
    finally:
        store.close()
    assert [pair["eb05"] for pair in document["pairs"]] == expected.tolist()

    given = tmp_path / "given.yaml"
    given.write_text(
        json.dumps({"scopes": [{"name": "all", "prior": PILOT_CONFIG["scopes"][0]["prior"]}]})
    )
    argv = ["signals", "export", "--store", url, "--format", "json", "--scope-config", str(given)]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["fit"]["theta"] == CAERS_THETA
    store = open_store(url)
    try:
        assert [fit["theta_source"] for fit in store.fits("all")] == ["fitted", "given"]
    finally:
        store.close()


# -- the scenario: a pilot scope of ~500 simulated reports inside a national database --

CAERS_SEX = {"Female": "F", "Male": "M"}
# True relative reporting ratios of the pilot's planted pairs: DuMouchel's lambda = mu / E, the
# quantity EBGM estimates, with E from the scope's margins (the planted reports included).
PLANTED_RR = (5, 5, 6, 7, 8, 10)
PLANTED_PRODUCT_REPORTS = 30
# The pilot's events the plants use, one each (so no plant moves another's margin), the
# commonest first for the weakest ratios: under a prior fitted on real data EB05 > 2 needs
# a >= 11 at lambda = 5 and a >= 5 at lambda = 10; no pair of a = 3 reaches it at lambda <= 10
# (test_eb05_above_2_needs_cases_not_only_a_ratio).
PLANTED_EVENTS = (
    "Off label use",
    "Headache",
    "Nausea",
    "Fatigue",
    "Pyrexia",
    "In-stent coronary artery restenosis",
)


def _caers_records(path):
    """CAERS (tests/data): 3,357 real reports, the national database around the pilot."""
    frame = pd.read_csv(path)
    records = []
    for case, rows in frame.groupby("id", sort=True):
        sex = CAERS_SEX.get(rows["strat1"].iloc[0])
        document = {
            "case_id": f"CAERS-{case}",
            "report_id": f"CAERS-{case}",
            "version": 1,
            "received": "2012-06-30",
            "country": "US",
            "patient": {"sex": sex} if sex else {},
            "products": [{"name": p, "role": "suspect"} for p in dict.fromkeys(rows["var1"])],
            "reactions": [{"pt": e} for e in dict.fromkeys(rows["var2"])],
        }
        records.append(RawRecord(f"caers:{case}", json.dumps(document)))
    return records


def _pilot_background():
    """~410 simulated reports (their follow-ups aside), all from the pilot zone."""
    simulation = simulate(SimulationConfig(reports=520, seed=5, signals=0))
    documents = [json.loads(line) for line in simulation.lines()]
    for document in documents:
        document.update(region="CN-HI", country="CN")
    return simulation.products, documents


def _planted(documents, background_n_event, n_cases, rng):
    """Per true RR, a pilot product with 30 reports of which ``a`` carry its event, ``a``
    chosen so that ``a / E`` is the RR once the plants are in the scope:
    ``a = RR * n * m / (N - RR * n)`` for ``n`` product reports, ``m`` background cases with
    the event and ``N`` cases in all. Patients and dates are copied from the background."""
    n = PLANTED_PRODUCT_REPORTS
    total = n_cases + n * len(PLANTED_RR)
    # The store counts a term under the first spelling it saw (CAERS' upper case here).
    stored = {normalise_term(term): (term, m) for term, m in background_n_event.items()}
    planted_forms = {normalise_term(event) for event in PLANTED_EVENTS}
    plan, records = [], []
    for k, (rr, event) in enumerate(zip(PLANTED_RR, PLANTED_EVENTS, strict=True)):
        label, m = stored[normalise_term(event)]
        with_event = round(rr * n * m / (total - rr * n))
        plan.append((f"unregistered:pilotdrug-{k}", label, rr))
        for j in range(n):
            base = documents[int(rng.integers(len(documents)))]
            reactions = base.get("reactions", [])
            others = [r for r in reactions if normalise_term(r["pt"]) not in planted_forms]
            document = {
                "case_id": f"PLANT-{k}-{j}",
                "report_id": f"PLANT-{k}-{j}",
                "version": 1,
                "received": base.get("received"),
                "country": "CN",
                "region": "CN-HI",
                "patient": base.get("patient", {}),
                "products": [{"name": f"pilotdrug-{k}", "role": "suspect"}],
                "reactions": [{"pt": event}] if j < with_event else others or [{"pt": "Pain"}],
            }
            records.append(RawRecord(f"plant:{k}:{j}", json.dumps(document)))
    return plan, records


def test_a_pilot_of_500_reports_borrows_the_national_prior(store, public_data):
    scopes = ScopeConfig.model_validate(
        # Crude E, so that a plant's a / E is its RR: patients copied at random would move
        # a stratified E by the strata they happen to fall in.
        {"stratify": False, "scopes": [{"name": "pilot", "filter": {"regions": ["CN-HI"]}}]}
    )
    products, documents = _pilot_background()
    store.save_products(products)
    ingestor = Ingestor(store, scopes)
    ingestor.apply(_caers_records(public_data / "caers" / "caers.csv"))
    ingestor.apply([RawRecord(f"pilot:{i}", json.dumps(d)) for i, d in enumerate(documents)])
    counts = store.scope_counts("pilot")
    n_event = pd.Series(counts.event_rows[2], index=counts.event_rows[0]).groupby(level=0).sum()
    plan, records = _planted(
        documents, n_event.to_dict(), int(counts.totals[1].sum()), np.random.default_rng(5)
    )
    ingestor.apply(records)
    detector = Detector(store, scopes)
    detector.update(["pilot", "all"])

    national, pilot = store.fits("all")[-1], store.fits("pilot")[-1]
    assert national["decision"] == "fitted" and national["on_bound"] == []
    assert national["reason"].startswith("fitted on the scope: ")
    assert pilot["decision"] == "borrowed from all" and pilot["theta"] == national["theta"]
    assert pilot["reason"] == f"too few pairs for its own fit ({pilot['pairs']} < min_pairs 5000)"
    assert 500 <= pilot["cases"] <= 600

    exported = scope_statistics(store, "pilot", scopes=scopes, record_fit=False)
    stats, pairs = exported.statistics, exported.pairs
    index = {pair: i for i, pair in enumerate(zip(pairs.product, pairs.event, strict=True))}
    planted = [index[(product, event)] for product, event, _ in plan]
    # The plants are what they say: a / E is the planted RR (to the rounding of a).
    ratio = stats["a"][planted] / stats["expected"][planted]
    np.testing.assert_allclose(ratio, PLANTED_RR, rtol=0.04)
    assert all(stats["a"][i] >= 12 for i in planted)
    # With the borrowed prior every planted pair is above the EB05 > 2 rule, and they are
    # the pilot's strongest: the six are within its top 12 of ~1,000 pairs by EB05.
    assert all(stats["eb05"][i] > 2 for i in planted), stats["eb05"][planted]
    rank = np.empty(stats["eb05"].size, dtype=int)
    rank[np.argsort(-stats["eb05"], kind="stable")] = np.arange(rank.size)
    assert max(rank[i] for i in planted) < 12
    # Why not the pilot's own fit, though it is interior: its prior learned the plants
    # ("every signal has RR ~6") and caps a stronger signal. A pair with a = 5, E = 0.18
    # (RR 28, the demo's Stevens-Johnson syndrome) would get EBGM 7.1 instead of 15.2.
    own = fit_hyperparameters(pairs.counts.a, pairs.counts.expected)
    assert own.converged and not own.on_bound and own.theta.alpha1 > 10
    capped = posterior([5], [0.18], own.theta).ebgm[0]
    borrowed = posterior([5], [0.18], Hyperparameters(**pilot["theta"])).ebgm[0]
    assert capped < 8 < 14 < borrowed  # 7.05 and 15.2


def _eb05_by_scipy(a, expected, theta):
    """The posterior 5 % quantile of lambda, from scipy's distributions and a root finder."""
    mixture = [(theta.p, theta.alpha1, theta.beta1), (1 - theta.p, theta.alpha2, theta.beta2)]
    marginal = [w * nbinom.pmf(a, s, r / (r + expected)) for w, s, r in mixture]
    weights = np.array(marginal) / sum(marginal)
    posterior_cdf = lambda x: sum(  # noqa: E731
        w * gamma.cdf(x, s + a, scale=1 / (r + expected))
        for w, (_, s, r) in zip(weights, mixture, strict=True)
    )
    return brentq(lambda x: posterior_cdf(x) - 0.05, 1e-9, 1e3, xtol=1e-12)


def test_eb05_above_2_needs_cases_not_only_a_ratio():
    """Under a prior fitted on real data (openEBGM's CAERS fit), no pair of a = 3 reaches
    EB05 2 at any true RR (a / E) up to 10; the cases needed grow as the ratio falls."""
    theta, needed = Hyperparameters(**CAERS_THETA), {}
    for rr in (5, 6, 7, 8, 10):
        eb05 = {a: _eb05_by_scipy(a, a / rr, theta) for a in range(3, 16)}
        assert eb05[3] < 2
        needed[rr] = min(a for a, value in eb05.items() if value > 2)
        ours = posterior(list(eb05), [a / rr for a in eb05], theta).lower
        np.testing.assert_allclose(ours, list(eb05.values()), rtol=1e-6)
    assert needed == {5: 11, 6: 8, 7: 7, 8: 6, 10: 5}


def test_a_borrower_whose_parent_has_no_prior_yet_fits_on_itself(fits):
    interior, _ = fits
    choice = PriorChoice(source="borrow", parent="hainan")
    assert needs_own_fit(choice, 10, parent_available=False)
    assert not needs_own_fit(choice, 10_000)
    decision = decide("clinic", choice, pairs=10, own=_own(interior), parent=None)
    assert decision.source == "fitted"
    assert decision.report["reason"] == "fitted on the scope until hainan has a prior to borrow"
