"""The simulator's reports through the whole ingest, on both stores: counts equal its truth."""

import json

import pytest

from pvsignal.cli_store import reader_for
from pvsignal.ingest import Ingestor
from pvsignal.products import load_products
from pvsignal.scopes import ScopeConfig
from pvsignal.signals import scope_statistics
from pvsignal.simulate import SimulationConfig, sidecar_paths, write_simulation


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "reports.jsonl"
    write_simulation(SimulationConfig(reports=20_000, seed=7, malformed_rate=0.01), out)
    products, signals, truth = sidecar_paths(out)
    return (
        out,
        load_products(products),
        json.loads(signals.read_text()),
        json.loads(truth.read_text()),
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_counts_equal_the_simulation_truth(simulation, new_store, kind):
    path, products, _, truth = simulation
    store = new_store(kind)
    store.save_products(products)
    summary = Ingestor(store, ScopeConfig(), batch_size=2_000).ingest(reader_for("jsonl")([path]))
    assert summary.received == truth["lines"]
    assert summary.rejected == truth["malformed"] > 0
    assert store.count_cases()["active"] == truth["live_cases"]
    assert int(store.scope_counts("all").totals[1].sum()) == truth["live_cases"]
    # The rejects hold every malformed line, plus the valid versions of withdrawn cases.
    rejected_lines = {
        int(row["location"].rsplit(":", 1)[1]) for row in store.rejects(limit=100_000)
    }
    assert set(truth["malformed_lines"]) <= rejected_lines
    assert store.count_rejects() == truth["malformed"] + summary.outcomes["refused"]


def test_the_pilot_import_signal_is_found(simulation, new_store):
    path, products, signals, _ = simulation
    store = new_store("sqlite")
    store.save_products(products)
    Ingestor(store, ScopeConfig()).ingest(reader_for("jsonl")([path]))
    result = scope_statistics(store, "all")
    pilot = signals[0]  # the simulator plants its first signal on the busiest pilot product
    hit = (result.pairs.product == pilot["product_id"]) & (result.pairs.event == pilot["pt"])
    assert hit.sum() == 1
    assert result.statistics["signal_prr"][hit].item()
    assert result.statistics["a"][hit].item() >= pilot["cases"]
