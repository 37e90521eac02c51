"""The `pvsignal` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

from pvsignal.argtypes import level
from pvsignal.cli_exposures import add_exposure_commands
from pvsignal.cli_maxsprt import add_maxsprt_command
from pvsignal.cli_store import add_store_commands
from pvsignal.errors import PvsignalError
from pvsignal.simulate import add_simulate_command
from pvsignal.terminology.cli import add_terminology_commands


def _add_analyze(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "analyze",
        help="score every product-event pair of a case table",
        description="Count distinct reports per product-event pair in a case-level table "
        "(one row per report x product x event), fit the MGPS prior unless "
        "--theta is given, and write every pair's PRR, ROR, IC and EBGM with "
        "their bounds and signal flags.",
    )
    parser.add_argument("cases", type=Path, help="the case table (CSV or another delimiter)")
    parser.add_argument("--id-col", required=True, help="column holding the report id")
    parser.add_argument("--product-col", required=True, help="column holding the product")
    parser.add_argument("--event-col", required=True, help="column holding the event (PT)")
    parser.add_argument(
        "--strata-col",
        action="append",
        default=[],
        metavar="COL",
        help="stratify expected counts by this column (repeatable)",
    )
    parser.add_argument("--theta", type=str, help="fixed MGPS prior a1,b1,a2,b2,p (no fit)")
    parser.add_argument(
        "--squash", action="store_true", help="squash the data before the MGPS fit (large inputs)"
    )
    parser.add_argument("--sep", default=",", help="field delimiter (default ',')")
    parser.add_argument("--prr-level", type=level, default=0.95, help="PRR interval level")
    parser.add_argument(
        "--ror-level",
        type=level,
        default=0.95,
        help="ROR interval level (0.95; 0.90 is also in use)",
    )
    parser.add_argument("--ic-level", type=level, default=0.95, help="IC interval level")
    parser.add_argument(
        "--no-yates", action="store_true", help="chi-square without Yates' correction"
    )
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="MEASURE.FIELD=VALUE",
        help="change a signal threshold, e.g. prr.min_a=5, ror.min_a=5, ebgm.min_eb05=2.5 "
        "(fields: prr.min_prr/min_chi2/min_a, ror.min_lower/min_a, ic.min_lower, ebgm.min_eb05)",
    )
    parser.add_argument(
        "--fdr",
        type=level,
        metavar="Q",
        help="also require the BH-adjusted chi-square p-value <= Q for PRR",
    )
    parser.add_argument("--out", type=Path, required=True, help="the pairs CSV to write")
    parser.set_defaults(run=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> int:
    # Imported here: pandas and scipy are not needed by the other commands' start-up.
    from pvsignal.analyze import AnalyzeRequest, analyze, parse_theta
    from pvsignal.casetable import Columns
    from pvsignal.scoring import ScoringConfig, with_rule_overrides

    config = with_rule_overrides(
        ScoringConfig(
            prr_level=args.prr_level,
            ror_level=args.ror_level,
            ic_level=args.ic_level,
            yates=not args.no_yates,
            fdr_q=args.fdr,
        ),
        args.rule,
    )
    request = AnalyzeRequest(
        cases=args.cases,
        out=args.out,
        sep=args.sep,
        squash=args.squash,
        config=config,
        theta=parse_theta(args.theta) if args.theta is not None else None,
        columns=Columns(
            id=args.id_col,
            product=args.product_col,
            event=args.event_col,
            strata=tuple(args.strata_col),
        ),
    )
    summary = analyze(request)
    print(f"read {summary.rows} rows: {summary.reports} reports, {summary.pairs} pairs")
    if summary.rejected:
        print(
            f"rejected {summary.rejected} rows, kept with their reasons in {summary.rejects_path}"
        )
    print(
        "signals: "
        + ", ".join(f"{k.removeprefix('signal_')} {v}" for k, v in summary.signals.items())
    )
    for warning in summary.warnings:
        print(f"warning: MGPS fit: {warning}", file=sys.stderr)
    print(f"wrote {summary.out} and {summary.fit_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pvsignal", description="Pharmacovigilance signal detection."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_analyze(commands)
    add_store_commands(commands)
    add_exposure_commands(commands)
    add_simulate_command(commands)
    add_maxsprt_command(commands)
    add_terminology_commands(commands)
    for plugin in entry_points(group="pvsignal.commands"):
        # api/ and streams/ add their commands (serve, keys, consume) through entry points,
        # so that the core never imports them.
        plugin.load()(commands)
    return parser


def _installed_version() -> str:
    try:
        return version("pvsignal")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except PvsignalError as error:
        print(f"pvsignal {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
