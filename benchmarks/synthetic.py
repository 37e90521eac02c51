"""Realistic heavy-tailed reports and pair counts for benchmarks, made by simulating reports.

Product and event popularity follow Zipf-like laws (as in FAERS: a few drugs and PTs take most
reports, most appear a handful of times); each report names 1-4 products and 1-6 events, and
each product raises a few characteristic events (true disproportionality). Pair
counts and margins are then counted over distinct reports, so they are mutually consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.counting import distinct, distinct_counts
from pvsignal.scoring import PairCounts

# FAERS-like vocabulary: about 8,000 products and 20,000 PTs carry the reports.
FAERS_PRODUCTS = 8_000
FAERS_EVENTS = 20_000


@dataclass(frozen=True)
class SimulatedRows:
    """One row per report x product x event (codes), like a case table."""

    report: np.ndarray
    product: np.ndarray
    event: np.ndarray
    reports: int
    products: int
    events: int
    product_report: np.ndarray  # the (report, product) slots, repeats kept
    product_slot: np.ndarray
    event_report: np.ndarray  # the (report, event) slots, repeats kept
    event_slot: np.ndarray

    def counted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distinct reports: (pair keys product * events + event, a, per product, per event)."""
        products, events = self.products, self.events
        triples = distinct(
            (self.report.astype(np.int64) * products + self.product) * events + self.event
        )
        keys, a = distinct_counts(triples % (products * events))
        del triples
        n_product = np.bincount(
            distinct(self.product_report.astype(np.int64) * products + self.product_slot)
            % products,
            minlength=products,
        )
        n_event = np.bincount(
            distinct(self.event_report.astype(np.int64) * events + self.event_slot) % events,
            minlength=events,
        )
        return keys, a, n_product, n_event


def _zipf_choice(
    rng: np.random.Generator, size: int, categories: int, exponent: float
) -> np.ndarray:
    weights = 1.0 / np.arange(1, categories + 1) ** exponent
    return rng.choice(categories, size=size, p=weights / weights.sum())


def simulate_rows(
    reports: int, products: int, events: int, *, seed: int = 0, report_offset: int = 0
) -> SimulatedRows:
    """Simulate ``reports`` reports over the given vocabulary sizes (codes, not labels)."""
    rng = np.random.default_rng(seed)
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
    return SimulatedRows(
        report=pair_report + report_offset,
        product=pair_product,
        event=pair_event,
        reports=reports,
        products=products,
        events=events,
        product_report=product_report + report_offset,
        product_slot=product,
        event_report=event_report + report_offset,
        event_slot=event,
    )


def simulate_pairs(target_pairs: int, *, seed: int = 0) -> PairCounts:
    """Simulate reports until about ``target_pairs`` distinct product–event pairs exist."""
    reports = int(target_pairs * 0.65)
    products, events = max(target_pairs // 20, 50), max(target_pairs // 150, 30)
    rows = simulate_rows(reports, products, events, seed=seed)
    keys, a, n_product, n_event = rows.counted()
    p_idx, e_idx = keys // events, keys % events
    n_total = float(reports)
    return PairCounts(
        a=a.astype(float),
        n_product=n_product[p_idx].astype(float),
        n_event=n_event[e_idx].astype(float),
        n_total=np.float64(n_total),
        expected=n_product[p_idx] * n_event[e_idx] / n_total,
    )


def product_label(code: np.ndarray) -> np.ndarray:
    """FAERS-like product names for codes: ``DRUG-000042``."""
    return np.char.add("DRUG-", np.char.zfill(code.astype(str), 6)).astype(object)


def event_label(code: np.ndarray) -> np.ndarray:
    """PT-like names for codes: ``Reaction term 00042``."""
    return np.char.add("Reaction term ", np.char.zfill(code.astype(str), 5)).astype(object)


def case_table_rows(rows: int, *, seed: int = 0) -> SimulatedRows:
    """About ``rows`` case-table rows over the FAERS-like vocabulary (~4.5 rows per report)."""
    return simulate_rows(max(rows * 100 // 454, 1), FAERS_PRODUCTS, FAERS_EVENTS, seed=seed)


def write_case_table(rows: SimulatedRows, path) -> int:
    """Write the rows as a CSV case table (``id,product,event``); return the rows written."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    products = product_label(np.arange(rows.products))
    events = event_label(np.arange(rows.events))
    table = pa.table(
        {
            "id": pa.array(np.char.add("R", rows.report.astype(str))),
            "product": pa.DictionaryArray.from_arrays(rows.product, pa.array(products)),
            "event": pa.DictionaryArray.from_arrays(rows.event, pa.array(events)),
        }
    )
    pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="none"))
    return table.num_rows
