"""Incidence and observed/expected from exposures: per scope, product, PT and period.

- **Cases**: the scope's distinct cases of the product × PT (the same counts as signals), by
  received month; **patients exposed**: the sum of ``patients`` of the scope's active
  exposures of the product, by the month of their start (``pvsignal.exposures``).
- **Incidence** per 1,000 patients exposed, with the exact (Garwood) Poisson interval:
  ``detectors.poisson.rate_interval``. Where every exposure of the group gives its
  patient-time, the rate per 1,000 patient-years too.
- **Observed/expected** against the scope's reference rates (``Scope.monitoring``): expected =
  Σ over age band × sex of the patients exposed in the stratum × its reference rate (the most
  specific matching entry, see ``ReferenceRate``); the ratio with its exact interval
  (``ratio_interval``). A stratum with exposed patients and no matching rate leaves the
  expected count unknown (None) rather than silently low.

``period`` groups months: ``total`` (one row per product × PT), ``year``, ``quarter`` or
``month``; a case without a received date counts in the ``unknown`` period (and in ``total``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.poisson import rate_interval, ratio_interval
from pvsignal.exposures import UNKNOWN, CountedExposure, admits_exposure
from pvsignal.institutions import InstitutionRegistry
from pvsignal.products import Registry, ResolvedProduct
from pvsignal.reports import Product
from pvsignal.scopes import ReferenceRate, Scope
from pvsignal.store import SqlStore

PERIODS = ("total", "year", "quarter", "month")
TOTAL = "total"
DAYS_PER_YEAR = 365.25
COLUMNS = (
    "scope",
    "product_id",
    "pt",
    "period",
    "cases",
    "patients",
    "patient_years",
    "incidence_per_1000",
    "incidence_lower",
    "incidence_upper",
    "per_1000_patient_years",
    "per_1000_patient_years_lower",
    "per_1000_patient_years_upper",
    "expected",
    "reference",
    "oe",
    "oe_lower",
    "oe_upper",
    "level",
)


def bucket(month: str, period: str) -> str:
    """The ``period`` a month (``YYYY-MM`` or ``unknown``) falls in."""
    if period == TOTAL:
        return TOTAL
    if month == UNKNOWN or period == "month":
        return month
    year, number = month.split("-")
    return year if period == "year" else f"{year}-Q{(int(number) - 1) // 3 + 1}"


@dataclass
class Exposed:
    """Patients exposed in one group: in total, per (age band, sex), and their patient-time."""

    patients: int = 0
    strata: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    patient_days: float = 0.0
    untimed: int = 0  # patients of exposures that give no patient-time

    def add(self, exposure: CountedExposure) -> None:
        self.patients += exposure.patients
        self.strata[exposure.age_band, exposure.sex] += exposure.patients
        self.patient_days += exposure.patient_days
        self.untimed += exposure.untimed


def exposed_in_scope(
    rows: Iterable[CountedExposure],
    scope: Scope,
    registry: Registry,
    institutions: InstitutionRegistry,
    period: str = TOTAL,
) -> dict[str, dict[str, Exposed]]:
    """product -> period -> patients exposed, of the exposures the scope's filter admits."""
    table: dict[str, dict[str, Exposed]] = defaultdict(lambda: defaultdict(Exposed))
    everything = scope.filter.admits_everything
    # Few products and institutions, many exposures: each resolved once.
    products: dict[str, ResolvedProduct] = {}
    regions: dict[str | None, str | None] = {}
    for row in rows:
        if not everything:
            product = products.get(row.product)
            if product is None:
                product = products[row.product] = registry.resolve(Product(product_id=row.product))
            if row.institution not in regions:
                regions[row.institution] = institutions.region_of(row.institution)
            if not admits_exposure(scope.filter, row, product, regions[row.institution]):
                continue
        table[row.product][bucket(row.period, period)].add(row)
    return table


def reference_rate(
    references: Iterable[ReferenceRate], pt: str, age_band: str, sex: str
) -> ReferenceRate | None:
    """The most specific reference for the PT that matches the stratum, if any."""
    best, best_rank = None, -1
    for reference in references:
        if reference.pt != pt:
            continue
        if reference.age_band is not None and reference.age_band != age_band:
            continue
        if reference.sex is not None and reference.sex.value != sex:
            continue
        rank = 2 * (reference.age_band is not None) + (reference.sex is not None)
        if rank > best_rank:
            best, best_rank = reference, rank
    return best


def expected_cases(
    exposed: Exposed, references: Iterable[ReferenceRate], pt: str
) -> tuple[float | None, str | None]:
    """Σ patients × reference rate over the strata, and the references' source (``label``,
    ``background`` or ``mixed``); (None, None) when a stratum has no rate for the PT."""
    references = list(references)
    total, sources = 0.0, set()
    for (age_band, sex), patients in exposed.strata.items():
        if not patients:
            continue
        reference = reference_rate(references, pt, age_band, sex)
        if reference is None:
            return None, None
        total += patients * reference.per_1000 / 1000.0
        sources.add(reference.source)
    if not sources:
        return (0.0, None) if exposed.patients == 0 else (None, None)
    return total, sources.pop() if len(sources) == 1 else "mixed"


def observed_cases(
    store: SqlStore, scope: str, products: Iterable[str], period: str = TOTAL
) -> dict[tuple[str, str], dict[str, int]]:
    """(product, PT) -> period -> cases in the scope."""
    table: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for product, event, month, a in store.case_periods(scope, products):
        table[product, event][bucket(month, period)] += a
    return table


@dataclass(frozen=True)
class RateQuery:
    scope: Scope
    products: list[str] | None = None  # None: every exposed product
    pts: list[str] | None = None  # None: every PT with cases or a reference rate
    period: str = TOTAL
    level: float = 0.95


def rates(
    store: SqlStore,
    query: RateQuery,
    registry: Registry,
    institutions: InstitutionRegistry,
) -> list[dict[str, Any]]:
    """One row per (product, PT, period) with exposure, sorted (see COLUMNS)."""
    scope = query.scope
    products = query.products if query.products is not None else store.exposed_products()
    exposed = exposed_in_scope(
        store.exposure_counts(products), scope, registry, institutions, query.period
    )
    cases = observed_cases(store, scope.name, exposed, query.period)
    found = []
    for product in sorted(exposed):
        monitored = scope.monitoring.product(product)
        references = [] if monitored is None else list(monitored.references)
        pts = set(query.pts) if query.pts is not None else _pts(cases, product, references)
        for pt in sorted(pts):
            by_period = cases.get((product, pt), {})
            for period in sorted(set(exposed[product]) | set(by_period)):
                group = exposed[product].get(period, Exposed())
                observed = by_period.get(period, 0)
                found.append(
                    _row(scope.name, product, pt, period, observed, group, references, query)
                )
    return found


def _pts(
    cases: dict[tuple[str, str], dict[str, int]], product: str, references: list[ReferenceRate]
) -> set[str]:
    return {pt for p, pt in cases if p == product} | {r.pt for r in references}


def _row(
    scope: str,
    product: str,
    pt: str,
    period: str,
    observed: int,
    exposed: Exposed,
    references: list[ReferenceRate],
    query: RateQuery,
) -> dict[str, Any]:
    incidence = rate_interval(observed, exposed.patients, query.level, per=1000.0)
    timed = exposed.untimed == 0 and exposed.patient_days > 0
    years = exposed.patient_days / DAYS_PER_YEAR
    per_years = rate_interval(observed, years if timed else 0.0, query.level, per=1000.0)
    expected, source = expected_cases(exposed, references, pt)
    ratio = ratio_interval(observed, expected, query.level) if expected is not None else None
    return {
        "scope": scope,
        "product_id": product,
        "pt": pt,
        "period": period,
        "cases": observed,
        "patients": exposed.patients,
        "patient_years": years if exposed.patient_days > 0 else None,
        "incidence_per_1000": _plain(incidence.estimate),
        "incidence_lower": _plain(incidence.lower),
        "incidence_upper": _plain(incidence.upper),
        "per_1000_patient_years": _plain(per_years.estimate) if timed else None,
        "per_1000_patient_years_lower": _plain(per_years.lower) if timed else None,
        "per_1000_patient_years_upper": _plain(per_years.upper) if timed else None,
        "expected": expected,
        "reference": source,
        "oe": None if ratio is None else _plain(ratio.estimate),
        "oe_lower": None if ratio is None else _plain(ratio.lower),
        "oe_upper": None if ratio is None else _plain(ratio.upper),
        "level": query.level,
    }


def _plain(value: Any) -> float | None:
    """A JSON number, or None where the statistic is undefined (no exposure: 0/0, c/0)."""
    number = float(np.asarray(value))
    return number if np.isfinite(number) else None
