"""One pair's trend over received periods: new and cumulative counts, every measure per period.

The store keeps counts per received month (C.1.5; see migration 8): per pair, per product and
per event within each stratum, and the scope's total per stratum. Quarters and years are sums
of months. For each period of the axis — every month (quarter, year) from the scope's first
dated report to its last, gaps included — the trend gives

- ``new``: the counts of the cases received within the period (EVDAS eRMR's "new"), and
- ``total``: the counts cumulative to the period's end, with the (stratified) expected count
  and every measure, its bounds and its flag computed from them, under the MGPS prior given
  (the scope's current one), exactly as ``/v1/signals`` scores the current counts.

Reports that state no received date are counted in the period ``unknown``: it comes last, its
``new`` are those reports and its ``total`` is everything (so the last row equals the pair's
current statistics, and the ``new`` counts always sum to the last ``total``). A case counts
once, in its latest version's month: a follow-up received later moves the case to that month.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from detectors.mgps import Hyperparameters
from detectors.table import expected as unstratified_expected
from detectors.table import stratified_expected
from pvsignal.cases import UNKNOWN_PERIOD
from pvsignal.scoring import STATISTICS, PairCounts, ScoringConfig, score
from pvsignal.store.series import PeriodCounts

Period = Literal["month", "quarter", "year"]
PERIODS: tuple[Period, ...] = ("month", "quarter", "year")
COUNTS = ("a", "n_product", "n_event", "n_total")
_MONTHS_PER = {"month": 1, "quarter": 3, "year": 12}


@dataclass(frozen=True)
class Trend:
    """Per period (``labels``, oldest first, ``unknown`` last if any): counts within the
    period (``new``) and the statistics of the counts cumulative to its end."""

    period: Period
    labels: list[str]
    new: dict[str, np.ndarray]
    statistics: dict[str, np.ndarray]

    def rows(self) -> list[dict[str, object]]:
        """One record per period: ``new`` counts, ``total`` counts and the measures."""
        records = []
        for i, label in enumerate(self.labels):
            stats = {name: _plain(self.statistics[name][i]) for name in STATISTICS}
            records.append(
                {
                    "period": label,
                    "new": {name: int(self.new[name][i]) for name in COUNTS},
                    "total": {name: stats.pop(name) for name in (*COUNTS, "expected")},
                    **stats,
                }
            )
        return records


def _plain(value: np.generic) -> object:
    if isinstance(value, np.bool_):
        return bool(value)
    number = float(value)
    return number if np.isfinite(number) else None


def _scored(
    counts: PairCounts, theta: Hyperparameters, config: ScoringConfig | None
) -> dict[str, np.ndarray]:
    """Every statistic per period, where the pair has a case (as in ``/v1/signals``, which
    lists pairs with a >= 1); before the pair's first case the measures are null (undefined:
    E may be 0, the MGPS quantiles of a = 0 underflow) and no flag is on."""
    defined = (counts.expected > 0) & (counts.a > 0)
    kept = PairCounts(*(np.asarray(x)[defined] for x in counts.__dict__.values()))
    scored = score(kept, theta, config or ScoringConfig()) if defined.any() else {}
    result = {}
    for name in STATISTICS:
        if name in ("a", "n_product", "n_event", "n_total", "expected"):
            result[name] = np.asarray(getattr(counts, name), dtype=np.float64)
            continue
        flag = name.startswith("signal_")
        column = np.zeros(defined.size, bool) if flag else np.full(defined.size, np.nan)
        if defined.any():
            column[defined] = scored[name]
        result[name] = column
    return result


def _bucket(months: np.ndarray, period: Period) -> np.ndarray:
    """Month numbers (year * 12 + month - 1) to period numbers of the granularity."""
    return months // _MONTHS_PER[period]


def _label(bucket: int, period: Period) -> str:
    if period == "month":
        return f"{bucket // 12:04d}-{bucket % 12 + 1:02d}"
    if period == "quarter":
        return f"{bucket // 4:04d}-Q{bucket % 4 + 1}"
    return f"{bucket:04d}"


def _month_numbers(labels: list[str]) -> np.ndarray:
    return np.array([int(label[:4]) * 12 + int(label[5:7]) - 1 for label in labels], np.int64)


def pair_trend(
    counts: PeriodCounts,
    *,
    period: Period,
    theta: Hyperparameters,
    config: ScoringConfig | None = None,
    stratify: bool = True,
) -> Trend | None:
    """The pair's trend; None when the scope has no counted report at all."""
    if not counts.totals:
        return None
    strata = sorted({stratum for stratum, _, _ in counts.totals})
    column = {stratum: j for j, stratum in enumerate(strata)}
    dated = sorted({p for _, p, _ in counts.totals if p != UNKNOWN_PERIOD})
    unknown = any(p == UNKNOWN_PERIOD for _, p, _ in counts.totals)
    if dated:
        buckets = _bucket(_month_numbers(dated), period)
        first, last = int(buckets.min()), int(buckets.max())
    else:
        first, last = 0, -1
    dated_rows = last - first + 1
    size = dated_rows + (1 if unknown else 0)

    def row_of(label: str) -> int:
        if label == UNKNOWN_PERIOD:
            return dated_rows
        return int(_bucket(_month_numbers([label]), period)[0]) - first

    def matrix(rows: list[tuple[str, str, int]]) -> np.ndarray:
        new = np.zeros((size, len(strata)))
        for stratum, label, n in rows:
            new[row_of(label), column[stratum]] += n
        return new

    new_product, new_event, new_total = (
        matrix(counts.product),
        matrix(counts.event),
        matrix(counts.totals),
    )
    new_a = np.zeros(size)
    for label, a in counts.pair.items():
        new_a[row_of(label)] += a
    product, event, total = (np.cumsum(m, axis=0) for m in (new_product, new_event, new_total))
    a = np.cumsum(new_a)
    n_product, n_event, n_total = product.sum(axis=1), event.sum(axis=1), total.sum(axis=1)
    if stratify and len(strata) > 1:
        e = stratified_expected(product, event, total)
    else:
        e = unstratified_expected(n_product, n_event, n_total)
    statistics = _scored(PairCounts(a, n_product, n_event, n_total, e), theta, config)
    labels = [_label(b, period) for b in range(first, last + 1)]
    if unknown:
        labels.append(UNKNOWN_PERIOD)
    new = {
        "a": new_a,
        "n_product": new_product.sum(axis=1),
        "n_event": new_event.sum(axis=1),
        "n_total": new_total.sum(axis=1),
    }
    return Trend(period, labels, new, statistics)
