"""Bulk-import throughput: simulated JSONL reports into SQLite and into PostgreSQL.

Run:  .venv/bin/python -m benchmarks.ingest [--reports 1000000]

Each import runs `pvsignal ingest` in a child process (one core; its peak memory is the
child's maximum resident set). The peer in the same run is the floor of any importer: the
same lines inserted as raw text into one SQLite table, with no parsing or counting.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pvsignal.simulate import SimulationConfig, sidecar_paths, write_simulation
from tests.support.postgres import cluster, create_database


def run_ingest(path: Path, url: str) -> tuple[float, float, str]:
    """Seconds, peak resident MiB and the summary of one `pvsignal ingest` child process
    (after loading the simulation's product registry into the store)."""
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    registry = sidecar_paths(path)[0]
    subprocess.run(
        [sys.executable, "-m", "pvsignal.cli", "products", "load", str(registry), "--store", url],
        capture_output=True,
        check=True,
        env=environment,
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pvsignal.cli",
            "ingest",
            str(path),
            "--store",
            url,
            "--detect",
            "off",
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    seconds = time.perf_counter() - began
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return seconds, peak, done.stdout


def raw_sqlite_floor(path: Path, database: Path) -> float:
    """Insert every line as text into one table: the least any importer must do."""
    began = time.perf_counter()
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("CREATE TABLE raw (line TEXT)")
    with path.open("rb") as lines, connection:
        connection.executemany("INSERT INTO raw VALUES (?)", ((line,) for line in lines))
    connection.close()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, sqlite {sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory(prefix="pvsignal-bench-") as folder:
        work = Path(folder)
        reports = work / "reports.jsonl"
        began = time.perf_counter()
        truth = write_simulation(SimulationConfig(reports=args.reports, seed=1), reports).truth
        lines = truth.lines
        print(
            f"simulated {lines:,} lines ({reports.stat().st_size / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - began:.1f} s: {truth.cases:,} cases, {truth.follow_ups:,} "
            f"follow-ups, {truth.nullifications:,} nullifications, {truth.duplicates:,} "
            f"duplicates, {truth.live_cases:,} live cases"
        )

        floor = raw_sqlite_floor(reports, work / "raw.db")
        print(
            f"\nfloor, raw lines into one SQLite table: {floor:.1f} s "
            f"({lines / floor:,.0f} lines/s)"
        )
        seconds, peak, output = run_ingest(reports, f"sqlite:///{work}/store.db")
        print(
            f"pvsignal ingest into SQLite: {seconds:.1f} s, {lines / seconds:,.0f} reports/s, "
            f"peak {peak:,.0f} MiB, {seconds / floor:.1f}x the floor"
        )
        print("  " + output.strip().replace("\n", "\n  "))
        if args.no_postgres:
            return
        with cluster() as maintenance:
            url = create_database(maintenance, "bench")
            seconds, peak, output = run_ingest(reports, url)
        print(
            f"pvsignal ingest into PostgreSQL 15 (local, fsync off): {seconds:.1f} s, "
            f"{lines / seconds:,.0f} reports/s, peak {peak:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
