"""VAERS yearly CSV extracts (SYMPTOMS and VAX files) as wire-format reports.

CDC publishes each year as ``yyyyVAERSDATA.csv``, ``yyyyVAERSSYMPTOMS.csv`` and
``yyyyVAERSVAX.csv`` (and ``NonDomesticVAERS*.csv`` for reports from abroad), latin-1 text with
quoting. This reader takes the SYMPTOMS and VAX files of each year, paired by the prefix before
``VAERS``:

=========  ==================================================================================
wire       VAERS source
=========  ==================================================================================
case_id    "VAERS-" + VAERS_ID (a VAERS id is one report; follow-ups overwrite it in place)
report_id  VAERS_ID
version    1
country    "US" for a year file; left out for NonDomestic files, which carry no country here
products   each distinct non-empty VAX_TYPE of the id, in file order: name VAX_TYPE, suspect
reactions  each distinct non-empty SYMPTOM1..SYMPTOM5 of the id, in file order (MedDRA PT
           names; SYMPTOMVERSIONn, the MedDRA version, is not carried)
=========  ==================================================================================

Left out: everything in the DATA file (dates, age, sex, state, outcomes), and the VAX file's
manufacturer, lot, dose series, route, site and name. A report with more than five symptoms
continues on further SYMPTOMS rows with the same VAERS_ID; they are merged.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvsignal.readers import VAERS_FILE, RawRecord, group_files

__all__ = ["read_vaers"]

_SYMPTOMS_HEADER = ["VAERS_ID"] + [
    f"{k}{i}" for i in range(1, 6) for k in ("SYMPTOM", "SYMPTOMVERSION")
]
_VAX_HEADER = [
    "VAERS_ID",
    "VAX_TYPE",
    "VAX_MANU",
    "VAX_LOT",
    "VAX_DOSE_SERIES",
    "VAX_ROUTE",
    "VAX_SITE",
    "VAX_NAME",
]


@dataclass(slots=True)
class _Values:
    """Distinct values per VAERS_ID in first-seen order, with the id's first line."""

    by_id: dict[str, dict[str, None]] = field(default_factory=dict)  # dict as an ordered set
    first_line: dict[str, int] = field(default_factory=dict)

    def add(self, vaers_id: str, line: int, values: Iterable[str]) -> None:
        seen = self.by_id.setdefault(vaers_id, {})
        self.first_line.setdefault(vaers_id, line)
        for value in values:
            if value.strip():
                seen.setdefault(value, None)


def read_vaers(paths: Iterable[Path]) -> Iterator[RawRecord]:
    """Read VAERS SYMPTOMS and VAX CSV files into wire-format records.

    Parameters
    ----------
    paths
        Directories (searched recursively) or individual ``*VAERSSYMPTOMS.csv`` and
        ``*VAERSVAX.csv`` files; the two files of a year are paired by their prefix
        (``2020VAERSSYMPTOMS.csv`` with ``2020VAERSVAX.csv``).

    Yields
    ------
    RawRecord
        One per VAERS_ID found in both files, with the payload as a dict, located as
        ``2020VAERSSYMPTOMS.csv:VAERS_ID=855017``; an error record for an id found in only one
        of the two files (naming the file it is missing from), for a line that is not a
        well-formed row (located ``file:line``), and for a file that cannot be read.
    """
    years, rejects = _years(paths)
    yield from rejects
    for prefix in sorted(years):
        yield from _read_year(prefix, years[prefix])


def _years(paths: Iterable[Path]) -> tuple[dict[str, dict[str, Path]], list[RawRecord]]:
    """Group the files by year prefix: ``{"<folder>/2020": {"SYMPTOMS": path, "VAX": path}}``."""
    return group_files(
        paths,
        VAERS_FILE,
        lambda m: (m.group(1).lower(), m.group(2).upper()),
        "a VAERS *VAERSSYMPTOMS.csv or *VAERSVAX.csv file",
        "year",
    )


def _read_year(prefix: str, files: dict[str, Path]) -> Iterator[RawRecord]:
    symptoms, vax = _Values(), _Values()
    for kind, values, read in (("SYMPTOMS", symptoms, _read_symptoms), ("VAX", vax, _read_vax)):
        if kind in files:
            yield from read(files[kind], values)
    symptoms_name = files["SYMPTOMS"].name if "SYMPTOMS" in files else "the SYMPTOMS file"
    vax_name = files["VAX"].name if "VAX" in files else "the VAX file"
    domestic = re.fullmatch(r"\d{4}", Path(prefix).name) is not None
    for vaers_id, line in symptoms.first_line.items():
        location = f"{symptoms_name}:VAERS_ID={vaers_id}"
        if vaers_id not in vax.by_id:
            yield RawRecord(
                location, None, f"VAERS_ID {vaers_id} (line {line}) has no row in {vax_name}"
            )
            continue
        yield RawRecord(
            location, _payload(vaers_id, vax.by_id[vaers_id], symptoms.by_id[vaers_id], domestic)
        )
    for vaers_id, line in vax.first_line.items():
        if vaers_id not in symptoms.by_id:
            yield RawRecord(
                f"{vax_name}:VAERS_ID={vaers_id}",
                None,
                f"VAERS_ID {vaers_id} (line {line}) has no row in {symptoms_name}",
            )


def _payload(
    vaers_id: str, vaccines: Iterable[str], pts: Iterable[str], domestic: bool
) -> dict[str, Any]:
    report: dict[str, Any] = {"case_id": f"VAERS-{vaers_id}", "report_id": vaers_id, "version": 1}
    if domestic:
        report["country"] = "US"
    report["products"] = [{"name": name, "role": "suspect"} for name in vaccines]
    report["reactions"] = [{"pt": pt} for pt in pts]
    return report


def _read_symptoms(path: Path, values: _Values) -> Iterator[RawRecord]:
    for line, row in _rows(path, _SYMPTOMS_HEADER):
        if isinstance(row, RawRecord):
            yield row
        else:
            values.add(row[0].strip(), line, row[1::2])


def _read_vax(path: Path, values: _Values) -> Iterator[RawRecord]:
    for line, row in _rows(path, _VAX_HEADER):
        if isinstance(row, RawRecord):
            yield row
        else:
            values.add(row[0].strip(), line, row[1:2])


def _rows(path: Path, header: list[str]) -> Iterator[tuple[int, list[str] | RawRecord]]:
    """The file's rows of ``len(header)`` fields, numbered by the line they end on.

    Extra trailing fields that are all empty are cut (the 2019 SYMPTOMS file ends its last
    line with two more commas); any other row of the wrong width, or without a VAERS_ID,
    becomes an error record.
    """
    width = len(header)
    try:
        with path.open(encoding="latin-1", newline="") as handle:
            reader = csv.reader(handle)
            found = next(reader, [])
            names = [n.strip().removeprefix("\ufeff").removeprefix("ï»¿").upper() for n in found]
            if names != header:
                yield (
                    1,
                    RawRecord(
                        f"{path.name}:1",
                        None,
                        f"header {found!r} is not the VAERS header {header!r}",
                    ),
                )
                return
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) > width and not any(cell.strip() for cell in row[width:]):
                    row = row[:width]
                if len(row) != width:
                    yield (
                        line,
                        RawRecord(
                            f"{path.name}:{line}",
                            None,
                            f"row has {len(row)} fields, the header has {width}: "
                            f"{','.join(row)[:80]!r}",
                        ),
                    )
                elif not row[0].strip():
                    yield line, RawRecord(f"{path.name}:{line}", None, "VAERS_ID is empty")
                else:
                    yield line, row
    except (OSError, csv.Error) as error:
        yield 0, RawRecord(str(path), None, f"cannot read {path.name}: {error}")
