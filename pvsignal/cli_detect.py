"""``pvsignal detect``: a detection worker, alone or as one shard of several.

A worker watches the store's count mark and runs the detector over every scope whenever
batches moved it (at most every ``--interval``). With ``--shard K/N`` it detects only the
products of hash range K (pvsignal.columns.shard_of) and holds that shard's lease in the store:
a second worker for the same shard waits until the lease expires, and a worker whose lease
was taken is fenced (its writes are refused). Shard 0 fits each scope's prior; the others
read it from the store. The worker that is alone, or shard 0, also keeps the sequential tests
of active monitoring current, after batches and whenever exposures were written. SIGTERM
finishes the run in progress and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from pvsignal.argtypes import seconds, shard
from pvsignal.rebuild import effective_scopes
from pvsignal.store import open_store

log = logging.getLogger("pvsignal.detect")


def add_detect_command(commands: argparse._SubParsersAction, store_argument) -> None:
    detect = commands.add_parser(
        "detect",
        help="run detection as a worker (optionally one shard of several)",
        description=__doc__.split("\n\n", 1)[1],
    )
    detect.add_argument("--shard", type=shard, default=None, help="K/N: this worker's shard")
    detect.add_argument(
        "--interval", type=seconds, default=1.0, help="seconds between looks at the store (1)"
    )
    detect.add_argument("--once", action="store_true", help="one run over every scope, then exit")
    detect.add_argument("--scope-config", type=Path, help="the scopes (default: the store's)")
    store_argument(detect)
    detect.set_defaults(run=_run_detect)


def _run_detect(args: argparse.Namespace) -> int:
    from pvsignal.detection import DetectionConfig, Detector  # scipy: only when detecting
    from pvsignal.monitoring import Monitor

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = open_store(args.store)
    try:
        scopes = effective_scopes(store, args.scope_config)
        names = sorted(scope.name for scope in scopes.all_scopes())
        config = DetectionConfig(refit_in_background=True)
        detector = Detector(store, scopes, config, shard=args.shard)
        # One monitor for the store (its tests are few, per product): the lone worker's, or
        # shard 0's.
        alone_or_first = args.shard is None or args.shard[0] == 0
        monitor = Monitor(store, scopes, config) if alone_or_first else None
        seen = None
        while True:
            mark = (store.counts_mark(), store.exposures_mark())
            if mark != seen:
                alerts = detector.update(names) if seen is None or mark[0] != seen[0] else []
                if monitor is not None:
                    alerts += monitor.update(names)
                seen = mark
                log.info("detection run", extra={"alerts": len(alerts), "shard": args.shard})
            if args.once or stop.wait(args.interval):
                return 0
    finally:
        store.close()
