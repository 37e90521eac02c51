"""Commands over the state store: ingest, products, signals export, rejects, audit."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pvsignal.argtypes import positive_int
from pvsignal.audit import Actor, Entry
from pvsignal.errors import InputError
from pvsignal.ingest import BatchCollector, Ingestor, IngestSummary, batches
from pvsignal.institutions import load_institutions
from pvsignal.ownership import UNATTRIBUTED, OwnerRule, SenderOwns, SourceOwns
from pvsignal.products import Registry, load_products
from pvsignal.readers import FORMATS, RawRecord, detect_format
from pvsignal.rebuild import effective_scopes, rebuild, register_institutions
from pvsignal.scopes import ScopeConfig, load_scope_config
from pvsignal.store import DEFAULT_URL, SqlStore, open_store, redact_url

if TYPE_CHECKING:
    from pvsignal.monitoring import Monitored

_DATABASE_OWNERS = {"faers": "FDA-FAERS", "vaers": "CDC-VAERS"}


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=os.environ.get("PVSIGNAL_STORE_URL", DEFAULT_URL),
        help=f"store URL (default $PVSIGNAL_STORE_URL or {DEFAULT_URL})",
    )


def reader_for(name: str) -> Callable[[list[Path]], Iterator[RawRecord]]:
    """The reader of a source format."""
    if name == "jsonl":
        from pvsignal.readers.jsonl import read_jsonl

        return read_jsonl
    if name == "e2b":
        from pvsignal.readers.e2b import read_e2b

        return read_e2b
    if name == "faers":
        from pvsignal.readers.faers import read_faers

        return read_faers
    if name == "vaers":
        from pvsignal.readers.vaers import read_vaers

        return read_vaers
    raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {name!r}")


def add_store_commands(commands: argparse._SubParsersAction) -> None:
    from pvsignal.cli_detect import add_detect_command

    add_detect_command(commands, _store_argument)
    ingest = commands.add_parser(
        "ingest",
        help="ingest reports into the store",
        description="Read reports, apply case versions, count them.",
    )
    ingest.add_argument("paths", nargs="+", type=Path, help="files (or folders for faers/vaers)")
    ingest.add_argument(
        "--format",
        choices=FORMATS,
        help="the source format (default: told from the file names, else from their content)",
    )
    ingest.add_argument("--scope-config", type=Path, help="YAML file declaring the scopes")
    ingest.add_argument(
        "--batch-size",
        type=positive_int,
        default=50_000,
        help="records per store transaction (fewer, larger transactions import faster)",
    )
    ingest.add_argument(
        "--detect",
        choices=("end", "batch", "off"),
        default="end",
        help="update signal states and alerts after the whole ingest (default), after every "
        "batch, or not at all",
    )
    ingest.add_argument(
        "--owner",
        help="organisation owning the records that name no sender organisation (C.3.2; "
        "default 'unattributed'); for faers/vaers, every record's (default FDA-FAERS, "
        "CDC-VAERS: their case ids are the database's)",
    )
    _store_argument(ingest)
    ingest.set_defaults(run=_run_ingest)

    products = commands.add_parser("products", help="the product registry")
    product_commands = products.add_subparsers(dest="products_command", required=True)
    load = product_commands.add_parser("load", help="load products from YAML or CSV")
    load.add_argument("file", type=Path)
    _store_argument(load)
    load.set_defaults(run=_run_products_load)

    audit = commands.add_parser("audit", help="the audit trail")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify", help="check the hash chain; name the first broken row (exit 1)"
    )
    _store_argument(verify)
    verify.set_defaults(run=_run_audit_verify)
    listing = product_commands.add_parser("list", help="list registered products")
    _store_argument(listing)
    listing.set_defaults(run=_run_products_list)

    signals = commands.add_parser("signals", help="signals from the store")
    signal_commands = signals.add_subparsers(dest="signals_command", required=True)
    export = signal_commands.add_parser(
        "export", help="every pair of a scope with the statistics of `pvsignal analyze`"
    )
    export.add_argument("--scope", default="all")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.add_argument("--theta", help="fixed MGPS prior a1,b1,a2,b2,p (no fit)")
    export.add_argument(
        "--scope-config", type=Path, help="YAML scope file (its stratify flag and priors)"
    )
    _store_argument(export)
    export.set_defaults(run=_run_signals_export)

    fits = commands.add_parser(
        "fits", help="recorded MGPS priors: which (fitted, borrowed, given) and why"
    )
    fits.add_argument("--scope", help="only this scope's")
    fits.add_argument("--last", type=int, default=20, help="the newest N records")
    _store_argument(fits)
    fits.set_defaults(run=_run_fits)

    institutions = commands.add_parser(
        "institutions", help="the institution registry (hospitals, MAHs, regulators)"
    )
    institution_commands = institutions.add_subparsers(dest="institutions_command", required=True)
    load_institutions_parser = institution_commands.add_parser(
        "load", help="load institutions from YAML or CSV"
    )
    load_institutions_parser.add_argument("file", type=Path)
    _store_argument(load_institutions_parser)
    load_institutions_parser.set_defaults(run=_run_institutions_load)
    list_institutions = institution_commands.add_parser("list", help="list institutions")
    _store_argument(list_institutions)
    list_institutions.set_defaults(run=_run_institutions_list)

    rebuild_parser = commands.add_parser(
        "rebuild", help="recount every case under a (new) scope configuration and the registry"
    )
    rebuild_parser.add_argument("--scope-config", type=Path, help="the new scopes (YAML)")
    _store_argument(rebuild_parser)
    rebuild_parser.set_defaults(run=_run_rebuild)

    store = commands.add_parser("store", help="the state store itself")
    store_commands = store.add_subparsers(dest="store_command", required=True)
    migrate = store_commands.add_parser(
        "migrate",
        help="apply the schema's migrations and exit",
        description="Create or upgrade the store's tables, then exit: run once before the API "
        "and the consumers start (the Helm chart's pre-install/pre-upgrade Job).",
    )
    _store_argument(migrate)
    migrate.set_defaults(run=_run_store_migrate)

    rejects = commands.add_parser("rejects", help="records refused, with their reasons")
    rejects.add_argument("--limit", type=int, default=50)
    rejects.add_argument("--offset", type=int, default=0)
    _store_argument(rejects)
    rejects.set_defaults(run=_run_rejects)


def _run_ingest(args: argparse.Namespace) -> int:
    for path in args.paths:
        if not path.exists():
            raise InputError(f"input {str(path)!r} does not exist")
    source = args.format if args.format is not None else detect_format(args.paths)
    read = reader_for(source)
    store = open_store(args.store)
    collector = BatchCollector()
    try:
        scopes = effective_scopes(store, args.scope_config)
        ingestor = Ingestor(
            store,
            scopes,
            owners=owner_rule(source, args.owner),
            source=source,
            batch_size=args.batch_size,
        )
        detector = None if args.detect == "off" else _detector(store, scopes)
        summary, alerts = IngestSummary(), 0
        for batch in batches(read(list(args.paths)), args.batch_size):
            result = ingestor.apply(batch).summary
            summary.merge(result)
            if detector is not None and args.detect == "batch":
                alerts += len(detector.update(result.touched_scopes))
            collector.after_batch()
        if detector is not None and args.detect == "end":
            alerts += len(detector.update(summary.touched_scopes))
    finally:
        collector.close()
        store.close()
    print(describe_ingest(summary, args.store))
    if args.detect != "off":
        print(f"signal transitions (alerts) recorded: {alerts}")
    if summary.received and summary.rejected == summary.received:
        print(
            f"pvsignal ingest: error: all {summary.received} records were rejected as {source} "
            "(reasons: `pvsignal rejects`; another --format?)",
            file=sys.stderr,
        )
        return 1
    return 0


def owner_rule(source_format: str, owner: str | None) -> OwnerRule:
    """Who owns the cases of a file (see pvsignal.ownership)."""
    database = _DATABASE_OWNERS.get(source_format)
    if database is not None:
        return SourceOwns(owner or database)
    return SenderOwns(owner or UNATTRIBUTED)


def _detector(store: SqlStore, scopes: ScopeConfig) -> Monitored:
    from pvsignal.detection import Detector  # scipy and the detectors: only when detecting
    from pvsignal.monitoring import Monitor, Monitored

    return Monitored(Detector(store, scopes), Monitor(store, scopes))


def describe_ingest(summary: IngestSummary, url: str) -> str:
    """The ingest summary a person reads."""
    o = summary.outcomes
    lines = [
        f"received {summary.received} records into {redact_url(url)}",
        f"new cases {o['new']}, follow-ups applied {o['follow_up']}, "
        f"stale versions ignored {o['stale']}, resent unchanged {o['resent']}",
        f"withdrawn: nullified {o['nullified']}, duplicates {summary.duplicates_withdrawn}; "
        f"refused (versions of withdrawn cases) {o['refused']}",
        f"rejected {summary.rejected}"
        + (
            " (kept with their reasons: `pvsignal rejects`)"
            if summary.rejected or o["refused"]
            else ""
        ),
    ]
    if summary.touched_scopes:
        lines.append(f"scopes updated: {', '.join(sorted(summary.touched_scopes))}")
    return "\n".join(lines)


def _run_products_load(args: argparse.Namespace) -> int:
    products = load_products(args.file)
    store = open_store(args.store)
    try:
        registry = Registry(store.load_products())
        before = {p.product_id: p.model_dump(mode="json") for p in registry}
        for product in products:  # alias clashes and look-alikes, before anything is saved
            registry.add(product)
        with store.write_transaction() as cursor:
            store.save_products(products)
            store.append_audit(
                cursor,
                Actor.cli(),
                [
                    Entry(
                        "product.put",
                        "product",
                        p.product_id,
                        before.get(p.product_id),
                        p.model_dump(mode="json"),
                    )
                    for p in products
                ],
            )
        print(f"loaded {len(products)} products into {redact_url(args.store)}")
        if store.count_cases().get("active"):
            # New names or aliases may resolve reports to other products: recount.
            summary = rebuild(store, effective_scopes(store, None))
            print(f"recounted {summary.cases} cases under the new registry")
    finally:
        store.close()
    return 0


def _run_institutions_load(args: argparse.Namespace) -> int:
    institutions = load_institutions(args.file)
    store = open_store(args.store)
    try:
        known = {i.institution_id: i.model_dump(mode="json") for i in store.load_institutions()}
        with store.write_transaction() as cursor:
            renamed = register_institutions(store, institutions)
            store.append_audit(
                cursor,
                Actor.cli(),
                [
                    Entry(
                        "institution.put",
                        "institution",
                        i.institution_id,
                        known.get(i.institution_id),
                        i.model_dump(mode="json"),
                    )
                    for i in institutions
                ],
            )
        print(f"loaded {len(institutions)} institutions into {redact_url(args.store)}")
        for old, new in renamed.items():
            print(f"cases of {old!r} now belong to {new!r}")
        if store.count_cases().get("active"):
            # An institution's region counts for reports that state none: recount.
            summary = rebuild(store, effective_scopes(store, None))
            print(f"recounted {summary.cases} cases under the new registry")
    finally:
        store.close()
    return 0


def _run_institutions_list(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        for institution in store.load_institutions():
            print(
                f"{institution.institution_id}\t{institution.names[0]}\t"
                f"{institution.kind.value}\t{institution.region or ''}\t"
                f"{','.join(d.value for d in institution.designations)}"
            )
    finally:
        store.close()
    return 0


def _run_rebuild(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        scopes = (
            load_scope_config(args.scope_config)
            if args.scope_config is not None
            else effective_scopes(store, None)
        )
        summary = rebuild(store, scopes)
    finally:
        store.close()
    print(f"recounted {summary.cases} cases into scopes {', '.join(summary.scopes)}")
    return 0


def _run_products_list(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        for product in store.load_products():
            print(
                f"{product.product_id}\t{product.names[0]}\t{product.kind.value}\t"
                f"{product.pathway.value}\t{product.mah_id}"
            )
    finally:
        store.close()
    return 0


def _run_signals_export(args: argparse.Namespace) -> int:
    from pvsignal.analyze import parse_theta
    from pvsignal.export import PairExport
    from pvsignal.memory import release_freed_memory
    from pvsignal.priors import prior_line
    from pvsignal.scoring import ScoringConfig
    from pvsignal.signals import prepared_scope

    theta = parse_theta(args.theta) if args.theta is not None else None
    store = open_store(args.store)
    try:
        scopes = effective_scopes(store, args.scope_config)
        prior = prepared_scope(store, args.scope, theta=theta, scopes=scopes, recorded=True)
        level = next((s.level.value for s in scopes.all_scopes() if s.name == args.scope), "pt")
    finally:
        store.close()
    release_freed_memory()  # the read's page cache and rows: writing needs none of it
    print(f"MGPS prior of {args.scope!r}: {prior_line(prior.fit)}", file=sys.stderr)
    export = PairExport(prior.pairs, prior.theta, ScoringConfig())
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(args.out.open("wb")) if args.out else sys.stdout.buffer
        if args.format == "csv":
            signals = export.write_csv(sink)
        else:
            head = {"scope": args.scope, "level": level, "fit": prior.fit}
            signals = export.write_json(head, sink)
            sink.write(b"\n")
    if args.out is not None:
        print(
            f"wrote {prior.pairs.counts.a.size} pairs of scope {args.scope!r} (event level "
            f"{level}) to {args.out}; " + ", ".join(f"{k} {v}" for k, v in signals.items()),
            file=sys.stderr,
        )
    return 0


def _run_fits(args: argparse.Namespace) -> int:
    from pvsignal.priors import prior_line

    store = open_store(args.store)
    try:
        records = store.fits(args.scope, last=args.last)
    finally:
        store.close()
    for record in records:
        print(f"{record['scope']}\t{record['fitted_at']}\t{prior_line(record)}")
    return 0


def _run_store_migrate(args: argparse.Namespace) -> int:
    store = open_store(args.store)  # opening a store applies its pending migrations
    store.close()
    print(f"store {redact_url(args.store)} is at the current schema")
    return 0


def _run_rejects(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        rows = store.rejects(limit=args.limit, offset=args.offset)
        total = store.count_rejects()
    finally:
        store.close()
    for row in rows:
        print(
            f"{row['id']}\t{row['source']}\t{row['location']}\t{row['field']}\t"
            f"{row['value']}\t{row['reason']}"
        )
    print(f"({len(rows)} of {total} rejects shown)", file=sys.stderr)
    return 0


def _run_audit_verify(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        head = store.audit_head()
        broken = store.verify_audit()
    finally:
        store.close()
    if broken is not None:
        print(f"audit trail broken at row {broken.seq}: {broken.reason}", file=sys.stderr)
        return 1
    print(f"audit trail intact: {head[0]} rows, head {head[1]}")
    return 0
