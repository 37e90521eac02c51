"""Simulated ICSR streams with a known truth, for the benchmarks, the stream tests and the demo.

``write_simulation(config, out)`` writes ``out`` (JSONL: one wire-format report per line, in
arrival order) and, beside it, ``<stem>.products.yaml`` (the registry, loadable with
``load_products``), ``<stem>.signals.json`` (the planted signals) and ``<stem>.truth.json`` (the
counts a test needs). The same config gives the same bytes.

What the stream holds, and why:

- Product and PT frequencies are Zipf-like, as in FAERS. Pilot-import products (Boao Lecheng,
  GBA Connect, rare-disease pilots) have a handful of cases each, sent by their designated
  hospitals, and none before their permit date.
- Cases have versions: follow-ups (a corrected PT, an added reaction or product, age and outcomes
  filled in), identical re-sends, nullifications, and duplicate cases from a second sender that a
  later version of the first case lists in ``duplicate_of_ids``. Some follow-ups arrive before
  the version they follow, and re-sends of old versions arrive late.
- Planted signals add, from their start date, cases with the pair at ``strength`` times the
  product's background count of that PT.
- Products are named by registry id, by an alias in Chinese or English, by a variant spelling
  that alias resolution must undo (capitals, full-width forms, stray spaces), or by free text the
  registry does not know.
- Malformed lines, when asked for, fail ``Report.model_validate_json`` in varied ways.

The truth an engine must reproduce is the latest version of each case, without nullified cases.
The duplicates come from another organisation than the case that names them, so they are only
suspected duplicates (a regulator decides) and still count. ``Report`` refuses received dates in the
future, so keep ``end`` in the past.

The package, in the order a run draws it: ``config`` (what is asked for, what comes back),
``plan`` (exact counts), ``terms`` (the PT vocabulary), ``catalogue`` (products, names, the
registry file), ``cases`` (case content and follow-up changes), ``planted`` (planted signals),
``institutions`` (senders and case ids), ``lines`` (versions in arrival order, the truth),
``crossing`` (the month each planted pair's counts meet Evans' rule),
``malformed`` and ``render`` (lines to bytes), ``simulation`` (``simulate``,
``write_simulation``) and ``cli`` (``pvsignal simulate``). Import from ``pvsignal.simulate``.
"""

from pvsignal.simulate.catalogue import UNREGISTERED_NAMES
from pvsignal.simulate.cli import add_simulate_command
from pvsignal.simulate.config import (
    PlantedSignal,
    SimulationConfig,
    SimulationSummary,
    SimulationTruth,
)
from pvsignal.simulate.malformed import MALFORMED_KINDS
from pvsignal.simulate.simulation import Simulation, sidecar_paths, simulate, write_simulation
from pvsignal.simulate.terms import CORRECTIONS, GENERAL_PTS, KIND_PTS

__all__ = [
    "CORRECTIONS",
    "GENERAL_PTS",
    "KIND_PTS",
    "MALFORMED_KINDS",
    "UNREGISTERED_NAMES",
    "PlantedSignal",
    "Simulation",
    "SimulationConfig",
    "SimulationSummary",
    "SimulationTruth",
    "add_simulate_command",
    "sidecar_paths",
    "simulate",
    "write_simulation",
]
