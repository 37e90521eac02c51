"""`pvsignal meddra load|versions` and `pvsignal terms unmapped`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pvsignal.audit import Actor, Entry
from pvsignal.cli_store import _store_argument
from pvsignal.store import open_store, redact_url


def add_terminology_commands(commands: argparse._SubParsersAction) -> None:
    meddra = commands.add_parser("meddra", help="the MedDRA dictionary (user-supplied)")
    meddra_commands = meddra.add_subparsers(dest="meddra_command", required=True)
    load = meddra_commands.add_parser(
        "load",
        help="load a MedDRA ASCII release (its MedAscii folder) and recount",
        description="Read llt, pt, hlt, hlgt, soc, their link files, mdhier and the SMQ files; "
        "keep the release (earlier versions stay); count in the newest version loaded. A "
        "Chinese release's names become aliases of the same terms.",
    )
    load.add_argument("folder", type=Path, help="the folder holding llt.asc, pt.asc, ...")
    load.add_argument("--version", help="the MedDRA version (default: meddra_release.asc's)")
    load.add_argument(
        "--language",
        choices=("en", "zh"),
        help="the release's language (default: meddra_release.asc's, else told from its names)",
    )
    load.add_argument("--encoding", default="utf-8", help="text encoding of the files")
    _store_argument(load)
    load.set_defaults(run=_run_meddra_load)
    versions = meddra_commands.add_parser("versions", help="the releases loaded")
    _store_argument(versions)
    versions.set_defaults(run=_run_meddra_versions)

    terms = commands.add_parser("terms", help="event terms as counted")
    term_commands = terms.add_subparsers(dest="terms_command", required=True)
    unmapped = term_commands.add_parser(
        "unmapped", help="terms no MedDRA entry resolves, with their cases (most first)"
    )
    unmapped.add_argument("--scope", default="all")
    _store_argument(unmapped)
    unmapped.set_defaults(run=_run_terms_unmapped)


def _run_meddra_load(args: argparse.Namespace) -> int:
    from pvsignal.rebuild import effective_scopes, rebuild
    from pvsignal.terminology.meddra import read_release

    release = read_release(
        args.folder, version=args.version, language=args.language, encoding=args.encoding
    )
    store = open_store(args.store)
    try:
        with store.write_transaction() as cursor:
            current = store.save_release(release, str(args.folder))
            store.append_audit(
                cursor,
                Actor.cli(),
                [
                    Entry(
                        "meddra.load",
                        "meddra_release",
                        f"{release.version}/{release.language}",
                        None,
                        {"source": str(args.folder), **release.summary()},
                    )
                ],
            )
        counted = ", ".join(f"{n} {level}" for level, n in release.summary().items())
        print(
            f"loaded MedDRA {release.version} ({release.language}: {counted}) into "
            f"{redact_url(args.store)}; counting in version {current}"
        )
        if store.count_cases().get("active") and current == release.version:
            # Terms may now resolve (or group) differently: recount, as after a registry change.
            summary = rebuild(store, effective_scopes(store, None))
            print(f"recounted {summary.cases} cases under MedDRA {current}")
    finally:
        store.close()
    return 0


def _run_meddra_versions(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        for row in store.meddra_releases():
            mark = "*" if row["current"] else " "
            print(
                f"{mark} {row['version']}\t{row['language']}\t{row['loaded_at']}\t{row['source']}"
            )
    finally:
        store.close()
    return 0


def _run_terms_unmapped(args: argparse.Namespace) -> int:
    from pvsignal.case_access import CaseAccess, Level
    from pvsignal.terminology.unmapped import unmapped_terms

    store = open_store(args.store)
    try:
        # The operator on the store's host reads every case, as a regulator does.
        found = unmapped_terms(store, CaseAccess(Level.full, b""), args.scope)
    finally:
        store.close()
    for term in found:
        print(f"{term.term}\t{term.cases}")
    print(f"({len(found)} unmapped terms in scope {args.scope!r})", file=sys.stderr)
    return 0
