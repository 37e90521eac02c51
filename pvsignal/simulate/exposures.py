"""A simulated active-monitoring pilot: exposures at the Boao Lecheng institutions month by
month, and the cases they give rise to, with a planted product × PT at a known rate ratio.

Every patient treated with a pilot product is registered (one exposure record per patient:
institution, start date, age, sex, doses). Each exposed patient has the PT at the reference
rate of their stratum (per 1,000 patients: a label rate, higher background rates from 65 years
on) times the pair's true rate ratio — ``rate_ratio`` for the planted pair, 1 for the others —
and each such event is reported as a case by the patient's institution within the month.
Some exposure records are corrected later (a higher version) or withdrawn (entered in error).

``pilot_stream(config)`` gives the registry, the institutions, the scope configuration that
monitors the products, and the stream month by month (exposure lines, then report lines).
``planted_counts(config)`` draws only the planted pair's monthly expected and observed counts,
from the same random stream, cheaply (the false-signal rate over many streams).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from pvsignal.institutions import Institution
from pvsignal.products import RegisteredProduct

LECHENG = tuple(f"LC-HOSP-{i:02d}" for i in range(1, 7))
SCOPE = "lecheng-active"
# (product id, name, PT, label rate per 1,000 patients, patients per month)
MONITORED = (
    ("LC-P01", "velotinib", "Interstitial lung disease", 10.0, 60),
    ("LC-P02", "soracimab", "Hepatotoxicity", 8.0, 50),
)
UNMONITORED = ("LC-P03", "ambrelisib", 20)
OLDER = 65  # from this age the background rate is twice the label's
_OLDER_BANDS = ("65-74", "75+")


@dataclass(frozen=True)
class PilotConfig:
    seed: int = 1
    months: int = 18
    start: dt.date = dt.date(2024, 7, 1)  # the last month ends in the past
    rate_ratio: float = 3.0  # of the planted pair (the first monitored product's PT)
    correction_rate: float = 0.03
    withdrawal_rate: float = 0.01
    alpha: float = 0.05
    length: float = 10.0  # expected events: the planted pair reaches it in about 18 months
    min_events: int = 3


@dataclass
class Month:
    period: str
    exposures: list[bytes] = field(default_factory=list)
    reports: list[bytes] = field(default_factory=list)


@dataclass
class PilotStream:
    config: PilotConfig
    products: list[RegisteredProduct]
    institutions: list[Institution]
    scopes: dict[str, Any]  # the scope configuration (YAML/JSON document)
    months: list[Month]
    planted: tuple[str, str]  # (product id, PT) with the true rate ratio
    expected: list[float]  # the planted pair's expected count per month (all exposures)
    observed: list[int]  # its cases per month

    def exposure_lines(self) -> list[bytes]:
        return [line for month in self.months for line in month.exposures]

    def report_lines(self) -> list[bytes]:
        return [line for month in self.months for line in month.reports]


def reference_rates() -> dict[str, list[dict[str, Any]]]:
    """Per monitored product: its PT's label rate, and the background rate of older strata."""
    return {
        product: [
            {"pt": pt, "per_1000": rate},
            *(
                {"pt": pt, "per_1000": 2 * rate, "age_band": band, "source": "background"}
                for band in _OLDER_BANDS
            ),
        ]
        for product, _, pt, rate, _ in MONITORED
    }


def scope_config(config: PilotConfig) -> dict[str, Any]:
    rates = reference_rates()
    return {
        "scopes": [
            {
                "name": SCOPE,
                "filter": {"regions": ["CN-HI"], "pathways": ["lecheng_special_import"]},
                "monitoring": {
                    "products": [
                        {
                            "product_id": product,
                            "references": rates[product],
                            "alpha": config.alpha,
                            "length": config.length,
                            "min_events": config.min_events,
                        }
                        for product, *_ in MONITORED
                    ]
                },
            }
        ]
    }


def _products() -> list[RegisteredProduct]:
    named = [(p, n) for p, n, *_ in MONITORED] + [UNMONITORED[:2]]
    return [
        RegisteredProduct(
            product_id=product,
            names=[name],
            kind="drug",
            pathway="lecheng_special_import",
            mah_id=f"MAH-{i + 1:03d}",
            approved=dt.date(2024, 1, 15),
        )
        for i, (product, name) in enumerate(named)
    ]


def _institutions() -> list[Institution]:
    return [
        Institution(
            institution_id=code, names=[f"Boao Lecheng hospital {code[-2:]}"], region="CN-HI"
        )
        for code in LECHENG
    ]


def _month_start(config: PilotConfig, month: int) -> dt.date:
    total = config.start.year * 12 + config.start.month - 1 + month
    return dt.date(total // 12, total % 12 + 1, 1)


def _patients(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    ages = rng.integers(18, 86, size=count)
    sexes = rng.choice(np.array(["F", "M"]), size=count)
    return ages, sexes


def _risk(rate: float, ages: np.ndarray) -> np.ndarray:
    """Each patient's expected events (reference rate of their stratum, per patient)."""
    return np.where(ages >= OLDER, 2 * rate, rate) / 1000.0


def planted_counts(config: PilotConfig) -> tuple[list[float], list[int]]:
    """The planted pair's expected and observed count per month, drawn as the stream draws
    them (the same seed gives the same counts as ``pilot_stream``)."""
    stream = _draw(config, lines=False)
    return stream.expected, stream.observed


def pilot_stream(config: PilotConfig) -> PilotStream:
    return _draw(config, lines=True)


def _draw(config: PilotConfig, *, lines: bool) -> PilotStream:
    # Two streams: the counts (patients, ages, sexes, events) and the details of the lines, so
    # that drawing counts alone (planted_counts) gives the counts the lines hold.
    counts = np.random.default_rng([config.seed, 0])
    details = np.random.default_rng([config.seed, 1])
    planted = (MONITORED[0][0], MONITORED[0][2])
    months, expected, observed = [], [], []
    for m in range(config.months):
        first, following = _month_start(config, m), _month_start(config, m + 1)
        month = Month(f"{first.year:04d}-{first.month:02d}")
        for index, (product, name, pt, rate, per_month) in enumerate(MONITORED):
            ages, sexes = _patients(counts, int(counts.poisson(per_month)))
            risk = _risk(rate, ages)
            events = counts.poisson(risk * (config.rate_ratio if index == 0 else 1.0))
            if index == 0:
                expected.append(float(risk.sum()))
                observed.append(int(events.sum()))
            if lines:
                records = _exposures(details, month, product, name, first, following, ages, sexes)
                month.exposures += [orjson.dumps(record) for record in records]
                for record, n in zip(records, events.tolist(), strict=True):
                    month.reports += [_report(record, product, pt, e, following) for e in range(n)]
                month.exposures += _amendments(details, config, records)
        if lines:
            month.exposures += _unmonitored(details, month, first, following)
        months.append(month)
    return PilotStream(
        config,
        _products(),
        _institutions(),
        scope_config(config),
        months,
        planted,
        expected,
        observed,
    )


def _exposures(
    rng: np.random.Generator,
    month: Month,
    product: str,
    name: str,
    first: dt.date,
    following: dt.date,
    ages: np.ndarray,
    sexes: np.ndarray,
) -> list[dict[str, Any]]:
    """One record per patient, sent by the institution that treated them."""
    days = (following - first).days
    records = []
    for k, (age, sex) in enumerate(zip(ages.tolist(), sexes.tolist(), strict=True)):
        code = LECHENG[int(rng.integers(len(LECHENG)))]
        records.append(
            {
                "exposure_id": f"EXP-{product}-{month.period}-{k:04d}",
                "sender": code,
                "product_name": name,
                "institution_id": code,
                "start": (first + dt.timedelta(days=int(rng.integers(days)))).isoformat(),
                "age_years": age,
                "sex": sex,
                "doses": int(rng.integers(1, 7)),
            }
        )
    return records


def _unmonitored(
    rng: np.random.Generator, month: Month, first: dt.date, following: dt.date
) -> list[bytes]:
    """A product under no sequential test: exposures only (rates still count it)."""
    product, _, per_month = UNMONITORED
    lines = []
    for k in range(int(rng.poisson(per_month))):
        code = LECHENG[int(rng.integers(len(LECHENG)))]
        start = first + dt.timedelta(days=int(rng.integers((following - first).days)))
        record = {
            "exposure_id": f"EXP-{product}-{month.period}-{k:04d}",
            "sender": code,
            "product_id": product,
            "institution_id": code,
            "start": start.isoformat(),
        }
        lines.append(orjson.dumps(record))
    return lines


def _amendments(
    rng: np.random.Generator, config: PilotConfig, records: list[dict[str, Any]]
) -> list[bytes]:
    """Corrections (version 2: the age first recorded was a year off) and withdrawals (entered
    in error) of some of the month's exposures, sent after them."""
    amended = []
    for record, draw in zip(records, rng.random(len(records)).tolist(), strict=True):
        if draw < config.withdrawal_rate:
            withdrawal = {"exposure_id": record["exposure_id"], "version": 2, "withdrawn": True}
            amended.append(orjson.dumps({**withdrawal, "sender": record["sender"]}))
        elif draw < config.withdrawal_rate + config.correction_rate:
            correction = {**record, "version": 2, "age_years": record["age_years"] + 1}
            amended.append(orjson.dumps(correction))
    return amended


def _report(record: dict[str, Any], product: str, pt: str, n: int, following: dt.date) -> bytes:
    """The case of an exposed patient's event, reported within the month of exposure."""
    start = dt.date.fromisoformat(record["start"])
    received = min(start + dt.timedelta(days=5), following - dt.timedelta(days=1))
    case_id = f"CN-HI-{record['exposure_id']}-{n}"
    return orjson.dumps(
        {
            "case_id": case_id,
            "report_id": f"{record['sender']}-{case_id}",
            "version": 1,
            "received": received.isoformat(),
            "region": "CN-HI",
            "sender": {"type": "hospital", "institution_id": record["sender"]},
            "patient": {"age_years": record["age_years"], "sex": record["sex"]},
            "products": [{"product_id": product, "role": "suspect"}],
            "reactions": [{"pt": pt, "serious": True}],
        }
    )
