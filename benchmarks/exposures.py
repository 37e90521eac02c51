"""Active monitoring's costs: exposure ingest against report ingest, a rates query, a monitor run.

Run:  .venv/bin/python -m benchmarks.exposures [--months 18] [--scale 20]

One simulated Lecheng pilot (pvsignal.simulate.exposures), its patients multiplied by
``--scale`` (pilots of several times the 17,000 patients of the GBA Connect by 2023), into a
SQLite store. The peer in the same run is the report ingest engine on the same number of
records (the pilot's reports, repeated under new case ids): records per second of each, and
their ratio. Then the time of one ``GET /v1/rates``-equivalent query over the whole scope and
of one monitor update (every test of the scope), best of 3.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import orjson

from pvsignal.exposures import ExposureIngestor
from pvsignal.ingest import Ingestor
from pvsignal.institutions import InstitutionRegistry
from pvsignal.monitoring import Monitor
from pvsignal.products import Registry
from pvsignal.rates import RateQuery, rates
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate.exposures import PilotConfig, pilot_stream
from pvsignal.store import open_store


def scaled(lines: list[bytes], scale: int, key: str) -> list[bytes]:
    """The lines ``scale`` times, each copy under its own ids."""
    out = []
    for copy in range(scale):
        for line in lines:
            document = orjson.loads(line)
            document[key] = f"{document[key]}-x{copy}"
            out.append(orjson.dumps(document))
    return out


def best(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--scale", type=int, default=20)
    args = parser.parse_args()
    stream = pilot_stream(PilotConfig(months=args.months))
    config = ScopeConfig.model_validate(stream.scopes)
    exposures = scaled(stream.exposure_lines(), args.scale, "exposure_id")
    reports = scaled(
        stream.report_lines(), max(1, len(exposures) // len(stream.report_lines())), "case_id"
    )[: len(exposures)]
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
        store.save_products(stream.products)
        store.save_institutions(stream.institutions)
        records = [RawRecord(f"e:{i}", line) for i, line in enumerate(exposures)]
        began = time.perf_counter()
        ExposureIngestor(store, config).ingest(records)
        exposure_seconds = time.perf_counter() - began
        began = time.perf_counter()
        Ingestor(store, config).ingest(RawRecord(f"r:{i}", line) for i, line in enumerate(reports))
        report_seconds = time.perf_counter() - began
        registry = Registry(stream.products)
        institutions = InstitutionRegistry(stream.institutions)
        scope = config.all_scopes()[1]
        query = best(3, lambda: rates(store, RateQuery(scope), registry, institutions))
        monitor_run = best(3, lambda: Monitor(store, config).update({scope.name}))
        store.close()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print(f"exposure records: {len(exposures):,}; report records: {len(reports):,}")
    print(
        f"exposure ingest: {len(exposures) / exposure_seconds:,.0f} records/s; "
        f"report ingest (peer): {len(reports) / report_seconds:,.0f} records/s; "
        f"ratio {exposure_seconds / len(exposures) / (report_seconds / len(reports)):.2f}x the "
        "time per record"
    )
    print(f"rates of the scope (every product x PT): {query * 1000:.1f} ms (best of 3)")
    print(f"monitor update (every test of the scope): {monitor_run * 1000:.1f} ms (best of 3)")


if __name__ == "__main__":
    main()
