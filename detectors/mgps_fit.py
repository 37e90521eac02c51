"""Maximum-likelihood hyperparameters of the MGPS prior.

The observed pairs (``N >= 1``) follow a mixture of two negative binomials, each truncated at
zero as in openEBGM's ``negLL``/``autoHyper`` [2]_ so that fits compare with theirs::

    L(theta) = prod_i [P f1(N_i) / (1 - f1(0)) + (1 - P) f2(N_i) / (1 - f2(0))]^w_i

with ``f_k`` the negative binomial of :func:`detectors.mgps.log_negative_binomial` and ``w_i``
the weight of point i (1, or the size of a squashed bin). The likelihood surface is flat, so the
fit runs from several starting points with analytic gradients and reports how many agree.

References
----------
.. [1] DuMouchel W, Pregibon D (2001). Empirical Bayes screening for multi-item associations.
   Proc. KDD '01, 67-76.
.. [2] Canida T, Ihrie J (2017). openEBGM. R Journal 9:499-519.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special

from detectors._arrays import FloatArray, as_counts, as_positive, exp_floored
from detectors.counting import run_starts
from detectors.mgps import Hyperparameters

PARAMETERS = Hyperparameters._fields

# Starting points spread over the shapes the surface usually has: a small, dispersed
# "signal" component and a concentrated background one, in both orders.
DEFAULT_STARTS: tuple[Hyperparameters, ...] = (
    Hyperparameters(0.2, 0.1, 2.0, 4.0, 1 / 3),
    Hyperparameters(3.0, 0.4, 2.0, 2.0, 0.07),
    Hyperparameters(0.5, 0.5, 5.0, 5.0, 0.5),
    Hyperparameters(1.0, 0.1, 10.0, 10.0, 0.2),
    Hyperparameters(2.0, 4.0, 0.2, 0.1, 2 / 3),
    Hyperparameters(0.05, 0.05, 1.0, 1.0, 0.1),
)


@dataclass(frozen=True)
class Bounds:
    """Box constraints of the search. theta on a bound is reported, never hidden."""

    shape: tuple[float, float] = (1e-6, 1e4)
    rate: tuple[float, float] = (1e-6, 1e4)
    p: tuple[float, float] = (1e-6, 1 - 1e-6)

    def transformed(self) -> list[tuple[float, float]]:
        """Bounds in the search space (log alpha, log beta, logit P)."""
        log_shape, log_rate = np.log(self.shape), np.log(self.rate)
        logit_p = special.logit(np.asarray(self.p))
        return [
            tuple(log_shape),
            tuple(log_rate),
            tuple(log_shape),
            tuple(log_rate),
            tuple(logit_p),
        ]


@dataclass(frozen=True)
class Squash:
    """Data squashing (DuMouchel & Pregibon 2001, as openEBGM's ``squashData``).

    For each count ``N <= max_count`` the points are sorted by E; the ``keep`` largest E stay as
    they are, the rest are averaged in consecutive bins of ``bin_size`` points, each bin becoming
    one point of weight ``bin_size``. Counts with fewer than ``min_points`` points are untouched.
    """

    max_count: int = 4
    bin_size: int = 50
    keep: int = 100
    min_points: int = 500


# Large inputs are searched on a coarse squash (every count, small bins); the best search result
# is then refined on the fitted points, so the reported theta maximises their likelihood.
_SEARCH_POINTS = 20_000
_SEARCH_SQUASH = Squash(max_count=2**31, bin_size=20, keep=50, min_points=100)


@dataclass(frozen=True)
class SquashReport:
    """What squashing did: sizes, and the likelihood of the squashed optimum on the squashed
    points and on the full points (the fit's reported likelihood is the full one)."""

    points_before: int
    points_after: int
    neg_log_likelihood_squashed: float
    neg_log_likelihood_full: float


@dataclass(frozen=True)
class StartResult:
    """One local optimisation from one starting point."""

    start: Hyperparameters
    theta: Hyperparameters
    neg_log_likelihood: float
    converged: bool
    projected_gradient: float
    iterations: int
    evaluations: int
    message: str


@dataclass(frozen=True)
class Fit:
    """The fitted prior with its convergence report."""

    theta: Hyperparameters
    neg_log_likelihood: float
    converged: bool
    iterations: int
    starts: int
    starts_agreeing: int
    on_bound: tuple[str, ...]
    warnings: tuple[str, ...]
    pairs: int
    points: int
    seconds: float
    squashing: SquashReport | None = None
    runs: tuple[StartResult, ...] = field(default=(), repr=False)

    def report(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "theta": self.theta._asdict(),
            "neg_log_likelihood": self.neg_log_likelihood,
            "converged": self.converged,
            "iterations": self.iterations,
            "starts": self.starts,
            "starts_agreeing": self.starts_agreeing,
            "on_bound": list(self.on_bound),
            "warnings": list(self.warnings),
            "pairs": self.pairs,
            "points": self.points,
            "seconds": self.seconds,
            "squashing": None if self.squashing is None else vars(self.squashing),
            "runs": [
                {
                    "start": r.start._asdict(),
                    "theta": r.theta._asdict(),
                    "neg_log_likelihood": r.neg_log_likelihood,
                    "converged": r.converged,
                    "projected_gradient": r.projected_gradient,
                    "iterations": r.iterations,
                    "evaluations": r.evaluations,
                    "message": r.message,
                }
                for r in self.runs
            ],
        }


class _Points:
    """Weighted (N, E) points with the per-count tables the likelihood needs."""

    def __init__(self, n: FloatArray, expected: FloatArray, weight: FloatArray) -> None:
        self.n, self.expected, self.weight = n, expected, weight
        self.log_expected = np.log(expected)
        self.counts, self.count_index = np.unique(n, return_inverse=True)
        self.log_factorial = special.gammaln(self.counts + 1)[self.count_index]
        self.total_weight = float(weight.sum())
        # Each point's share of the total: the objective is a mean, so tolerances do not
        # depend on the number of pairs.
        self.share = weight / self.total_weight

    @property
    def size(self) -> int:
        return self.n.size


def _component(points: _Points, alpha: float, beta: float) -> tuple[FloatArray, ...]:
    """Log zero-truncated NB density of each point and its derivatives in (ln alpha, ln beta)."""
    n, expected = points.n, points.expected
    beta_plus_e = beta + expected
    log_beta_plus_e = np.log(beta_plus_e)
    log_prob = np.log(beta) - log_beta_plus_e  # ln(beta / (beta + E))
    log_f0 = alpha * log_prob  # ln f(0)
    log_tail = np.log(-np.expm1(log_f0))  # ln(1 - f(0))
    lgamma_table = special.gammaln(alpha + points.counts) - special.gammaln(alpha)
    log_density = (
        lgamma_table[points.count_index]
        - points.log_factorial
        + log_f0
        + n * (points.log_expected - log_beta_plus_e)
        - log_tail
    )
    # d/d alpha and d/d beta of ln f(n) - ln(1 - f(0)), then times alpha (beta) for the log scale.
    odds = exp_floored(log_f0 - log_tail)  # f(0) / (1 - f(0))
    digamma_table = special.digamma(alpha + points.counts) - special.digamma(alpha)
    d_alpha = digamma_table[points.count_index] + log_prob * (1 + odds)
    d_log_f0_beta = alpha * expected / (beta * beta_plus_e)
    d_beta = alpha / beta - (alpha + n) / beta_plus_e + odds * d_log_f0_beta
    return log_density, alpha * d_alpha, beta * d_beta


def _objective(u: FloatArray, points: _Points) -> tuple[float, FloatArray]:
    """Negative log-likelihood and its gradient in u = (ln a1, ln b1, ln a2, ln b2, logit P)."""
    alpha1, beta1, alpha2, beta2 = np.exp(u[:4])
    p = special.expit(u[4])
    log_g1, da1, db1 = _component(points, alpha1, beta1)
    log_g2, da2, db2 = _component(points, alpha2, beta2)
    first = np.log(p) + log_g1
    second = np.log1p(-p) + log_g2
    log_likelihood = np.logaddexp(first, second)
    r1 = exp_floored(first - log_likelihood)  # responsibility of component 1
    w = points.share  # mean per report pair: tolerances independent of size
    w_r1, w_r2 = w * r1, w * (1 - r1)
    # Weighted sums without BLAS: numpy's and scipy's bundled OpenBLAS thread pools contend
    # when dot products alternate with L-BFGS-B's own BLAS calls (8x slower on 2 cores).
    gradient = np.array(
        [
            np.sum(w_r1 * da1),
            np.sum(w_r1 * db1),
            np.sum(w_r2 * da2),
            np.sum(w_r2 * db2),
            np.sum(w * (r1 - p)),  # d/d logit P of ln(P g1 + (1-P) g2)
        ]
    )
    return -float(np.sum(w * log_likelihood)), -gradient


def _to_search(theta: Hyperparameters) -> FloatArray:
    return np.array([*np.log(theta[:4]), special.logit(theta.p)])


def _from_search(u: FloatArray) -> Hyperparameters:
    return Hyperparameters(*(float(v) for v in np.exp(u[:4])), float(special.expit(u[4])))


def canonical(theta: Hyperparameters) -> Hyperparameters:
    """The same prior with its components ordered so that the first has weight P <= 1/2.

    Swapping the components leaves the model unchanged; fixing the order makes fits from
    different starts (and openEBGM's, whose signal component is usually the small one)
    comparable at a glance.
    """
    if theta.p <= 0.5:
        return theta
    return Hyperparameters(theta.alpha2, theta.beta2, theta.alpha1, theta.beta1, 1 - theta.p)


def negative_log_likelihood(
    theta: Hyperparameters, n: ArrayLike, expected: ArrayLike, weight: ArrayLike | None = None
) -> float:
    """Zero-truncated mixture negative log-likelihood of the observed pairs (openEBGM's ``negLL``
    with ``N_star = 1``; with weights, its ``negLLsquash``)."""
    points = _points(n, expected, weight)
    return _objective(_to_search(theta), points)[0] * points.total_weight


def _points(n: ArrayLike, expected: ArrayLike, weight: ArrayLike | None) -> _Points:
    n = as_counts("n", n).ravel()
    expected = as_positive("expected", expected).ravel()
    if n.size != expected.size:
        raise ValueError(f"n and expected differ in length: {n.size} != {expected.size}")
    if n.size and n.min() < 1:
        index = int(np.argmin(n))
        raise ValueError(f"the fit uses observed pairs only (n >= 1); element {index} has n=0")
    weight = np.ones_like(n) if weight is None else as_positive("weight", weight).ravel()
    return _Points(n, expected, weight)


def collapse(points: _Points) -> _Points:
    """Merge identical (N, E) points into one weighted point: lossless, often a large saving.

    The points come out ordered by E, then N. One stable sort on both keys (two ``np.unique``
    with inverses cost three sorts); weights of a group add in their input order."""
    order = np.lexsort((points.n, points.expected))
    n, e, weight = points.n[order], points.expected[order], points.weight[order]
    starts = np.ones(n.size, dtype=bool)
    starts[1:] = (e[1:] != e[:-1]) | (n[1:] != n[:-1])
    first = np.flatnonzero(starts)
    merged = np.bincount(np.cumsum(starts) - 1, weights=weight, minlength=first.size)
    return _Points(n[first], e[first], merged)


def squash(points: _Points, spec: Squash) -> _Points:
    """Average E within bins of points sharing a small count (see :class:`Squash`)."""
    keep_n, keep_e, keep_w = [], [], []
    # One stable sort by (N, E) lays out every count's points by E, ties in input order.
    order = np.lexsort((points.expected, points.n))
    n_sorted = points.n[order]
    first = np.flatnonzero(run_starts(n_sorted))
    sizes = np.diff(first, append=n_sorted.size)
    rest = points.n > spec.max_count
    for begin, size in zip(first.tolist(), sizes.tolist(), strict=True):
        count = n_sorted[begin]
        if count > spec.max_count:
            break
        members = order[begin : begin + size]
        if size < spec.min_points:
            rest[members] = True
            continue
        e, w = points.expected[members], points.weight[members]
        kept = max(e.size - spec.keep, 0)
        bins = np.arange(kept) // spec.bin_size
        weight = np.bincount(bins, weights=w[:kept])
        keep_e += [np.bincount(bins, weights=w[:kept] * e[:kept]) / weight, e[kept:]]
        keep_w += [weight, w[kept:]]
        keep_n.append(np.full(weight.size + e.size - kept, count))
    n = np.concatenate([*keep_n, points.n[rest]])
    return _Points(
        n,
        np.concatenate([*keep_e, points.expected[rest]]),
        np.concatenate([*keep_w, points.weight[rest]]),
    )


_GRADIENT_TOLERANCE = 1e-5


def _projected_gradient(
    u: FloatArray, gradient: FloatArray, limits: list[tuple[float, float]]
) -> float:
    """Largest gradient component that could still move u inside the box (mean scale)."""
    lower = np.array([lo for lo, _ in limits])
    upper = np.array([hi for _, hi in limits])
    blocked = ((u <= lower + 1e-12) & (gradient > 0)) | ((u >= upper - 1e-12) & (gradient < 0))
    return float(np.max(np.abs(np.where(blocked, 0.0, gradient))))


def _minimise(start: Hyperparameters, points: _Points, bounds: Bounds) -> StartResult:
    """One L-BFGS-B run in the search space; the reported likelihood is the summed one."""
    limits = bounds.transformed()
    u0 = np.clip(_to_search(start), [lo for lo, _ in limits], [hi for _, hi in limits])
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        result = optimize.minimize(
            _objective,
            u0,
            args=(points,),
            jac=True,
            method="L-BFGS-B",
            bounds=limits,
            options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-8},
        )
    gradient = _projected_gradient(result.x, result.jac, limits)
    # L-BFGS-B stops "abnormally" when float noise defeats its line search at the optimum;
    # a vanishing projected gradient says the run did converge all the same.
    converged = bool(result.success) or gradient <= _GRADIENT_TOLERANCE
    return StartResult(
        start=start,
        theta=canonical(_from_search(result.x)),
        neg_log_likelihood=float(result.fun) * points.total_weight,
        converged=converged,
        projected_gradient=gradient,
        iterations=int(result.nit),
        evaluations=int(result.nfev),
        message=str(result.message),
    )


def _on_bound(theta: Hyperparameters, bounds: Bounds) -> tuple[str, ...]:
    u = _to_search(theta)
    return tuple(
        name
        for name, value, (lo, hi) in zip(PARAMETERS, u, bounds.transformed(), strict=True)
        if min(value - lo, hi - value) < 1e-3
    )


def fit_hyperparameters(
    n: ArrayLike,
    expected: ArrayLike,
    *,
    starts: tuple[Hyperparameters, ...] = DEFAULT_STARTS,
    bounds: Bounds = Bounds(),
    squashing: Squash | None = None,
    agreement: float = 1e-3,
) -> Fit:
    """Fit theta by maximum likelihood over the observed pairs, from several starts.

    Parameters
    ----------
    n, expected : array_like
        Count (>= 1) and expected count of each observed pair.
    starts : tuple of Hyperparameters
        Starting points; each is optimised (L-BFGS-B, analytic gradient, in log/logit space).
    bounds : Bounds
        Box constraints; a fitted parameter within 1e-3 (search scale) of one is reported.
    squashing : Squash, optional
        Squash the points before fitting; the report then gives the full-data likelihood at the
        squashed fit too.
    agreement : float
        Starts whose optimum is within this of the best negative log-likelihood agree.

    Returns
    -------
    Fit
        The best run, convergence flag, iteration count, agreement and warnings.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> e = rng.gamma(1.0, 1.0, 4000)
    >>> lam = np.where(rng.random(4000) < 0.1, rng.gamma(2, 0.5, 4000), rng.gamma(20, 20, 4000))
    >>> n = rng.poisson(lam * e)
    >>> fit = fit_hyperparameters(n[n > 0], e[n > 0])
    >>> fit.converged, fit.starts_agreeing > 1
    (True, True)
    """
    began = time.perf_counter()
    observed = _points(n, expected, None)
    full = collapse(observed)
    if full.size == 0:
        raise ValueError("no observed pairs to fit the MGPS prior on")
    points = full if squashing is None else squash(full, squashing)
    search = points if points.size <= _SEARCH_POINTS else squash(points, _SEARCH_SQUASH)
    runs = tuple(_minimise(start, search, bounds) for start in starts)
    best = min(runs, key=lambda run: run.neg_log_likelihood)
    agreeing = sum(run.neg_log_likelihood <= best.neg_log_likelihood + agreement for run in runs)
    if search is not points:
        best = _minimise(best.theta, points, bounds)
        runs = (*runs, best)
    report = None
    if squashing is not None:
        full_likelihood = negative_log_likelihood(best.theta, full.n, full.expected, full.weight)
        report = SquashReport(
            points_before=full.size,
            points_after=points.size,
            neg_log_likelihood_squashed=best.neg_log_likelihood,
            neg_log_likelihood_full=full_likelihood,
        )
        best = replace(best, neg_log_likelihood=full_likelihood)
    on_bound = _on_bound(best.theta, bounds)
    return Fit(
        theta=best.theta,
        neg_log_likelihood=best.neg_log_likelihood,
        converged=best.converged,
        iterations=best.iterations,
        starts=len(starts),
        starts_agreeing=agreeing,
        on_bound=on_bound,
        warnings=_warnings(best, on_bound, agreeing, len(starts)),
        pairs=observed.size,
        points=full.size,
        seconds=time.perf_counter() - began,
        squashing=report,
        runs=runs,
    )


def _warnings(
    best: StartResult, on_bound: tuple[str, ...], agreeing: int, starts: int
) -> tuple[str, ...]:
    warnings = []
    if on_bound:
        warnings.append(
            f"theta sits on a bound of the search ({', '.join(on_bound)}): the likelihood "
            "keeps rising toward the edge of the parameter space, so this prior is a limit, "
            "not an interior maximum; interval estimates of theta do not exist there"
        )
    if not best.converged:
        warnings.append(f"the best run did not converge: {best.message}")
    if agreeing < 2 < starts + 1:
        warnings.append("only one start reached the best likelihood; the optimum may be local")
    return tuple(warnings)
