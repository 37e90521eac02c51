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

from pvsignal.errors import InputError
from pvsignal.reports import Report

FORMATS = ("jsonl", "e2b", "faers", "vaers")
# The file names each folder-shaped source is read from (its readers use the same patterns).
FAERS_FILE = re.compile(r"^(DEMO|DRUG|REAC)(.*\.txt)$", re.IGNORECASE)
VAERS_FILE = re.compile(r"^(.*)VAERS(SYMPTOMS|VAX)\.csv$", re.IGNORECASE)
_SUFFIXES = {".xml": "e2b", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_SNIFF_BYTES = 4096


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


def detect_format(paths: Iterable[Path]) -> str:
    """The source format of the given files and folders, when they all agree on one.

    A file is known by its name (FAERS ``DEMO*.txt``..., VAERS ``*VAERSSYMPTOMS.csv``...,
    ``.xml`` E2B, ``.jsonl``/``.ndjson`` JSON Lines), else by its first character (``<`` XML,
    ``{`` JSON); a folder by the source files it holds. Raises InputError naming the input
    whose format cannot be told, or the two inputs of different formats.
    """
    seen: dict[str, Path] = {}
    for path in paths:
        kinds = (
            {_format_by_name(p) for p in path.rglob("*") if p.is_file()} - {None}
            if path.is_dir()
            else {_format_of_file(path)} - {None}
        )
        if len(kinds) != 1:
            what = "no" if not kinds else f"several ({', '.join(sorted(map(str, kinds)))})"
            raise InputError(
                f"cannot tell the format of {str(path)!r} ({what} source format recognised): "
                f"give --format ({', '.join(FORMATS)})"
            )
        [kind] = kinds
        assert kind is not None
        seen.setdefault(kind, path)
    if len(seen) > 1:
        named = ", ".join(f"{str(p)!r} is {kind}" for kind, p in seen.items())
        raise InputError(f"the inputs are of different formats ({named}): ingest them one by one")
    if not seen:
        raise InputError("no input given")
    return next(iter(seen))


def _format_by_name(path: Path) -> str | None:
    if FAERS_FILE.match(path.name):
        return "faers"
    if VAERS_FILE.match(path.name):
        return "vaers"
    return _SUFFIXES.get(path.suffix.lower())


def _format_of_file(path: Path) -> str | None:
    named = _format_by_name(path)
    if named is not None:
        return named
    with path.open("rb") as handle:
        start = handle.read(_SNIFF_BYTES).removeprefix(b"\xef\xbb\xbf").lstrip()
    if start.startswith(b"<"):
        return "e2b"
    if start.startswith(b"{"):
        return "jsonl"
    return None
