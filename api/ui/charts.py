"""Server-drawn SVG charts: a measure over periods with its interval band and threshold line,
and new cases per period as bars. No script is needed to see them (offline, accessible: each
point has a <title>), and tests can read every drawn value back from the ``data-*``
attributes.

Ratio measures (PRR, ROR, EBGM) are drawn on a log scale, where their intervals are symmetric;
the IC is already a log2 ratio and is drawn linearly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pvsignal.scoring import ScoringConfig

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40

# measure -> (estimate, lower, upper, the statistic its rule compares, threshold)
_RULES = ScoringConfig()
MEASURE_COLUMNS: dict[str, tuple[str, str, str, str, float]] = {
    "prr": ("prr", "prr_lower", "prr_upper", "prr", _RULES.prr_rule.min_prr),
    "ror": ("ror", "ror_lower", "ror_upper", "ror_lower", _RULES.ror_rule.min_lower),
    "ic": ("ic", "ic025", "ic975", "ic025", _RULES.ic_rule.min_lower),
    "ebgm": ("ebgm", "eb05", "eb95", "eb05", _RULES.ebgm_rule.min_eb05),
}
LOG_SCALE = frozenset({"prr", "ror", "ebgm"})


@dataclass
class Point:
    x: float
    label: str
    value: float | None
    lower: float | None
    upper: float | None
    y: float | None = None
    y_lower: float | None = None
    y_upper: float | None = None
    flagged: bool = False


@dataclass
class TrendChart:
    measure: str
    points: list[Point]
    threshold: float
    threshold_y: float
    rule_on: str
    ticks: list[tuple[float, str]]  # (y, label)
    x_labels: list[tuple[float, str]]
    line: str = ""
    band: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    plot: dict[str, float] = field(default_factory=dict)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def trend_chart(points: list[dict[str, Any]], measure: str) -> TrendChart:
    """The measure's estimate, interval band and threshold over the trend's periods."""
    estimate, lower, upper, rule_on, threshold = MEASURE_COLUMNS[measure]
    log = measure in LOG_SCALE
    drawn = [
        Point(
            0.0,
            p["period"],
            _finite(p.get(estimate)),
            _finite(p.get(lower)),
            _finite(p.get(upper)),
            flagged=bool(p.get(f"signal_{measure}")),
        )
        for p in points
    ]
    values = [threshold] + [
        v
        for p in drawn
        for v in (p.value, p.lower, p.upper)
        if v is not None and (v > 0 or not log)
    ]
    scale = _Scale(min(values), max(values), log)
    step = (WIDTH - LEFT - RIGHT) / max(len(drawn) - 1, 1)
    for i, p in enumerate(drawn):
        p.x = LEFT + i * step if len(drawn) > 1 else (LEFT + WIDTH - RIGHT) / 2
        p.y, p.y_lower, p.y_upper = scale.y(p.value), scale.y(p.lower), scale.y(p.upper)
    banded = [p for p in drawn if p.y_lower is not None and p.y_upper is not None]
    band = (
        " ".join(f"{p.x:.1f},{p.y_upper:.1f}" for p in banded)
        + " "
        + " ".join(f"{p.x:.1f},{p.y_lower:.1f}" for p in reversed(banded))
    )
    line = " ".join(f"{p.x:.1f},{p.y:.1f}" for p in drawn if p.y is not None)
    return TrendChart(
        measure=measure,
        points=drawn,
        threshold=threshold,
        threshold_y=scale.y(threshold) or 0.0,
        rule_on=rule_on,
        ticks=scale.ticks(),
        x_labels=_x_labels(drawn),
        line=line,
        band=band.strip() if banded else "",
        plot={"left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": HEIGHT - BOTTOM},
    )


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass
class BarChart:
    bars: list[Bar]
    ticks: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    plot: dict[str, float] = field(default_factory=dict)


def bar_chart(labels: list[str], values: list[int]) -> BarChart:
    """One bar per period (new cases, reports per month)."""
    top = max([*values, 1])
    scale = _Scale(0, top, log=False)
    slot = (WIDTH - LEFT - RIGHT) / max(len(values), 1)
    bottom = HEIGHT - BOTTOM
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = scale.y(value) or bottom
        bars.append(Bar(LEFT + i * slot + slot * 0.15, y, slot * 0.7, bottom - y, label, value))
    centres = [Point(b.x + b.width / 2, b.label, None, None, None) for b in bars]
    return BarChart(
        bars,
        scale.ticks(),
        _x_labels(centres),
        plot={"left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": bottom},
    )


def _x_labels(points: list[Point], most: int = 8) -> list[tuple[float, str]]:
    every = max(1, math.ceil(len(points) / most))
    return [(p.x, p.label) for i, p in enumerate(points) if i % every == 0]


class _Scale:
    """Values to SVG y (top is high), linear or log10."""

    def __init__(self, low: float, high: float, log: bool) -> None:
        self.log = log
        if log:
            low, high = math.log10(max(low, 1e-3)), math.log10(max(high, 1e-3))
        if high - low < 1e-9:
            low, high = low - 1, high + 1
        pad = (high - low) * 0.08
        self.low, self.high = low - (0 if not log and low == 0 else pad), high + pad

    def y(self, value: float | None) -> float | None:
        if value is None or (self.log and value <= 0):
            return None
        v = math.log10(value) if self.log else value
        share = (v - self.low) / (self.high - self.low)
        return TOP + (1 - share) * (HEIGHT - TOP - BOTTOM)

    def ticks(self, count: int = 5) -> list[tuple[float, str]]:
        found = []
        for i in range(count):
            v = self.low + (self.high - self.low) * i / (count - 1)
            value = 10**v if self.log else v
            y = self.y(value)
            if y is not None:
                found.append((y, _short(value)))
        return found


def _short(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
