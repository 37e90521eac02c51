"""The SVG charts draw what they are given: the band holds each interval, the threshold line
sits at the rule's value, higher values are drawn higher, undefined periods are left out."""

from __future__ import annotations

import math

from api.ui.charts import HEIGHT, TOP, bar_chart, trend_chart


def _point(period: str, ebgm: float | None, eb05: float | None, eb95: float | None) -> dict:
    return {"period": period, "ebgm": ebgm, "eb05": eb05, "eb95": eb95, "signal_ebgm": False}


def test_the_trend_draws_estimate_band_and_threshold_in_their_order():
    points = [
        _point("2026-01", None, None, None),  # before the pair's first case
        _point("2026-02", 1.0, 0.5, 2.0),
        _point("2026-03", 2.0, 1.0, 4.0),
        _point("2026-04", 8.0, 2.0, 32.0),  # EB05 = 2: on the threshold
    ]
    chart = trend_chart(points, "ebgm")
    assert chart.threshold == 2.0 and chart.rule_on == "eb05"
    drawn = [p for p in chart.points if p.y is not None]
    assert [p.label for p in drawn] == ["2026-02", "2026-03", "2026-04"]
    for p in drawn:
        assert p.y_upper < p.y < p.y_lower  # SVG y grows downwards
        assert p.y_upper >= TOP and p.y_lower <= HEIGHT
    assert drawn[-1].y_lower == chart.threshold_y  # EB05 = 2 sits on the threshold line
    # Log scale: equal ratios are equal distances (1 -> 2 -> 4 ... 8 = 2^3).
    step = drawn[0].y - drawn[1].y
    assert math.isclose(drawn[1].y - drawn[2].y, 2 * step)
    band = [tuple(map(float, xy.split(","))) for xy in chart.band.split()]
    assert len(band) == 2 * len(drawn)  # the upper bounds forth, the lower bounds back
    assert [y for _, y in band[:3]] == [round(p.y_upper, 1) for p in drawn]


def test_the_ic_is_drawn_linearly_with_its_threshold_at_zero():
    points = [
        {"period": "2026-01", "ic": -1.0, "ic025": -3.0, "ic975": 1.0},
        {"period": "2026-02", "ic": 1.0, "ic025": 0.0, "ic975": 2.0},
    ]
    chart = trend_chart(points, "ic")
    assert chart.threshold == 0.0 and chart.points[1].y_lower == chart.threshold_y
    first, second = chart.points
    assert math.isclose(first.y_lower - first.y, first.y - second.y)  # -3, -1, 1: linear


def test_bars_are_as_tall_as_their_counts():
    chart = bar_chart(["2026-01", "2026-02", "2026-03"], [0, 5, 10])
    heights = [b.height for b in chart.bars]
    assert heights[0] == 0 and math.isclose(heights[2], 2 * heights[1])
