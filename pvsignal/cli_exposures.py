"""``pvsignal exposures ingest FILE`` and ``pvsignal rates``: active monitoring from the CLI."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import orjson

from pvsignal.argtypes import positive_int
from pvsignal.cli_store import _store_argument, owner_rule
from pvsignal.errors import InputError
from pvsignal.exposures import ExposureIngestor, read_exposure_files
from pvsignal.ingest import BatchCollector
from pvsignal.rebuild import effective_scopes
from pvsignal.store import open_store, redact_url


def add_exposure_commands(commands: argparse._SubParsersAction) -> None:
    exposures = commands.add_parser("exposures", help="exposures: patients who received products")
    exposure_commands = exposures.add_subparsers(dest="exposures_command", required=True)
    ingest = exposure_commands.add_parser(
        "ingest",
        help="ingest exposure records (JSON Lines, or CSV with a header of field names)",
        description="Apply exposure records (corrections, withdrawals) and update the scopes' "
        "sequential tests. A .csv file is read as CSV, anything else as JSON Lines.",
    )
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--scope-config", type=Path, help="YAML file declaring the scopes")
    ingest.add_argument("--batch-size", type=positive_int, default=5_000)
    ingest.add_argument(
        "--owner",
        help="organisation owning the records that name no sender (default 'unattributed')",
    )
    ingest.add_argument(
        "--detect",
        choices=("end", "off"),
        default="end",
        help="update the sequential tests after the ingest (default) or not",
    )
    _store_argument(ingest)
    ingest.set_defaults(run=_run_exposures_ingest)

    rates = commands.add_parser(
        "rates", help="incidence and observed/expected per product, PT and period"
    )
    rates.add_argument("--scope", default="all")
    rates.add_argument("--product", action="append", dest="products", help="repeatable")
    rates.add_argument("--pt", action="append", dest="pts", help="repeatable")
    rates.add_argument("--period", choices=("total", "year", "quarter", "month"), default="total")
    rates.add_argument("--format", choices=("csv", "json"), default="csv")
    rates.add_argument("--scope-config", type=Path, help="YAML file declaring the scopes")
    _store_argument(rates)
    rates.set_defaults(run=_run_rates)


def _run_exposures_ingest(args: argparse.Namespace) -> int:
    for path in args.paths:
        if not path.is_file():
            raise InputError(f"input {str(path)!r} is not a file")
    store = open_store(args.store)
    collector = BatchCollector()
    try:
        scopes = effective_scopes(store, args.scope_config)
        ingestor = ExposureIngestor(
            store, scopes, owners=owner_rule("exposures", args.owner), batch_size=args.batch_size
        )
        summary = ingestor.ingest(read_exposure_files(args.paths))
        alerts = 0
        if args.detect == "end" and summary.touched_scopes:
            from pvsignal.monitoring import Monitor

            alerts = len(Monitor(store, scopes).update(summary.touched_scopes))
    finally:
        collector.close()
        store.close()
    o = summary.outcomes
    print(f"received {summary.received} exposure records into {redact_url(args.store)}")
    print(
        f"new {o['new']}, corrected {o['corrected']}, withdrawn {o['withdrawn']}, "
        f"stale {o['stale']}, resent {o['resent']}, refused {o['refused']}, "
        f"rejected {summary.rejected}"
        + (" (kept with their reasons: `pvsignal rejects`)" if summary.rejected else "")
    )
    if args.detect == "end":
        print(f"sequential-test transitions (alerts) recorded: {alerts}")
    if summary.received and summary.rejected == summary.received:
        print(
            f"pvsignal exposures: error: all {summary.received} records were rejected",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_rates(args: argparse.Namespace) -> int:
    from pvsignal.institutions import InstitutionRegistry
    from pvsignal.products import Registry
    from pvsignal.rates import COLUMNS, RateQuery, rates

    store = open_store(args.store)
    try:
        scopes = effective_scopes(store, args.scope_config)
        scope = next((s for s in scopes.all_scopes() if s.name == args.scope), None)
        if scope is None:
            raise InputError(f"--scope {args.scope!r} is not a configured scope")
        found = rates(
            store,
            RateQuery(scope, args.products, args.pts, args.period),
            Registry(store.load_products()),
            InstitutionRegistry(store.load_institutions()),
        )
    finally:
        store.close()
    if args.format == "json":
        sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    writer = csv.DictWriter(sys.stdout, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(found)
    return 0
