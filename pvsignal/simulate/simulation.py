"""Drawing a simulation and writing it: ``simulate``, ``Simulation`` and ``write_simulation``.

``simulate`` draws every table in a fixed order from one seeded generator (terms, catalogue,
senders, cases, planted signals, follow-up changes, identities, lines, truth) and returns a
``Simulation`` whose lines render lazily; ``write_simulation`` writes them with the registry,
planted signals and truth beside them (``sidecar_paths``).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import orjson

from pvsignal.products import RegisteredProduct
from pvsignal.simulate.cases import _choose_changes, _dedupe, _sample_cases
from pvsignal.simulate.catalogue import _Catalogue, _catalogue, _product_count, _write_registry
from pvsignal.simulate.config import (
    PlantedSignal,
    SimulationConfig,
    SimulationSummary,
    SimulationTruth,
)
from pvsignal.simulate.crossing import _evans_months
from pvsignal.simulate.institutions import _identities, _institutions
from pvsignal.simulate.lines import _lines, _truth
from pvsignal.simulate.plan import _plan
from pvsignal.simulate.planted import _plant
from pvsignal.simulate.render import _Renderer
from pvsignal.simulate.terms import _general_pts, _terms


class Simulation:
    """A simulated stream: its registry, planted signals, truth, and the lines themselves."""

    # orjson keeps a 4 KiB buffer behind each result: small chunks keep that bounded.
    _CHUNK = 4096

    def __init__(
        self,
        config: SimulationConfig,
        catalogue: _Catalogue,
        signals: tuple[PlantedSignal, ...],
        truth: SimulationTruth,
        renderer: _Renderer,
        characteristic: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.config = config
        self.products: list[RegisteredProduct] = catalogue.products
        self.signals = signals
        # (product_id, PT) pairs a product raises by design (its affinity terms): real
        # associations, not planted signals and not false alerts (benchmarks.validity).
        self.characteristic = characteristic
        self.truth = truth
        self._renderer = renderer

    def chunks(self) -> Iterator[list[bytes]]:
        """The lines (JSON without newline) in arrival order, a few thousand at a time."""
        for lo in range(0, self.truth.lines, self._CHUNK):
            yield self._renderer.render(lo, min(lo + self._CHUNK, self.truth.lines))

    def lines(self) -> Iterator[bytes]:
        for chunk in self.chunks():
            yield from chunk


def simulate(config: SimulationConfig) -> Simulation:
    """Draw a stream: registry, cases, versions and planted signals (lines render lazily)."""
    rng = np.random.default_rng(config.seed)
    names = random.Random(config.seed)  # product names: scalar draws, cheaper than numpy's
    span = (config.end - config.start).days
    plan = _plan(config)
    terms = _terms(config.pts or _general_pts(config.reports))
    n_products = config.products or _product_count(config.reports)
    catalogue = _catalogue(rng, names, n_products, terms, config.start, span, plan.cases)
    institutions = _institutions(rng, len(catalogue.mah_ids))
    cases = _sample_cases(rng, catalogue, terms, plan.cases, span, config.unregistered_rate)
    signals = _plant(rng, cases, catalogue, terms, span, config)
    _dedupe(rng, cases, catalogue, terms, config.unregistered_rate)
    _choose_changes(rng, cases, plan)
    dup_rows = rng.choice(plan.cases, plan.duplicates, replace=False)
    identities = _identities(rng, cases, catalogue, institutions, dup_rows)
    lines = _lines(rng, plan, cases, dup_rows, span)
    truth = _truth(config, plan, cases, catalogue, terms, lines, dup_rows, signals)
    start = np.datetime64(config.start, "D")
    days = np.datetime_as_string(start + np.arange(span + 1)).tolist()
    renderer = _Renderer(catalogue, terms, cases, identities, institutions, lines, days)
    months = _evans_months(config.start, cases, lines, dup_rows, [(s[0], s[1]) for s in signals])
    planted = tuple(
        PlantedSignal(
            product_id=catalogue.products[p].product_id,
            pt=terms.names[e],
            strength=strength,
            start=config.start + dt.timedelta(days=int(t0)),
            cases=x,
            expected_background=a0,
            evans_month=month,
        )
        for (p, e, strength, t0, x, a0), month in zip(signals, months, strict=True)
    )
    characteristic = frozenset(
        (product.product_id, terms.names[int(e)])
        for product, row in zip(catalogue.products, catalogue.affinity, strict=True)
        for e in row
    )
    return Simulation(config, catalogue, planted, truth, renderer, characteristic)


def sidecar_paths(out: Path) -> tuple[Path, Path, Path]:
    """The registry, signals and truth files written beside ``out``."""
    return (
        out.with_name(f"{out.stem}.products.yaml"),
        out.with_name(f"{out.stem}.signals.json"),
        out.with_name(f"{out.stem}.truth.json"),
    )


def write_simulation(config: SimulationConfig, out: Path) -> SimulationSummary:
    """Simulate and write the JSONL stream and its registry, signals and truth beside it."""
    began = time.perf_counter()
    simulation = simulate(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb", buffering=1 << 20) as handle:
        for chunk in simulation.chunks():
            handle.write(b"\n".join(chunk))
            handle.write(b"\n")
    products_path, signals_path, truth_path = sidecar_paths(out)
    _write_registry(simulation.products, products_path)
    signals_path.write_bytes(
        orjson.dumps(list(simulation.signals), option=orjson.OPT_INDENT_2) + b"\n"
    )
    truth = {"config": asdict(config), **asdict(simulation.truth)}
    truth_path.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")
    return SimulationSummary(
        reports_path=out,
        products_path=products_path,
        signals_path=signals_path,
        truth_path=truth_path,
        truth=simulation.truth,
        seconds=time.perf_counter() - began,
    )
