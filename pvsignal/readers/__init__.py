"""Readers turn source files into wire-format records, one per report version.

A reader never validates reports itself and never drops anything: each report it can
assemble becomes a :class:`RawRecord` with its payload (the JSON wire format, as text or as a
dict), and whatever it cannot read becomes a record with ``error`` set, so that the ingest
keeps it, with its location and reason, among the rejects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from pvsignal.reports import Report


class RawRecord(NamedTuple):
    """One report as read from a source, not yet validated (a named tuple: a bulk import
    makes one per line)."""

    location: str  # where it came from: "reports.jsonl:17", "DEMO20Q3.txt:primaryid=123"
    payload: bytes | str | dict[str, Any] | None  # wire-format JSON text or dict
    error: str | None = None  # the reader's reason when it could not assemble a payload
    # The payload already validated (the Kafka codec must validate before dead-lettering):
    # the ingest then uses it instead of validating again.
    report: Report | None = None


def group_files(
    paths: Iterable[Path],
    pattern: re.Pattern[str],
    keys: Callable[[re.Match[str]], tuple[str, str]],
    expected: str,
    period: str,
) -> tuple[dict[str, dict[str, Path]], list[RawRecord]]:
    """Group a source's files by period (quarter, year): ``{period key: {table: path}}``.

    ``paths`` are files or folders (searched recursively) whose names match ``pattern``;
    ``keys(match)`` gives (period key within the folder, table name). Anything else, and a
    second file for the same table and period, becomes an error record.
    """
    groups: dict[str, dict[str, Path]] = {}
    rejects = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.is_file() and pattern.match(p.name))
        elif given.is_file() and pattern.match(given.name):
            found = [given]
        else:
            reason = "no such file or directory" if not given.exists() else f"not {expected}"
            rejects.append(RawRecord(str(given), None, f"{reason}: {given}"))
            continue
        for path in found:
            match = pattern.match(path.name)
            assert match is not None  # filtered above
            key, table = keys(match)
            group = groups.setdefault(f"{path.parent}/{key}", {})
            if table in group and group[table] != path:
                reason = f"a second {table} file for the {period} of {group[table]}"
                rejects.append(RawRecord(str(path), None, reason))
            else:
                group[table] = path
    return groups, rejects
