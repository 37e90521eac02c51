"""`pvsignal serve [--demo]` and `pvsignal keys create|list|revoke`.

Registered on the main parser with ``add_api_commands(commands)`` (pvsignal/cli.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from pvsignal.errors import InputError
from pvsignal.store import DEFAULT_URL

if TYPE_CHECKING:  # imported when used: the other commands start faster without them
    from api.demo import DemoStore
    from pvsignal.settings import Settings

ROLES = ("hospital", "mah", "regulator", "admin")


def add_api_commands(commands: argparse._SubParsersAction) -> None:
    _add_serve(commands)
    _add_keys(commands)


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the HTTP API (reports in, signals, alerts and webhooks out)",
        description="Serve the API with the in-process engine: posted reports are counted, "
        "detection runs after each burst of them, alerts go to webhooks and live streams. "
        "Settings come from PVSIGNAL_* environment variables; the options override them.",
    )
    serve.add_argument("--store", help=f"store URL (default $PVSIGNAL_STORE_URL or {DEFAULT_URL})")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="first load simulated reports and a registry (pilot-import products), run "
        "detection and print API keys (store default: sqlite:///pvsignal-demo.db)",
    )
    serve.add_argument("--demo-reports", type=int, default=20_000, help=argparse.SUPPRESS)
    serve.set_defaults(run=_run_serve)


def _add_keys(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key (printed once, stored hashed)")
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--org", help="organisation id (required for hospital and mah)")
    create.add_argument("--name", help="what the key is for")
    _store_option(create)
    create.set_defaults(run=_run_keys_create)
    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    _store_option(listing)
    listing.set_defaults(run=_run_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    _store_option(revoke)
    revoke.set_defaults(run=_run_keys_revoke)


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=os.environ.get("PVSIGNAL_STORE_URL", DEFAULT_URL),
        help=f"store URL (default $PVSIGNAL_STORE_URL or {DEFAULT_URL})",
    )


def settings_from(**overrides: object) -> Settings:
    """Settings from the environment and the given overrides; a bad value names itself."""
    from pvsignal.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        raise InputError(f"settings: {problems}") from None


def _run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.demo import DEMO_URL, load_demo
    from api.logs import configure_logging

    store = args.store
    if store is None and args.demo and "PVSIGNAL_STORE_URL" not in os.environ:
        store = DEMO_URL  # demo data never goes into the default store
    settings = settings_from(store_url=store)
    configure_logging(settings.log_level)
    if args.demo:
        demo = load_demo(settings.store_url, reports=args.demo_reports)
        _print_demo(demo, settings.store_url, args.host, args.port)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,  # the app logs each request itself, as JSON with its request id
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    return 0


def _print_demo(demo: DemoStore, url: str, host: str, port: int) -> None:
    base = f"http://{host}:{port}"
    summary = demo.summary
    lines = [
        f"demo store {url}: {demo.reports} simulated reports, "
        f"{summary.outcomes['new']} cases, {demo.alerts} signal transitions",
        f"dashboard: {base}/ui  (sign in with one of these keys)",
        f"regulator key: {demo.regulator_key}",
    ]
    if demo.mah_key:
        lines.append(f"MAH key ({demo.mah_id}, sees only its products): {demo.mah_key}")
    lines += [
        f"hospital key ({demo.hospital_id}, submits reports): {demo.hospital_key}",
        f"admin key (manages keys): {demo.admin_key}",
        f"more keys for this store: pvsignal keys create --store {url} --role ROLE [--org ORG]",
    ]
    if demo.planted:
        product, pt = demo.planted[0]
        lines.append(f"a planted signal: {product} / {pt}")
    lines += [
        f"try: curl -H 'Authorization: Bearer {demo.regulator_key}' "
        f"'{base}/v1/signals?status=open&limit=5'",
        f"API documentation: {base}/docs",
    ]
    print("\n".join(lines), flush=True)


def _run_keys_create(args: argparse.Namespace) -> int:
    from api.auth import issue_key
    from pvsignal.audit import Actor, recorded
    from pvsignal.store import open_store

    store = open_store(args.store)
    try:
        with recorded(store, Actor.cli(), "key.create", "key", "") as recording:
            key, record = issue_key(store, args.role, args.org, args.name)
            recording.object_id, recording.after = record["key_id"], record
    finally:
        store.close()
    print(key)
    print(
        f"key id {record['key_id']}, role {record['role']}"
        + (f", organisation {record['org']}" if record["org"] else "")
        + " — shown once, only its hash is stored",
        file=sys.stderr,
    )
    return 0


def _run_keys_list(args: argparse.Namespace) -> int:
    from pvsignal.store import open_store

    store = open_store(args.store)
    try:
        for key in store.api_keys():
            state = f"revoked {key['revoked_at']}" if key["revoked_at"] else "live"
            print(
                f"{key['key_id']}\t{key['role']}\t{key['org'] or '-'}\t"
                f"{key['name'] or '-'}\t{key['created_at']}\t{state}"
            )
    finally:
        store.close()
    return 0


def _run_keys_revoke(args: argparse.Namespace) -> int:
    from pvsignal.audit import Actor, recorded
    from pvsignal.store import open_store

    store = open_store(args.store)
    try:
        with recorded(store, Actor.cli(), "key.revoke", "key", args.key_id) as recording:
            revoked = store.revoke_api_key(args.key_id)
            recording.after = {"key_id": args.key_id, "revoked": revoked}
    finally:
        store.close()
    if not revoked:
        raise InputError(f"no live key {args.key_id!r}")
    print(f"revoked {args.key_id}")
    return 0
