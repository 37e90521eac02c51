"""`number_texts` writes every number as Arrow's cast to text does (the text its CSV writer
wrote before), and `json_texts` as orjson writes the Python number (the JSON export's text
before), byte for byte: random bit patterns, wide and narrow magnitudes, whole numbers,
subnormals, the neighbourhoods of powers of two and ten, and the layout boundaries."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pvsignal.export import json_texts, number_texts

RNG = np.random.default_rng(15)
N = 200_000


def _arrow(values: np.ndarray) -> list[str]:
    """Arrow's own text of each number, with the comma that number_texts ends it with."""
    return [text + "," for text in pa.array(values).cast(pa.string()).to_pylist()]


def _around(points: np.ndarray) -> np.ndarray:
    """Each point and its two neighbouring doubles."""
    return np.concatenate([points, np.nextafter(points, np.inf), np.nextafter(points, -np.inf)])


FLOATS = {
    "random bit patterns": RNG.integers(0, 2**64, N, dtype=np.uint64).view(np.float64),
    "subnormals": RNG.integers(1, 2**52, N, dtype=np.uint64).view(np.float64),
    "lognormal, as statistics are": np.exp(RNG.normal(0, 8, N)),
    "negative, very wide": -(10.0 ** RNG.uniform(-320, 308, N)),
    "whole numbers": RNG.integers(-(10**17), 10**17, N).astype(np.float64),
    "small whole numbers": RNG.integers(-1000, 1000, N).astype(np.float64),
    "ratios of counts": RNG.integers(0, 1000, N) / RNG.integers(1, 1000, N),
    "p-values": RNG.uniform(0, 1, N) ** 40,
    "powers of two": _around(np.ldexp(1.0, np.arange(-1074, 1024))),
    "powers of ten": _around(10.0 ** np.arange(-323, 309)),
    "layout boundaries": _around(np.array([1e-7, 1e-6, 1e-5, 1e-4, 1e9, 1e10, 1e15, 1e16, 1e21])),
    "edges": np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 5e-324, 2.2250738585072014e-308, 0.1]
    ),
    "large and exact": np.array(
        [1.7976931348623157e308, 2.0**53, 2.0**53 + 2, 2.0**63, 1 / 3, 123456789012.0]
    ),
}


@pytest.mark.parametrize("name", sorted(FLOATS))
def test_floats_are_written_as_arrow_casts_them(name):
    values = FLOATS[name]
    assert number_texts(values).to_pylist() == _arrow(values)


def test_integers_are_written_as_arrow_casts_them():
    values = np.concatenate(
        [RNG.integers(-(2**63), 2**63 - 1, N), np.array([0, -1, 2**63 - 1, -(2**63)])]
    )
    assert number_texts(values).to_pylist() == _arrow(values)


def test_a_slice_of_a_larger_array_is_written_from_its_own_values():
    values = np.exp(RNG.normal(0, 3, 1_000))[::3]
    assert number_texts(values).to_pylist() == _arrow(values)


def test_no_number_is_no_text():
    assert len(number_texts(np.empty(0))) == 0
    assert pc.binary_length(number_texts(np.array([2.5]))).to_pylist() == [4]


@pytest.mark.parametrize("name", sorted(FLOATS))
def test_floats_are_written_as_orjson_writes_python_floats(name):
    values = FLOATS[name]
    expected = [orjson.dumps(value).decode() + "," for value in values.tolist()]
    assert json_texts(values).to_pylist() == expected
