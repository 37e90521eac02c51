"""The ``pvsignal simulate`` command: its arguments, and a run that prints what it wrote."""

from __future__ import annotations

import argparse
from pathlib import Path

from pvsignal.argtypes import positive_int, share
from pvsignal.simulate.config import SimulationConfig
from pvsignal.simulate.simulation import write_simulation


def add_simulate_command(commands: argparse._SubParsersAction) -> None:
    """Register ``pvsignal simulate`` on the CLI's subparsers."""
    parser = commands.add_parser(
        "simulate",
        help="write a simulated report stream with known signals",
        description="Write a JSONL stream of simulated wire-format reports (follow-ups, "
        "nullifications, duplicates, re-sends, planted signals) in arrival order, with the "
        "product registry, the planted signals and the truth counts beside it.",
    )
    parser.add_argument("--reports", type=positive_int, required=True, help="lines to write")
    parser.add_argument(
        "--seed", type=int, required=True, help="random seed (same seed, same bytes)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("simulated.jsonl"), help="the JSONL file to write"
    )
    parser.add_argument(
        "--malformed-rate", type=share, default=0.0, help="share of lines that fail validation"
    )
    parser.set_defaults(run=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    config = SimulationConfig(
        reports=args.reports, seed=args.seed, malformed_rate=args.malformed_rate
    )
    summary = write_simulation(config, args.out)
    truth = summary.truth
    print(
        f"wrote {truth.lines:,} reports to {summary.reports_path} in {summary.seconds:.1f} s: "
        f"{truth.cases:,} cases ({truth.live_cases:,} live), {truth.follow_ups:,} follow-ups, "
        f"{truth.resends:,} re-sends, {truth.nullifications:,} nullifications, "
        f"{truth.duplicates:,} duplicate cases, {truth.malformed:,} malformed"
    )
    print(f"registry {summary.products_path} ({truth.products} products)")
    print(f"planted signals {summary.signals_path}; truth {summary.truth_path}")
    return 0
