"""The MGPS hyperparameter fit: openEBGM's objective, its CAERS optimum, bound reporting."""

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from detectors import mgps_fit
from detectors.mgps import Hyperparameters
from detectors.mgps_fit import Squash, fit_hyperparameters, negative_log_likelihood

CAERS_PUBLISHED_NEG_LL = 4162.456


def _caers_pairs(public_data):
    frame = pd.read_csv(public_data / "caers" / "caers.csv").drop_duplicates(["id", "var1", "var2"])
    reports = frame["id"].nunique()
    a = frame.groupby(["var1", "var2"]).size()
    n_product = frame.drop_duplicates(["id", "var1"]).groupby("var1").size()
    n_event = frame.drop_duplicates(["id", "var2"]).groupby("var2").size()
    products, events = a.index.get_level_values(0), a.index.get_level_values(1)
    e = n_product.loc[products].to_numpy() * n_event.loc[events].to_numpy() / reports
    return a.to_numpy().astype(float), e


def _scipy_neg_ll(theta, n, e):
    # openEBGM negLL with N_star = 1, written with scipy's negative binomial.
    def truncated(alpha, beta):
        prob = beta / (beta + e)
        return stats.nbinom.pmf(n, alpha, prob) / stats.nbinom.sf(0, alpha, prob)

    mixture = theta.p * truncated(theta.alpha1, theta.beta1) + (1 - theta.p) * truncated(
        theta.alpha2, theta.beta2
    )
    return -np.sum(np.log(mixture))


def test_objective_equals_scipy_negative_binomial_formula():
    rng = np.random.default_rng(5)
    n = rng.integers(1, 60, 500).astype(float)
    e = rng.gamma(0.8, 2, 500)
    for theta in (Hyperparameters(0.2, 0.1, 2, 4, 1 / 3), Hyperparameters(3.2, 0.4, 2, 1.9, 0.07)):
        assert negative_log_likelihood(theta, n, e) == pytest.approx(
            _scipy_neg_ll(theta, n, e), rel=1e-11
        )


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    points = mgps_fit._points(rng.integers(1, 30, 400), rng.gamma(0.8, 2, 400), None)
    u = np.array([np.log(0.7), np.log(0.3), np.log(3.0), np.log(2.0), -1.2])
    analytic = mgps_fit._objective(u, points)[1]
    numeric = optimize.approx_fprime(u, lambda v: mgps_fit._objective(v, points)[0], 1e-7)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-7)


def test_caers_fit_reaches_openebgm_likelihood(public_data):
    a, e = _caers_pairs(public_data)
    fit = fit_hyperparameters(a, e)
    assert fit.neg_log_likelihood <= CAERS_PUBLISHED_NEG_LL + 0.001
    assert fit.converged and fit.starts_agreeing >= 3 and not fit.on_bound
    np.testing.assert_allclose(fit.theta, (3.256, 0.400, 2.024, 1.906, 0.0653), rtol=2e-3)
    assert fit.pairs == 17189


def test_on_bound_is_reported_with_a_warning():
    # Poisson counts with no extra variation: the likelihood rises toward a point-mass prior.
    rng = np.random.default_rng(8)
    e = rng.gamma(2.0, 1.0, 5000)
    n = rng.poisson(e)
    fit = fit_hyperparameters(n[n > 0], e[n > 0])
    assert fit.on_bound
    assert any("sits on a bound" in warning for warning in fit.warnings)


def test_squashing_reports_its_effect_on_the_likelihood():
    rng = np.random.default_rng(9)
    e = rng.gamma(0.3, 3.0, 30_000)
    lam = np.where(rng.random(e.size) < 0.1, rng.gamma(2, 0.5, e.size), rng.gamma(20, 20, e.size))
    n = rng.poisson(lam * e)
    keep = n > 0
    exact = fit_hyperparameters(n[keep], e[keep])
    squashed = fit_hyperparameters(n[keep], e[keep], squashing=Squash())
    report = squashed.squashing
    assert report.points_after < report.points_before
    assert report.neg_log_likelihood_full == pytest.approx(squashed.neg_log_likelihood)
    assert report.neg_log_likelihood_full == pytest.approx(
        negative_log_likelihood(squashed.theta, n[keep], e[keep]), rel=1e-12
    )
    # Squashing may cost a little likelihood, never gain any over the exact optimum.
    assert exact.neg_log_likelihood <= report.neg_log_likelihood_full + 1e-6
    assert report.neg_log_likelihood_full - exact.neg_log_likelihood < 1.0


def test_fit_refuses_unobserved_pairs():
    with pytest.raises(ValueError, match="observed pairs only"):
        fit_hyperparameters([1, 0, 2], [0.5, 0.5, 0.5])


def test_canonical_order_puts_the_light_component_first():
    swapped = mgps_fit.canonical(Hyperparameters(2.0, 1.9, 3.2, 0.4, 0.93))
    assert swapped == pytest.approx((3.2, 0.4, 2.0, 1.9, 0.07))


def _squash_count_by_count(points, spec):
    """squashData written out point by point: each count's points by E (ties in input order),
    the `keep` largest kept, the others averaged in consecutive bins; small counts and large
    N untouched, after the squashed ones."""
    n, e, w, untouched = [], [], [], []
    triples = list(
        zip(points.n.tolist(), points.expected.tolist(), points.weight.tolist(), strict=True)
    )
    for count in sorted({t[0] for t in triples if t[0] <= spec.max_count}):
        group = sorted((t for t in triples if t[0] == count), key=lambda t: t[1])
        if len(group) < spec.min_points:
            untouched.append(count)
            continue
        binned = group[: max(len(group) - spec.keep, 0)]
        for start in range(0, len(binned), spec.bin_size):
            total = weighted = 0.0
            for _, value, weight in binned[start : start + spec.bin_size]:
                total += weight
                weighted += weight * value
            n.append(count)
            e.append(weighted / total)
            w.append(total)
        for count_, value, weight in group[len(binned) :]:
            n.append(count_)
            e.append(value)
            w.append(weight)
    for count_, value, weight in triples:
        if count_ > spec.max_count or count_ in untouched:
            n.append(count_)
            e.append(value)
            w.append(weight)
    return np.array(n), np.array(e), np.array(w)


@pytest.mark.parametrize("seed", range(6))
def test_squash_equals_the_count_by_count_definition(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(0, 1500))
    n = rng.geometric(0.4, size).astype(float)
    e = rng.choice(rng.gamma(0.5, 2.0, max(size // 3, 1)), size)  # ties in E too
    weight = rng.integers(1, 4, size).astype(float)
    points = mgps_fit._points(n, e, weight)
    spec = Squash(max_count=int(rng.integers(1, 6)), bin_size=7, keep=20, min_points=30)
    found = mgps_fit.squash(points, spec)
    for got, want in zip(
        (found.n, found.expected, found.weight), _squash_count_by_count(points, spec), strict=True
    ):
        np.testing.assert_array_equal(got, want)
