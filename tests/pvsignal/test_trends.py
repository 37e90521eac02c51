"""Trends over a simulated 24-month stream, on SQLite and PostgreSQL: cumulative counts per
month equal a recount from the counted cases' received dates, "new" sums to the totals, the
last month equals the scope's current statistics, and each planted pair's PRR flag first turns
on within a month of the month the simulator's truth says its counts meet Evans' rule."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from detectors.mgps import Hyperparameters
from pvsignal.ingest import Ingestor
from pvsignal.products import Registry
from pvsignal.readers import RawRecord
from pvsignal.reports import Report, Role
from pvsignal.scopes import ScopeConfig
from pvsignal.signals import scope_statistics
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.store import open_store
from pvsignal.store.sql import SqlStore
from pvsignal.trends import pair_trend
from tests.support.postgres import create_database

# Seed 15 plants VAC-00007 x Chest pain (6x its background, 43 extra cases) from 2024-12-23:
# its extra cases arrive from the turn of month 12 to month 13 on.
CONFIG = SimulationConfig(
    reports=30000, seed=15, start=dt.date(2024, 1, 1), end=dt.date(2025, 12, 31)
)
PLANTED = ("VAC-00007", "Chest pain")


@pytest.fixture(scope="module")
def simulation():
    return simulate(CONFIG)


def _ingest(store: SqlStore, simulation) -> None:
    store.save_products(simulation.products)
    ingestor = Ingestor(store, ScopeConfig())
    lines = list(simulation.lines())
    for start in range(0, len(lines), 2000):
        ingestor.apply(
            [RawRecord(f"sim:{i}", lines[i]) for i in range(start, min(start + 2000, len(lines)))]
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, simulation, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('trends') / 'store.db'}"
    else:
        url = create_database(request.getfixturevalue("postgres_server"), "trends")
    opened = open_store(url)
    _ingest(opened, simulation)
    yield opened
    opened.close()


def _recount(store: SqlStore, product: str, event: str) -> dict[str, Counter[str]]:
    """Per received month, from the counted cases' stored reports: a, n_product, n_event,
    n_total (a case counts when it names a counted product and an event)."""
    registry = Registry(store.load_products())
    counts: dict[str, Counter[str]] = {}
    for _, _, text in store.active_reports():
        report = Report.model_validate_json(text)
        products = {
            registry.resolve(p).product_id
            for p in report.products
            if p.role in (Role.suspect, Role.interacting)
        }
        events = {r.event_key for r in report.reactions}
        if not products or not events:
            continue
        month = "unknown" if report.received is None else report.received.isoformat()[:7]
        found = counts.setdefault(month, Counter())
        found["n_total"] += 1
        found["n_product"] += product in products
        found["n_event"] += event in events
        found["a"] += product in products and event in events
    return counts


def _trend(store: SqlStore, product: str, event: str, period: str = "month"):
    theta = scope_statistics(store, "all", record_fit=False).theta
    return pair_trend(store.period_counts("all", product, event), period=period, theta=theta)


def test_cumulative_counts_equal_a_recount_by_received_month(store):
    trend = _trend(store, *PLANTED)
    recount = _recount(store, *PLANTED)
    assert "unknown" not in recount and trend.labels[-1] == "2025-12"
    assert trend.labels[0] == "2024-01" and len(trend.labels) == 24
    running = Counter()
    for i, month in enumerate(trend.labels):
        new = recount.get(month, Counter())
        running.update(new)
        for name in ("a", "n_product", "n_event", "n_total"):
            assert trend.new[name][i] == new[name], (month, name)
            assert trend.statistics[name][i] == running[name], (month, name)
    for name in ("a", "n_product", "n_event", "n_total"):
        assert trend.new[name].sum() == trend.statistics[name][-1]


def test_several_pairs_read_at_once_have_the_months_each_read_alone_has(store, simulation):
    products = sorted(p.product_id for p in simulation.products)[:15]
    events = [PLANTED[1], "Headache", "Nausea", "Never reported"]
    pairs = [PLANTED, *((p, e) for p in products for e in events)]
    read = store.pair_periods("all", pairs)
    assert read == {pair: store.period_counts("all", *pair).pair for pair in pairs}
    assert read[PLANTED] and not read[(products[0], "Never reported")]


def test_quarters_and_years_are_sums_of_months(store):
    months = _trend(store, *PLANTED)
    quarters = _trend(store, *PLANTED, "quarter")
    years = _trend(store, *PLANTED, "year")
    assert quarters.labels[:2] == ["2024-Q1", "2024-Q2"] and years.labels == ["2024", "2025"]
    assert np.array_equal(quarters.new["a"], months.new["a"].reshape(-1, 3).sum(axis=1))
    assert np.array_equal(years.statistics["a"], months.statistics["a"][[11, 23]])
    assert np.allclose(years.statistics["expected"], months.statistics["expected"][[11, 23]])


def test_the_last_period_equals_the_scope_statistics(store):
    statistics = scope_statistics(store, "all", record_fit=False)
    trend = pair_trend(store.period_counts("all", *PLANTED), period="month", theta=statistics.theta)
    pairs = statistics.pairs
    i = int(np.flatnonzero((pairs.product == PLANTED[0]) & (pairs.event == PLANTED[1]))[0])
    for name in ("a", "n_product", "n_event", "n_total", "expected", "prr", "ror_lower", "eb05"):
        assert trend.statistics[name][-1] == pytest.approx(statistics.statistics[name][i])


def _first_flags_of_recount(recount: dict[str, Counter[str]], months: list[str]) -> dict[str, int]:
    """The first month (1-based) whose cumulative 2x2 table meets Evans' PRR rule (PRR >= 2,
    Yates chi-square >= 4, a >= 3) and the ROR rule (95% lower bound > 1, a >= 3), computed
    here from the recount, scalar by scalar."""
    running, first = Counter(), {}
    for number, month in enumerate(months, start=1):
        running.update(recount.get(month, Counter()))
        a = running["a"]
        b, c = running["n_product"] - a, running["n_event"] - a
        d = running["n_total"] - a - b - c
        n = a + b + c + d
        if a < 3 or 0 in (b, c, d):
            continue
        prr = (a / (a + b)) / (c / (c + d))
        chi2 = n * (abs(a * d - b * c) - n / 2) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
        if prr >= 2 and chi2 >= 4:
            first.setdefault("signal_prr", number)
        lower = np.exp(
            np.log(a * d / (b * c)) - 1.959963984540054 * np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
        )
        if lower > 1:
            first.setdefault("signal_ror", number)
    return first


def test_the_planted_flag_turns_on_when_the_counts_say_and_never_before_the_plant(
    store, simulation
):
    """The flag turns on in the month an independent recount's 2x2 tables first meet each rule,
    and never before the month the simulator planted the signal in. (Not within a month of
    the plant's start: the simulator spreads the 43 extra cases over the remaining year, and
    cumulative counts since month 1 need 3-4 months of them to clear the rules; the month the
    simulator's truth says they clear Evans' rule is checked below.)"""
    planted = next(s for s in simulation.signals if (s.product_id, s.pt) == PLANTED)
    truth = (planted.start.year - 2024) * 12 + planted.start.month  # 1-based month
    trend = _trend(store, *PLANTED)
    expected = _first_flags_of_recount(_recount(store, *PLANTED), trend.labels)
    for measure in ("signal_prr", "signal_ror"):
        flags = trend.statistics[measure]
        first = int(np.argmax(flags)) + 1
        assert flags.any() and first == expected[measure], (measure, first, expected)
        assert truth <= first <= truth + 4, (measure, first, truth)
        assert flags[first - 1 :].all(), measure


def test_each_planted_flag_turns_on_in_the_month_the_simulators_truth_says(store, simulation):
    """The simulator states, from its own case table and lines (never from the reports it
    renders), the month each planted pair's cumulative counts first meet Evans' PRR rule
    (``PlantedSignal.evans_month``); the trend's PRR flag first turns on within a month of it."""
    assert [s.evans_month for s in simulation.signals] == [
        "2025-10",
        "2024-12",
        "2025-09",
        "2025-05",
        "2024-11",
        "2025-04",
    ]
    for signal in simulation.signals:
        trend = _trend(store, signal.product_id, signal.pt)
        flags = trend.statistics["signal_prr"]
        assert flags.any(), signal
        first = trend.labels[int(np.argmax(flags))]
        assert abs(_month_number(first) - _month_number(signal.evans_month)) <= 1, (first, signal)


def _month_number(label: str) -> int:
    year, month = label.split("-")
    return int(year) * 12 + int(month)


def test_unknown_received_dates_come_last_and_count_in_the_totals(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    ingestor = Ingestor(store, ScopeConfig())
    lines = [
        {"case_id": "1", "report_id": "r1", "received": "2025-01-05"},
        {"case_id": "2", "report_id": "r2", "received": "2025-03-05"},
        {"case_id": "3", "report_id": "r3"},
    ]
    ingestor.apply(
        [
            RawRecord(
                f"t:{i}",
                orjson.dumps({**line, "products": [{"name": "x"}], "reactions": [{"pt": "Rash"}]}),
            )
            for i, line in enumerate(lines)
        ]
    )
    theta = Hyperparameters(0.2, 0.1, 2.0, 4.0, 0.33)
    trend = pair_trend(
        store.period_counts("all", "unregistered:x", "Rash"), period="month", theta=theta
    )
    assert trend.labels == ["2025-01", "2025-02", "2025-03", "unknown"]
    assert trend.new["a"].tolist() == [1, 0, 1, 1]
    assert trend.statistics["a"].tolist() == [1, 1, 2, 3]
    # A follow-up received later moves its case to the later month.
    ingestor.apply(
        [
            RawRecord(
                "t:f",
                orjson.dumps(
                    {
                        **lines[0],
                        "version": 2,
                        "received": "2025-03-20",
                        "products": [{"name": "x"}],
                        "reactions": [{"pt": "Rash"}],
                    }
                ),
            )
        ]
    )
    trend = pair_trend(
        store.period_counts("all", "unregistered:x", "Rash"), period="month", theta=theta
    )
    assert trend.labels == ["2025-03", "unknown"] and trend.new["a"].tolist() == [2, 1]
    store.close()
