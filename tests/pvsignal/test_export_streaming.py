"""`pvsignal signals export` streams chunks of scored pairs, and writes byte for byte what
scoring the whole scope at once and writing it in one piece wrote (CSV and JSON)."""

from __future__ import annotations

import io

import orjson
import pytest

from benchmarks.api import synthetic_store
from pvsignal import export
from pvsignal.analyze import parse_theta
from pvsignal.cli import main
from pvsignal.export import export_table, write_csv
from pvsignal.signals import scope_statistics
from pvsignal.store import open_store

THETA = "3.25379356,0.39988854,2.02612692,1.90807970,0.06534557"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('export')}/store.db"
    synthetic_store(url, 500, seed=4)
    return url


def _whole(url: str, format: str) -> bytes:
    """The export as it was written before: every pair scored, then one table written."""
    store = open_store(url)
    result = scope_statistics(store, "all", theta=parse_theta(THETA), record_fit=False)
    store.close()
    table = export_table(result.pairs.product, result.pairs.event, result.statistics)
    if format == "csv":
        sink = io.BytesIO()
        write_csv(table, sink)
        return sink.getvalue()
    document = {"scope": "all", "level": "pt", "fit": result.fit, "pairs": table.to_pylist()}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2) + b"\n"


@pytest.mark.parametrize("format", ["csv", "json"])
@pytest.mark.parametrize("chunk", [7, 500, 100_000])
def test_streamed_export_equals_the_whole(url, tmp_path, monkeypatch, format, chunk):
    monkeypatch.setattr(export, "EXPORT_CHUNK", chunk)
    out = tmp_path / f"pairs.{format}"
    argv = ["signals", "export", "--store", url, "--theta", THETA, "--format", format]
    assert main([*argv, "--out", str(out)]) == 0
    assert out.read_bytes() == _whole(url, format)


def test_an_empty_list_of_pairs_is_written_as_orjson_writes_it():
    sink = io.BytesIO()
    export.write_json_chunks({"scope": "x", "fit": {"a": 1}}, iter(()), sink)
    expected = {"scope": "x", "fit": {"a": 1}, "pairs": []}
    assert sink.getvalue() == orjson.dumps(expected, option=orjson.OPT_INDENT_2)
