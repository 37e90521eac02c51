"""Server time of each dashboard page, next to the /v1 call it renders (the peer, same run).

Run:  .venv/bin/python -m benchmarks.ui [--pairs 1000000] [--reports 50000] [--repeats 30]

Two stores, each served by `pvsignal serve` in a child process (one uvicorn worker), timed from
this process over 127.0.0.1 (wall time per request; loopback adds well under a millisecond):

1. ``--pairs`` product-event pairs (benchmarks.api's synthetic store: counts without cases or
   monthly counts, ~50,000 products at 1M pairs): the signals table and filters at scale.
2. ``--reports`` simulated reports ingested as the demo does (cases, months, follow-ups,
   planted signals, the active-monitoring pilot): the pages whose cost grows with cases and
   periods (overview and its reports by pathway, region and institution, a signal's trend,
   case series and rates panel), for a regulator and an MAH.

The overview sums the scope's place counts (cases per month, region, institution and product
list, kept at ingest) by pathway, region and institution on its first view (timed alone:
``once``); after a store change it shows that count while a recount runs beside it.

Each page is requested once to warm up, then ``--repeats`` times; p50 and p99 are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np

from api.demo import load_demo
from benchmarks.api import Server, synthetic_store
from pvsignal.simulate.exposures import SCOPE

TARGET_MS = 200


def signed_in(base: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=300, follow_redirects=True)
    form = client.get("/ui/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    # Not following the redirect home: the first view of a page is timed by the caller.
    answer = client.post(
        "/ui/login", data={"csrf_token": csrf, "api_key": key}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return client


def timed(client: httpx.Client, path: str, repeats: int, **kwargs: object) -> tuple[float, float]:
    client.get(path, **kwargs).raise_for_status()  # warm-up (snapshots, caches)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(path, **kwargs)
        timings.append(time.perf_counter() - started)
        response.raise_for_status()
    return float(np.percentile(timings, 50)) * 1000, float(np.percentile(timings, 99)) * 1000


def once(name: str, client: httpx.Client, path: str) -> None:
    """One request, timed alone: a page's first view, before any cache holds its answer."""
    started = time.perf_counter()
    client.get(path).raise_for_status()
    print(f"  {name:<44} once {(time.perf_counter() - started) * 1000:7.1f} ms", flush=True)


def report(name: str, p50: float, p99: float, peer: tuple[float, float] | None = None) -> None:
    against = f"   (/v1 peer p50 {peer[0]:.1f} ms: x{p50 / peer[0]:.1f})" if peer else ""
    flag = "" if p99 < TARGET_MS else "   OVER TARGET"
    print(f"  {name:<44} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms{against}{flag}", flush=True)


def at_scale(folder: Path, pairs: int, repeats: int) -> None:
    url = f"sqlite:///{folder}/pairs.db"
    began = time.perf_counter()
    made, regulator, mah = synthetic_store(url, pairs)
    print(f"store 1: {made:,} pairs, built in {time.perf_counter() - began:.0f} s", flush=True)
    server = Server(url)
    try:
        for who, key in (("regulator", regulator), ("MAH", mah)):
            client = signed_in(server.base, key)
            api = {"Authorization": f"Bearer {key}"}
            pages = {
                "signals, first page (25 rows)": ("/ui/signals", "/v1/signals?limit=25"),
                "signals, pathway + open EBGM": (
                    "/ui/signals?pathway=lecheng_special_import&measure=ebgm&status=open",
                    "/v1/signals?limit=25&pathway=lecheng_special_import&measure=ebgm&status=open",
                ),
                "signals, sorted by PRR, 100 rows": (
                    "/ui/signals?sort=-prr&limit=100",
                    "/v1/signals?sort=-prr&limit=100",
                ),
                "signals CSV (the page shown)": ("/ui/signals.csv", None),
                "overview": ("/ui/overview", "/v1/scopes"),
                "products": ("/ui/products", "/v1/products"),
                "alerts": ("/ui/alerts", "/v1/alerts?order=newest&limit=100"),
            }
            print(f" {who}:")
            for name, (page, peer) in pages.items():
                p50, p99 = timed(client, page, repeats)
                base = timed(client, peer, repeats, headers=api) if peer else None
                report(name, p50, p99, base)
            client.close()
    finally:
        server.stop()


def with_cases(folder: Path, reports: int, repeats: int) -> None:
    url = f"sqlite:///{folder}/cases.db"
    began = time.perf_counter()
    demo = load_demo(url, reports=reports, seed=7)
    print(f"store 2: {reports:,} simulated reports, built in {time.perf_counter() - began:.0f} s")
    server = Server(url)
    try:
        client = signed_in(server.base, demo.regulator_key)
        api = {"Authorization": f"Bearer {demo.regulator_key}"}
        product_id, pt = demo.planted[0]
        pair = urlencode({"product_id": product_id, "pt": pt})
        v1 = f"/v1/signals/all/{product_id}/{pt}"
        print(" regulator:")
        once("overview, first view (sums place counts)", client, "/ui/overview")
        report("overview", *timed(client, "/ui/overview", repeats))
        report(
            "signals, first page (25 rows)",
            *timed(client, "/ui/signals", repeats),
            timed(client, "/v1/signals?limit=25", repeats, headers=api),
        )
        report(
            "signal detail (trend, cases, review, audit)",
            *timed(client, f"/ui/signal?{pair}", repeats),
            timed(client, f"{v1}/trend", repeats, headers=api),
        )
        monitored = urlencode(
            {"scope": SCOPE, "product_id": demo.monitored[0], "pt": demo.monitored[1]}
        )
        report(
            "signal detail with the rates panel",
            *timed(client, f"/ui/signal?{monitored}", repeats),
            timed(client, f"/v1/rates?{monitored}", repeats, headers=api),
        )
        report("upload form", *timed(client, "/ui/upload", repeats))
        client.close()
        if demo.mah_key:
            client = signed_in(server.base, demo.mah_key)
            print(" MAH:")
            once("overview, first view (sums its place counts)", client, "/ui/overview")
            report("overview", *timed(client, "/ui/overview", repeats))
            report("alerts", *timed(client, "/ui/alerts", repeats))
            client.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--reports", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}; one uvicorn worker over 127.0.0.1; target p99 < "
        f"{TARGET_MS} ms per page"
    )
    with tempfile.TemporaryDirectory(prefix="pvsignal-bench-ui-") as folder:
        at_scale(Path(folder), args.pairs, args.repeats)
        with_cases(Path(folder), args.reports, args.repeats)


if __name__ == "__main__":
    main()
