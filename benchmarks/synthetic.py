"""Realistic heavy-tailed pair counts for benchmarks, made by simulating reports.

Product and event popularity follow Zipf-like laws (as in FAERS: a few drugs and PTs take most
reports, most appear a handful of times); each report names 1-4 products and 1-6 events, and
each product raises a few characteristic events (true disproportionality). Pair
counts and margins are then counted over distinct reports, so they are mutually consistent.
"""

from __future__ import annotations

import numpy as np

from pvsignal.scoring import PairCounts


def _zipf_choice(
    rng: np.random.Generator, size: int, categories: int, exponent: float
) -> np.ndarray:
    weights = 1.0 / np.arange(1, categories + 1) ** exponent
    return rng.choice(categories, size=size, p=weights / weights.sum())


def simulate_reports(
    rng: np.random.Generator, reports: int, products: int, events: int
) -> tuple[np.ndarray, ...]:
    """Reports naming Zipf-distributed products and events: (report, product, event) of every
    product x event slot, then (report, product) and (report, event) of every slot."""
    per_report_products = rng.choice([1, 2, 3, 4], size=reports, p=[0.55, 0.25, 0.12, 0.08])
    per_report_events = rng.choice(
        [1, 2, 3, 4, 5, 6], size=reports, p=[0.3, 0.25, 0.18, 0.12, 0.09, 0.06]
    )
    product_report = np.repeat(np.arange(reports), per_report_products)
    product = _zipf_choice(rng, product_report.size, products, 1.1)
    event_report = np.repeat(np.arange(reports), per_report_events)
    event = _zipf_choice(rng, event_report.size, events, 1.0)
    # Real products raise some events: a quarter of reports carry one of the first product's
    # three characteristic events (themselves common or rare as events are), which gives the
    # overdispersion that MGPS shrinks.
    affinity = _zipf_choice(rng, products * 3, events, 1.0).reshape(products, 3)
    first_slot = np.concatenate([[0], np.cumsum(per_report_events)[:-1]])
    first_product = product[np.concatenate([[0], np.cumsum(per_report_products)[:-1]])]
    reacts = rng.random(reports) < 0.25
    event[first_slot[reacts]] = affinity[first_product[reacts], rng.integers(0, 3, reacts.sum())]
    # Cross products within each report: pair every product slot with every event slot.
    repeats = per_report_events[product_report]
    pair_report = np.repeat(product_report, repeats)
    offsets = np.arange(pair_report.size) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    pair_product = np.repeat(product, repeats)
    pair_event = event[first_slot[pair_report] + offsets]
    return pair_report, pair_product, pair_event, product_report, product, event_report, event


def simulate_pairs(target_pairs: int, *, seed: int = 0) -> PairCounts:
    """Simulate reports until about ``target_pairs`` distinct product–event pairs exist."""
    rng = np.random.default_rng(seed)
    reports = int(target_pairs * 0.65)
    products, events = max(target_pairs // 20, 50), max(target_pairs // 150, 30)
    pair_report, pair_product, pair_event, product_report, product, event_report, event = (
        simulate_reports(rng, reports, products, events)
    )
    triples = np.unique(
        (pair_report.astype(np.int64) * products + pair_product) * events + pair_event
    )
    pair_key = triples % (products * events)
    keys, a = np.unique(pair_key, return_counts=True)
    n_product = np.bincount(
        np.unique(product_report.astype(np.int64) * products + product) % products,
        minlength=products,
    )
    n_event = np.bincount(
        np.unique(event_report.astype(np.int64) * events + event) % events, minlength=events
    )
    p_idx, e_idx = keys // events, keys % events
    n_total = float(reports)
    return PairCounts(
        a=a.astype(float),
        n_product=n_product[p_idx].astype(float),
        n_event=n_event[e_idx].astype(float),
        n_total=np.float64(n_total),
        expected=n_product[p_idx] * n_event[e_idx] / n_total,
    )
