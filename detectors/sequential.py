"""Poisson MaxSPRT: continuous sequential monitoring of an event count against its expectation.

Surveillance runs on the scale of expected events: ``mu`` grows with exposure (patients x
reference rate), ``c`` counts the events observed so far. The log-likelihood ratio of "rate ratio
> 1" against "rate ratio = 1" is ``LLR = c ln(c/mu) - (c - mu)`` when ``c > mu``, else 0 [1]_.
The test signals the first time ``LLR >= CV`` with at least ``M`` events [2]_; it ends without a
signal when ``mu`` reaches the upper limit ``T`` (the surveillance length).

Between events the LLR only falls (mu grows, c stays), so a signal can only occur when an event
arrives. For a critical value CV, the ``k``-th event signals iff it arrives while ``mu <= a_k``,
where ``a_k < k`` solves ``k ln(k/a_k) - (k - a_k) = CV`` (Lambert W). The exact probability of a
signal is a Markov chain on the count, advanced from one ``a_k`` to the next and finally to ``T``:
from count ``j`` at ``a_{k-1}``, the chain is absorbed (signals) when ``k - j`` or more events
arrive before ``a_k``. That is the method of R's ``Sequential::CV.Poisson`` /
``Performance.Poisson`` [1]_ [3]_; the critical value is its root in CV.

Exactness. For fixed T and M the signal probability is continuous and strictly decreasing in CV
(each ``a_k`` moves continuously, and when ``a_k`` crosses T the two descriptions agree), so the
nominal alpha is met to root-finding precision (1e-12 in CV), never exceeded. The one exception:
when ``M > T`` and ``P(N(T) >= M) < alpha`` under the null, even the most liberal test (signal at
M events) stays below alpha; :func:`critical_value` then refuses, naming the shortest length that
works (:func:`minimum_length`) -- as ``CV.Poisson`` does.

References
----------
.. [1] Kulldorff M, Davis RL, Kolczak M, Lewis E, Lieu T, Platt R (2011). A maximized sequential
   probability ratio test for drug and vaccine safety surveillance. Sequential Analysis 30:58-78.
.. [2] Kulldorff M, Silva IR (2017). Continuous post-market sequential safety surveillance with
   minimum events to signal. REVSTAT 15:373-394 (preprint 2015).
.. [3] Silva IR, Kulldorff M. R package ``Sequential``: ``CV.Poisson``, ``Performance.Poisson``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special

from detectors._arrays import FloatArray, as_counts, as_positive

# Root-finding tolerance on the critical value.
_CV_TOLERANCE = 1e-12


class Performance(NamedTuple):
    """Operating characteristics of one MaxSPRT design at one true rate ratio.

    ``power`` is the probability of a signal (alpha at rate ratio 1); ``signal_time`` the expected
    ``mu`` (expected events under the null) at the signal, given a signal; ``sample_size`` the
    expected ``mu`` when surveillance stops, with or without a signal (R's ``ESampleSize``).
    """

    power: float
    signal_time: float
    sample_size: float


def llr(observed: ArrayLike, expected: ArrayLike) -> float | FloatArray:
    """Poisson MaxSPRT log-likelihood ratio, one-sided (excess events only).

    Parameters
    ----------
    observed : array_like
        Events observed so far (whole numbers >= 0).
    expected : array_like
        Events expected so far under the null (>= 0).

    Notes
    -----
    ``LLR = c ln(c/mu) - (c - mu)`` when ``c > mu``, else 0 (Kulldorff et al. 2011 [1]_).
    With ``mu = 0`` and ``c > 0`` the LLR is ``inf``: events with no exposure behind them.

    Examples
    --------
    >>> round(float(llr(7, 2.3)), 6)
    3.091007
    >>> float(llr(2, 3.0))
    0.0
    """
    c = as_counts("observed", observed)
    mu = as_positive("expected", expected, allow_zero=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = special.xlogy(c, c) - special.xlogy(c, mu) - (c - mu)
    result = np.where(c > mu, value, 0.0)
    return float(result) if result.ndim == 0 else result


def signal_thresholds(counts: ArrayLike, cv: float) -> FloatArray:
    """``a_k``: the largest ``mu`` at which ``k`` events still reach ``LLR >= cv``.

    Solves ``k ln(k/a) - (k - a) = cv`` for ``a < k``: with ``x = a/k``, ``x e^{-x} =
    e^{-1 - cv/k}``, so ``a_k = -k W0(-e^{-1 - cv/k})`` (principal branch of Lambert W), polished
    by two Newton steps on the LLR itself.
    """
    k = np.asarray(counts, dtype=np.float64)
    a = -k * special.lambertw(-np.exp(-1.0 - cv / k), 0).real
    for _ in range(2):
        residual = k * np.log(k / a) - (k - a) - cv
        a = a - residual / (1.0 - k / a)
    return a


def _checkpoints(length: float, min_events: int, cv: float) -> tuple[FloatArray, FloatArray]:
    """Times ``a_M < a_{M+1} < ... < T`` and the count that signals by each.

    Between the previous checkpoint and ``a_k`` the ``k``-th event signals, and no count below
    ``k`` can. The last checkpoint is ``T`` itself, with the first count whose ``a_k >= T``.
    """
    times: list[float] = []
    # a_k grows by about 1 per event: take blocks of counts until one crosses T.
    start = min_events
    while True:
        block = np.arange(start, start + max(64, int(length)), dtype=np.float64)
        a = signal_thresholds(block, cv)
        below = a < length
        times.extend(a[below].tolist())
        if not below.all():
            break
        start += block.size
    final = min_events + len(times)
    checkpoint_times = np.array([*times, length])
    needed = np.arange(min_events, final + 1, dtype=np.float64)
    return checkpoint_times, needed


def _reach(mean: float) -> int:
    """Arrivals in an interval holding ``mean`` events beyond which the probability is nil.

    ``P(Poisson(mean) > mean + 10 sqrt(mean) + 40)`` is below 1e-30 for every mean: far under
    double precision next to the probabilities it would be added to. Cutting there keeps each
    step short, since intervals between checkpoints hold about one expected event.
    """
    return int(mean + 10.0 * math.sqrt(mean)) + 41


def _kernel(mean: float, size: int) -> FloatArray:
    """Poisson(mean) probabilities of 0..size-1 increments, cut at :func:`_reach`."""
    k = np.arange(min(size, _reach(mean)), dtype=np.float64)
    return np.exp(special.xlogy(k, mean) - mean - special.gammaln(k + 1.0))


def _march(length: float, min_events: int, cv: float, rr: float):
    """Advance the count's distribution from checkpoint to checkpoint.

    Yields, per checkpoint, ``(start, stop, needed, alive)``: the interval's ends in ``mu``, the
    count that signals in it, and the probabilities of counts ``0..needed-1`` without a signal at
    ``start`` (before the interval). The chain starts at count 0 at ``mu = 0``; counts below
    ``min_events`` never signal, which the first interval covers (it runs from 0 to ``a_M``).
    """
    times, needed = _checkpoints(length, min_events, cv)
    alive = np.array([1.0])
    start = 0.0
    for stop, need in zip(times.tolist(), needed.astype(int).tolist(), strict=True):
        yield start, stop, need, alive
        kernel = _kernel(rr * (stop - start), need)
        alive = np.convolve(alive, kernel)[:need]
        start = stop


def _within_reach(alive: FloatArray, need: int, mean: float) -> tuple[FloatArray, FloatArray]:
    """The counts that may still signal in an interval: their probabilities and shortfalls."""
    first = max(0, need - _reach(mean))
    return alive[first:], need - np.arange(first, alive.size, dtype=np.float64)


def _signal_probability(alive: FloatArray, need: int, mean: float) -> float:
    """P(signal in an interval holding ``mean`` events): ``need - j`` arrivals from count ``j``."""
    chance, short = _within_reach(alive, need, mean)
    return float(chance @ special.gammainc(short, mean))  # P(Pois >= m) = P(Gamma(m) <= mean)


def performance(length: float, min_events: int, cv: float, rr: float = 1.0) -> Performance:
    """Exact power, expected time to signal and expected length of surveillance.

    Parameters
    ----------
    length : float
        Upper limit of surveillance ``T``, in events expected under the null.
    min_events : int
        Minimum number of events ``M`` before a signal may occur.
    cv : float
        Critical value on the LLR scale.
    rr : float, optional
        True rate ratio (1: the null, where power is the realised alpha).

    Notes
    -----
    Within an interval ``(s, t]`` entered at count ``j``, a signal needs ``m = need - j`` arrivals
    at rate ``rr`` per unit ``mu``; the ``m``-th arrives at ``s + G``, ``G ~ Gamma(m, rr)``, and
    ``E[G; G <= t - s] = (m / rr) P(Gamma(m + 1, rr) <= t - s)``, so the expected signal time needs
    no truncated sums (R's ``Performance.Poisson`` sums the same order-statistic terms).

    Examples
    --------
    >>> p = performance(10, 1, 3.46795158033368, rr=2)
    >>> round(p.power, 6), round(p.signal_time, 5), round(p.sample_size, 5)
    (0.685063, 4.13099, 5.97935)
    """
    length, min_events, cv, rr = _design(length, min_events, cv, rr)
    power = 0.0
    timed = 0.0  # E[mu at signal; signal]
    for start, stop, need, alive in _march(length, min_events, cv, rr):
        mean = rr * (stop - start)
        chance, short = _within_reach(alive, need, mean)
        signal = chance @ special.gammainc(short, mean)
        power += signal
        timed += start * signal + chance @ (short / rr * special.gammainc(short + 1, mean))
    power = min(float(power), 1.0)
    timed = float(timed)
    signal_time = timed / power if power > 0 else math.nan
    return Performance(power, signal_time, timed + (1.0 - power) * length)


def rejection_probability(length: float, min_events: int, cv: float, rr: float = 1.0) -> float:
    """Exact probability that the test signals: its alpha at ``rr = 1``, its power otherwise.

    Examples
    --------
    >>> round(rejection_probability(10, 1, 3.46795158033368), 8)
    0.05
    """
    length, min_events, cv, rr = _design(length, min_events, cv, rr)
    total = 0.0
    for start, stop, need, alive in _march(length, min_events, cv, rr):
        total += _signal_probability(alive, need, rr * (stop - start))
    return min(total, 1.0)


def expected_time_to_signal(length: float, min_events: int, cv: float, rr: float) -> float:
    """Expected ``mu`` (events expected under the null) at the signal, given a signal."""
    return performance(length, min_events, cv, rr).signal_time


def minimum_length(min_events: int, alpha: float = 0.05) -> float:
    """Shortest surveillance length at which alpha can be spent with ``min_events``.

    The most liberal test signals at the ``M``-th event whenever it comes before ``T``; its alpha
    ``P(N(T) >= M) = P(Gamma(M) <= T)`` must reach the nominal alpha, so ``T >= Gamma(M)``'s
    alpha-quantile.

    Examples
    --------
    >>> round(minimum_length(4, 0.05), 6)
    1.366318
    """
    _check_alpha(alpha)
    return float(special.gammaincinv(_check_min_events(min_events), alpha))


def critical_value(length: float, min_events: int = 1, alpha: float = 0.05) -> float:
    """Exact critical value of the Poisson MaxSPRT (as R's ``Sequential::CV.Poisson``).

    The smallest CV whose signal probability under the null (a Poisson process, ``mu`` from 0 to
    ``length``, signals at event arrivals with at least ``min_events`` events) is at most
    ``alpha``. Cached: a detector asks for the same design again and again.

    Raises
    ------
    ValueError
        When no critical value reaches alpha (``length < minimum_length(min_events, alpha)``).

    Examples
    --------
    >>> round(critical_value(10, 1, 0.05), 6), round(critical_value(10, 3, 0.05), 6)
    (3.467952, 3.064248)
    """
    length = float(as_positive("length", length))
    _check_alpha(alpha)
    return _critical_value(length, _check_min_events(min_events), float(alpha))


@lru_cache(maxsize=1024)
def _critical_value(length: float, min_events: int, alpha: float) -> float:
    # Below LLR(M, T) every a_k (k >= M) lies beyond T: the test is "M events by T", flat in CV.
    floor = llr(min_events, length)
    most_liberal = float(special.gammainc(min_events, length))  # P(N(T) >= M)
    if most_liberal < alpha:
        raise ValueError(
            f"no critical value reaches alpha={alpha!r} with min_events={min_events} and "
            f"length={length!r}: even signalling at the {min_events}th event spends only "
            f"{most_liberal:.6g}; length must be at least {minimum_length(min_events, alpha):.6g}"
        )

    def excess(cv: float) -> float:
        return rejection_probability(length, min_events, cv) - alpha

    low = max(floor, _CV_TOLERANCE)
    high = max(2.0 * low, 1.0)
    while excess(high) > 0:
        low, high = high, 2.0 * high
    if excess(low) <= 0:  # the flat stretch already meets alpha exactly
        return low
    root = optimize.brentq(excess, low, high, xtol=_CV_TOLERANCE, rtol=4 * np.finfo(float).eps)
    while excess(root) > 0:  # never above nominal alpha: step to the conservative side
        root += _CV_TOLERANCE
    return root


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha <= 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5], got {alpha!r}")


def _check_min_events(min_events: int) -> int:
    if not (math.isfinite(min_events) and int(min_events) == min_events and min_events >= 1):
        raise ValueError(f"min_events must be a whole number >= 1, got {min_events!r}")
    return int(min_events)


def _design(
    length: float, min_events: int, cv: float, rr: float
) -> tuple[float, int, float, float]:
    length = float(as_positive("length", length))
    cv = float(as_positive("cv", cv))
    rr = float(as_positive("rr", rr))
    return length, _check_min_events(min_events), cv, rr


@dataclass(frozen=True)
class SequentialState:
    """Where one product x event MaxSPRT stands: stored between updates, moved by :func:`update`.

    ``expected`` and ``observed`` are the running totals (``mu``, ``c``); ``llr`` their LLR;
    ``alpha`` the nominal alpha the critical value was computed for; ``length`` and
    ``min_events`` the design (T, M). ``signalled_at`` is the ``mu`` of the first update whose
    LLR reached the critical value (None before); ``ended`` turns true at a signal or when
    ``mu`` reaches ``length``. ``alpha_spent`` is the exact null probability of a signal by the
    current ``mu`` (it reaches ``alpha`` at ``mu = length``).
    """

    expected: float
    observed: int
    llr: float
    critical_value: float
    alpha: float
    length: float
    min_events: int
    signalled_at: float | None = None
    ended: bool = False
    alpha_spent: float = 0.0


def start(length: float, min_events: int = 1, alpha: float = 0.05) -> SequentialState:
    """A new test: nothing expected, nothing observed, its exact critical value computed."""
    cv = critical_value(length, min_events, alpha)
    return SequentialState(0.0, 0, 0.0, cv, float(alpha), float(length), int(min_events))


def update(state: SequentialState, added_expected: float, added_observed: int) -> SequentialState:
    """The state after ``added_expected`` more expected events and ``added_observed`` events.

    Pure: returns a new state. An ended test is returned unchanged. A batch is judged at its end
    (its events are counted at the batch's full ``mu``, which can only lower the LLR), and a batch
    that carries ``mu`` past ``length`` is judged whole, then the test ends.

    Examples
    --------
    >>> s = update(start(10, min_events=3), 0.5, 2)  # 2 events: below M, no signal yet
    >>> s.observed, s.ended
    (2, False)
    >>> s = update(s, 0.1, 2)
    >>> round(s.llr, 4), s.signalled_at, s.ended
    (4.1885, 0.6, True)
    """
    if state.ended:
        return state
    mu_added = float(as_positive("added_expected", added_expected, allow_zero=True))
    c_added = int(as_counts("added_observed", added_observed))
    expected = state.expected + mu_added
    observed = state.observed + c_added
    statistic = llr(observed, expected)
    signalled = observed >= state.min_events and statistic >= state.critical_value
    spent = _alpha_spent(state, min(expected, state.length))
    return replace(
        state,
        expected=expected,
        observed=observed,
        llr=statistic,
        signalled_at=expected if signalled else None,
        ended=signalled or expected >= state.length,
        alpha_spent=spent,
    )


def _alpha_spent(state: SequentialState, mu: float) -> float:
    """Null probability of a signal by ``mu``: the spent part of the design's alpha.

    A MaxSPRT stopped at ``mu`` is the same test with length ``mu``, so this equals
    ``rejection_probability(mu, M, CV)``; the design's checkpoints are kept (cached) so that each
    update costs one interval's worth of work instead of a march from 0.
    """
    if mu <= 0:
        return 0.0
    starts, spent_before, alives, needs = _spending(
        state.length, state.min_events, state.critical_value
    )
    i = int(np.searchsorted(starts, mu, side="right")) - 1
    within = _signal_probability(alives[i], needs[i], mu - starts[i])
    return min(float(spent_before[i] + within), 1.0)


@lru_cache(maxsize=64)
def _spending(
    length: float, min_events: int, cv: float
) -> tuple[FloatArray, FloatArray, list[FloatArray], list[int]]:
    """Per interval of the null march: its start, the alpha spent before it, the chain, the need."""
    starts, spent_before, alives, needs = [], [], [], []
    spent = 0.0
    for begin, stop, need, alive in _march(length, min_events, cv, 1.0):
        starts.append(begin)
        spent_before.append(spent)
        alives.append(alive)
        needs.append(need)
        spent += _signal_probability(alive, need, stop - begin)
    return np.array(starts), np.array(spent_before), alives, needs
