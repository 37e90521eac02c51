"""What a simulation is asked for and what it reports back.

``SimulationConfig`` (validated on construction), and the frozen records a run produces: the
``PlantedSignal`` pairs, the ``SimulationTruth`` counts a test compares with, and the
``SimulationSummary`` of the files ``write_simulation`` wrote.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from pvsignal.errors import InputError
from pvsignal.simulate.terms import GENERAL_PTS


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate. ``reports`` is the number of lines written, malformed ones included.

    Rates are shares of cases (follow-up, nullification, duplicate), of case versions
    (re-sends), of follow-up cases (out of order), of product mentions (unregistered) and of
    lines (malformed). ``products`` and ``pts`` (general PTs; kind-specific ones are added)
    follow from ``reports`` when not given. Each planted signal needs 50 cases: a tiny run
    plants fewer than ``signals``, the first always on a pilot-import product.
    """

    reports: int
    seed: int = 0
    follow_up_rate: float = 0.15
    nullification_rate: float = 0.01
    duplicate_rate: float = 0.02
    resend_rate: float = 0.02
    out_of_order_rate: float = 0.10
    malformed_rate: float = 0.0
    unregistered_rate: float = 0.04
    start: dt.date = dt.date(2024, 1, 1)
    end: dt.date = dt.date(2026, 6, 30)
    products: int | None = None
    pts: int | None = None
    signals: int = 6

    def __post_init__(self) -> None:
        if self.reports < 1:
            raise InputError(f"reports must be at least 1, got {self.reports!r}")
        if self.seed < 0:
            raise InputError(f"seed must not be negative, got {self.seed!r}")
        for name in (
            "follow_up_rate",
            "nullification_rate",
            "duplicate_rate",
            "resend_rate",
            "out_of_order_rate",
            "malformed_rate",
            "unregistered_rate",
        ):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise InputError(f"{name} must lie in [0, 1), got {value!r}")
        if self.nullification_rate + self.duplicate_rate > 0.5:
            raise InputError("nullification_rate + duplicate_rate must not exceed 0.5")
        if (self.end - self.start).days < 30:
            raise InputError(f"end {self.end} must lie at least 30 days after start {self.start}")
        if self.products is not None and self.products < 10:
            raise InputError(f"products must be at least 10, got {self.products!r}")
        if self.pts is not None and not 20 <= self.pts <= len(GENERAL_PTS):
            raise InputError(f"pts must lie in [20, {len(GENERAL_PTS)}], got {self.pts!r}")
        if self.signals < 0:
            raise InputError(f"signals must not be negative, got {self.signals!r}")


@dataclass(frozen=True, slots=True)
class PlantedSignal:
    """A product-PT pair reported, from ``start`` on, at ``strength`` times its background.

    ``expected_background`` is the number of the product's cases from ``start`` on times the
    share of all cases reporting the PT; ``cases`` extra cases with the pair were added, so
    ``strength = (expected_background + cases) / expected_background``.

    ``evans_month`` (``YYYY-MM``) is the first received month whose cumulative 2x2 table of
    the pair, over the latest versions of the live cases, meets Evans' PRR rule (a >= 3,
    PRR >= 2, Yates' chi-square >= 4), counted from the simulator's own tables (see
    ``pvsignal.simulate.crossing``); None when no month's does.
    """

    product_id: str
    pt: str
    strength: float
    start: dt.date
    cases: int
    expected_background: float
    evans_month: str | None = None


@dataclass(frozen=True, slots=True)
class SimulationTruth:
    """Counts of what the stream holds, for tests (``<stem>.truth.json``).

    ``cases`` counts distinct case ids; ``live_cases`` those not nullified (a duplicate is
    named by another sender's case, so it is only suspected until a regulator decides, and it
    counts). ``follow_ups`` counts follow-up versions (2 and 3), ``nullifications`` and
    ``superseding_reports`` their own versions, ``resends`` identical copies of a version.
    Product mentions are counted over the latest versions of live cases.
    """

    lines: int
    valid_lines: int
    malformed: int
    malformed_by_kind: dict[str, int]
    malformed_lines: tuple[int, ...]  # 1-based line numbers
    cases: int
    live_cases: int
    cases_with_follow_up: int
    follow_up_rate: float
    follow_ups: int
    out_of_order_cases: int
    resends: int
    nullifications: int
    duplicates: int
    superseding_reports: int
    planted_cases: int
    product_mentions: int
    unregistered_mentions: int
    products: int
    pts: int


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """What ``write_simulation`` wrote."""

    reports_path: Path
    products_path: Path
    signals_path: Path
    truth_path: Path
    truth: SimulationTruth
    seconds: float
