"""Writes of many rows keep every row whatever their number, on both stores: SQLite writes 64
rows a statement and the rest one by one, PostgreSQL one statement over arrays."""

from __future__ import annotations

import pytest

NOW = "2026-12-03T00:00:00+00:00"
LATER = "2026-12-04T00:00:00+00:00"


def _states(size: int) -> dict[tuple[str, str, str], dict]:
    measures = ("prr", "ror", "ic", "ebgm")
    return {
        (f"P{k % 7}", f"E{k // 4}", measures[k % 4]): {
            "status": "new",
            "since": NOW,
            "reference": k / 8,
            "failures": 0,
            "last_a": k + 3,
            "last_level": None if k % 5 == 0 else k / 8,
        }
        for k in range(size)
    }


@pytest.mark.parametrize("size", [1, 63, 64, 65, 64 * 3 + 1])
def test_every_state_and_history_point_is_written(store, size):
    states = _states(size)
    history = [("P0", "E0", k, {"a": k}) for k in range(size)]
    store.write_detection("all", states, history, [], NOW)
    assert store.signal_states("all") == states
    assert [point["a"] for point in store.history("all", "P0", "E0")] == list(range(size))

    moved = {
        key: {**state, "status": "ongoing", "since": LATER, "failures": 1}
        for key, state in list(states.items())[::3]
    }
    store.write_detection("all", moved, [], [], LATER)
    assert store.signal_states("all") == {**states, **moved}
