"""Poisson MaxSPRT against published critical values, R's Performance.Poisson examples, an
independent exact computation (tests/detectors/maxsprt_reference.py) and simulated streams."""

import numpy as np
import pytest
from scipy import special, stats

from detectors.sequential import (
    SequentialState,
    critical_value,
    expected_time_to_signal,
    llr,
    minimum_length,
    performance,
    rejection_probability,
    start,
    update,
)
from tests.detectors import maxsprt_reference as reference

# Exact critical values for alpha = 0.05, D = 0 (no delayed start): the table of Kulldorff &
# Silva (REVSTAT 2017, "minimum events to signal", Table 1) as shipped in R's Sequential package
# (CV.Poisson's pre-computed TableCV.PoissonM, returned as is by CV.Poisson(T, 0, M, 0.05)).
# Columns M = 1, 2, 3, 4, 6; None where no critical value exists (P(N(T) >= M) < 0.05).
PUBLISHED_ALPHA_05 = {
    1: (2.85393700326128, 2.36663822744395, 1.7742178463146, None, None),
    1.5: (2.96497144429574, 2.57638960908667, 2.15070686609869, 1.68320857573985, None),
    2: (3.0469774628286, 2.68935364101625, 2.34967932492501, 2.00015758807598, None),
    2.5: (3.11041922987987, 2.77748334336629, 2.47487306554246, 2.18732770846946, None),
    3: (3.16210581650405, 2.8493269885449, 2.56531970873171, 2.31713928988974, 1.76648463065627),
    4: (3.24500386808042, 2.93740985148835, 2.69918199672857, 2.49889219887528, 2.08947296098257),
    5: (3.29718279728549, 3.01290868171239, 2.80395477091307, 2.62366847225542, 2.26759506082247),
    6: (3.34272874946839, 3.08209924178235, 2.87390384946275, 2.69934978606631, 2.40680950082531),
    8: (3.41378224992083, 3.17006191246864, 2.98556046816797, 2.82925856210701, 2.57262664682324),
    10: (3.46795158033368, 3.23800870652229, 3.06424796686384, 2.92156132978567, 2.69058633468102),
    12: (3.51174870474631, 3.29055057983813, 3.12525250048283, 2.99310550216978, 2.7814346207046),
    15: (3.56259057516111, 3.35326528420839, 3.19995342291952, 3.07561262580597, 2.87793940574268),
    20: (3.62812301587201, 3.4301407625587, 3.28821566346814, 3.17637032177521, 2.99779165442139),
    25: (3.67631995875227, 3.48796061486674, 3.3566769512246, 3.24963354903075, 3.0810513452118),
    30: (3.71576438223103, 3.53415028882636, 3.40671487050728, 3.3071350801791, 3.14780120177428),
    40: (3.77466349620378, 3.60505631658695, 3.48595979980634, 3.39197395348475, 3.24661941308076),
    50: (3.81990269391777, 3.65714243579444, 3.54482617261637, 3.4555214311217, 3.31795545593698),
    60: (3.85575466209975, 3.69888480478571, 3.59056669774142, 3.50521969535492, 3.37419401277773),
    80: (3.91085346466642, 3.7624739866046, 3.65993869307721, 3.58089967455607, 3.45808683624598),
    100: (3.95232090599911, 3.81014086931301, 3.71199319899898, 3.63650814981748, 3.52008147061398),
}
PUBLISHED_M = (1, 2, 3, 4, 6)
# The whole grid, off-table lengths included, checked against the independent computation.
GRID_LENGTHS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12.5, 15, 20, 25, 33.3, 40, 50, 60, 75, 90)
GRID_LENGTHS += (100,)
GRID = [
    (length, m, alpha) for length in GRID_LENGTHS for m in range(1, 7) for alpha in (0.05, 0.01)
]
PUBLISHED_CASES = [
    (length, m, cv)
    for length, row in PUBLISHED_ALPHA_05.items()
    for m, cv in zip(PUBLISHED_M, row, strict=True)
]


@pytest.mark.parametrize(("length", "min_events", "published"), PUBLISHED_CASES)
def test_critical_value_equals_the_published_table(length, min_events, published):
    if published is None:
        with pytest.raises(ValueError, match=f"min_events={min_events} and length="):
            critical_value(length, min_events, 0.05)
    else:
        assert critical_value(length, min_events, 0.05) == pytest.approx(published, abs=1e-9)


def test_performance_equals_r_sequential_examples():
    # Sequential's documented examples: Performance.Poisson(SampleSize=10, cv=CV.Poisson(10), RR=2)
    # gives 0.6850634, 4.130985, 5.979353; with M=3, 0.7329625, 4.071636, 5.654732.
    for m, power, signal_time, sample_size in [
        (1, 0.6850634, 4.130985, 5.979353),
        (3, 0.7329625, 4.071636, 5.654732),
    ]:
        result = performance(10, m, critical_value(10, m), rr=2)
        assert result.power == pytest.approx(power, abs=1e-7)
        assert result.signal_time == pytest.approx(signal_time, abs=1e-6)
        assert result.sample_size == pytest.approx(sample_size, abs=1e-6)
        assert expected_time_to_signal(10, m, critical_value(10, m), 2) == result.signal_time


def test_llr_formula_and_one_sidedness():
    c = np.array([0, 1, 3, 7, 7, 5])
    mu = np.array([1.0, 0.5, 3.0, 2.3, 0.0, 9.0])
    expected = np.where(c > mu, special.xlogy(c, c / np.where(mu > 0, mu, 1)) - (c - mu), 0.0)
    expected[4] = np.inf
    np.testing.assert_allclose(llr(c, mu), expected)
    assert llr(7, 2.3) == pytest.approx(7 * np.log(7 / 2.3) - (7 - 2.3), rel=1e-14)


def test_minimum_length_is_where_the_most_liberal_test_spends_alpha():
    for m in range(1, 7):
        shortest = minimum_length(m, 0.05)
        assert stats.poisson.sf(m - 1, shortest) == pytest.approx(0.05, rel=1e-10)
        assert critical_value(shortest * 1.001, m, 0.05) > 0
        with pytest.raises(ValueError, match=f"length must be at least {shortest:.6g}"):
            critical_value(shortest * 0.999, m, 0.05)


def test_bad_designs_are_refused_by_name():
    with pytest.raises(ValueError, match="length must be finite and positive; element 0 is -1"):
        critical_value(-1)
    with pytest.raises(ValueError, match=r"min_events must be a whole number >= 1, got 2.5"):
        critical_value(10, 2.5)
    with pytest.raises(ValueError, match=r"min_events must be a whole number >= 1, got nan"):
        critical_value(10, float("nan"))
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 0.5\], got 0.7"):
        critical_value(10, 1, 0.7)
    with pytest.raises(ValueError, match="cv must be finite and positive; element 0 is 0"):
        rejection_probability(10, 1, 0.0)


def test_state_signals_at_the_first_update_whose_llr_reaches_the_critical_value():
    state = start(10, min_events=3, alpha=0.05)
    assert state.critical_value == pytest.approx(3.06424796686384, abs=1e-9)
    state = update(state, 0.2, 2)  # LLR(2, 0.2) = 2.99 and only 2 events: no signal
    assert (state.observed, state.signalled_at, state.ended) == (2, None, False)
    state = update(state, 1.0, 1)  # LLR(3, 1.2) = 1.55
    assert state.llr == pytest.approx(3 * np.log(3 / 1.2) - 1.8)
    assert not state.ended
    state = update(state, 0.3, 4)  # LLR(7, 1.5) = 5.28 >= 3.06
    assert state.signalled_at == pytest.approx(1.5)
    assert state.ended
    assert update(state, 5.0, 0) is state  # an ended test stays as it ended


def test_state_ends_without_signal_at_the_surveillance_length_having_spent_alpha():
    state = start(10, min_events=1, alpha=0.05)
    spent = []
    for _ in range(10):
        state = update(state, 1.0, 1)
        spent.append(state.alpha_spent)
    assert state.ended and state.signalled_at is None and state.observed == 10
    assert np.all(np.diff(spent) > 0)
    assert spent[-1] == pytest.approx(0.05, abs=1e-10)
    assert spent[4] == pytest.approx(rejection_probability(5.0, 1, state.critical_value))


def test_state_refuses_bad_increments_by_name():
    state = start(10)
    with pytest.raises(ValueError, match="added_expected must be finite and non-negative"):
        update(state, -0.5, 1)
    with pytest.raises(ValueError, match="added_observed must be non-negative whole numbers"):
        update(state, 0.5, 1.5)


@pytest.mark.parametrize(("length", "min_events", "alpha"), GRID)
def test_critical_value_is_exact_by_an_independent_computation(length, min_events, alpha):
    """Realised alpha at our CV, integrated over event times (maxsprt_reference.py): at most the
    nominal alpha (to float rounding, 1e-13) and within 1e-9 of it; 1e-4 lower, the CV would spend
    more than alpha, so the exact CV lies within 1e-4 below ours, and ours is not above it."""
    if stats.poisson.sf(min_events - 1, length) < alpha:  # even "M events by T" spends < alpha
        with pytest.raises(ValueError, match="no critical value reaches"):
            critical_value(length, min_events, alpha)
        return
    cv = critical_value(length, min_events, alpha)
    realised = reference.signal_probability(length, min_events, cv)
    assert alpha - 1e-9 <= realised <= alpha + 1e-13
    assert reference.signal_probability(length, min_events, cv - 1e-4) > alpha
    assert rejection_probability(length, min_events, cv) <= alpha


@pytest.mark.parametrize(("length", "min_events", "rr"), [(10, 1, 2), (25, 4, 1.5), (100, 3, 3)])
def test_power_equals_the_independent_computation(length, min_events, rr):
    cv = critical_value(length, min_events, 0.01)
    assert performance(length, min_events, cv, rr).power == pytest.approx(
        reference.signal_probability(length, min_events, cv, rr), abs=1e-12
    )


def _stream(rng: np.random.Generator, rr: float, state: SequentialState) -> SequentialState:
    """One continuously monitored stream: an update at each event's arrival, then to the end."""
    while not state.ended:
        gap = rng.exponential(1 / rr)  # mu until the next event (rate rr per expected event)
        if state.expected + gap >= state.length:
            return update(state, state.length - state.expected, 0)
        state = update(state, gap, 1)
    return state


def test_simulated_streams_signal_at_alpha_under_the_null_and_often_at_rate_ratio_3():
    rng = np.random.default_rng(20261202)
    design = start(20, min_events=4, alpha=0.05)
    null = sum(_stream(rng, 1.0, design).signalled_at is not None for _ in range(200))
    elevated = [_stream(rng, 3.0, design) for _ in range(200)]
    # At most alpha of 200 null streams, up to binomial error (the 99.9% quantile of Bin(200, .05)).
    assert null <= stats.binom.ppf(0.999, 200, 0.05)
    signals = sum(state.signalled_at is not None for state in elevated)
    assert signals >= 190  # exact power at rate ratio 3 is 0.9993
    assert performance(20, 4, design.critical_value, 3.0).power > 0.999
    assert all(state.signalled_at < 20 for state in elevated if state.signalled_at is not None)
