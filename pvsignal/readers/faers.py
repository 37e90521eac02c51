"""FAERS quarterly ASCII extracts (DEMO, DRUG, REAC) as wire-format reports.

FDA publishes each quarter as ``$``-delimited text files with a header line and no quoting:
``DEMOyyQq.txt`` (one row per report version), ``DRUGyyQq.txt`` and ``REACyyQq.txt`` (many rows per
report), keyed by ``primaryid``. The legacy AERS layout (up to 2012Q3) keys them by ``isr`` and
has a ``case`` column instead of ``caseid``/``caseversion``; both layouts are read.

One record per DEMO row:

=================  ===================================================================
wire field         FAERS source
=================  ===================================================================
case_id            caseid (legacy: case)
report_id          primaryid (legacy: isr)
version            caseversion (legacy: 1 for an initial report, 1 + foll_seq for a
                   follow-up, 2 when a follow-up has no foll_seq; orders versions only)
received           fda_dt, else init_fda_dt, else rept_dt (YYYYMMDD)
country            occr_country, else reporter_country, when a 2-letter code
patient.age_years  age converted with age_cod (YR, MON, WK, DY, HR, DEC)
patient.sex        sex (legacy: gndr_cod): F, M, anything else U
sender             manufacturer reports (rept_cod EXP, PER, 5DAY, 30DAY) "mah" with mfr_sndr as
                   institution_id; direct reports by occp_cod: MD, PH, OT, HP
                   "health_professional", CN "patient", others "other"
products           DRUG rows in file order: name prod_ai, else drugname (as given);
                   role_cod PS/SS suspect, C concomitant, I interacting; rows giving the
                   same (name, role) are kept once
reactions          REAC pt in file order, each distinct pt once (drug_rec_act ignored)
=================  ===================================================================

Left out: indications, outcomes, therapy dates, report sources (INDI, OUTC, THER, RPSR), doses,
weights, event dates. FAERS gives MedDRA PT names only, so ``pt_code`` is never set.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pvsignal.readers import FAERS_FILE, RawRecord, group_files

__all__ = ["read_faers"]

_TABLES = ("DEMO", "DRUG", "REAC")

# The columns each table needs, per layout (current FAERS, legacy AERS).
_WANTED = {
    "DEMO": {
        "primaryid",
        "caseid",
        "caseversion",
        "fda_dt",
        "init_fda_dt",
        "rept_dt",
        "age",
        "age_cod",
        "sex",
        "rept_cod",
        "occp_cod",
        "mfr_sndr",
        "reporter_country",
        "occr_country",
        "isr",
        "case",
        "i_f_cod",
        "foll_seq",
        "gndr_cod",
    },
    "DRUG": {"primaryid", "isr", "role_cod", "drugname", "prod_ai"},
    "REAC": {"primaryid", "isr", "pt"},
}
_REQUIRED = {
    ("DEMO", "current"): (
        "primaryid",
        "caseid",
        "caseversion",
        "fda_dt",
        "age",
        "age_cod",
        "sex",
        "rept_cod",
        "occp_cod",
    ),
    ("DEMO", "legacy"): (
        "isr",
        "case",
        "i_f_cod",
        "foll_seq",
        "fda_dt",
        "age",
        "age_cod",
        "gndr_cod",
        "rept_cod",
        "occp_cod",
    ),
    ("DRUG", "current"): ("primaryid", "role_cod", "drugname", "prod_ai"),
    ("DRUG", "legacy"): ("isr", "role_cod", "drugname"),
    ("REAC", "current"): ("primaryid", "pt"),
    ("REAC", "legacy"): ("isr", "pt"),
}

_ROLES = {"PS": "suspect", "SS": "suspect", "C": "concomitant", "I": "interacting"}
# Years per unit of age_cod; a week and a day are taken on the Julian year (365.25 days).
_AGE_YEARS = {
    "YR": 1.0,
    "MON": 1 / 12,
    "WK": 7 / 365.25,
    "DY": 1 / 365.25,
    "HR": 1 / 8766,
    "DEC": 10.0,
}
# rept_cod of the reports a manufacturer sent (expedited, periodic, 5-day, 30-day); DIR is direct.
_MANUFACTURER_REPORTS = ("EXP", "PER", "5DAY", "30DAY")
_QUALIFICATION = {
    "MD": "health_professional",
    "PH": "health_professional",
    "OT": "health_professional",
    "HP": "health_professional",
    "CN": "patient",
}


@dataclass(frozen=True, slots=True)
class _Table:
    """One FAERS table read into strings, with the lines that could not be read."""

    path: Path
    frame: pd.DataFrame
    rejects: list[RawRecord]


def read_faers(paths: Iterable[Path]) -> Iterator[RawRecord]:
    """Read FAERS quarterly ASCII files into wire-format records.

    Parameters
    ----------
    paths
        Directories (searched recursively) or individual ``DEMO*``, ``DRUG*`` and ``REAC*`` ``.txt``
        files, in either letter case. Files of one quarter are paired by the name after the
        table prefix (``DEMO20Q3.txt`` with ``DRUG20Q3.txt``); several quarters may be given.

    Yields
    ------
    RawRecord
        One per DEMO row, with the payload as a dict, located as ``DEMO20Q3.txt:primaryid=N``;
        an error record for each DRUG/REAC primaryid without a DEMO row, for each line whose
        field count differs from its header, for a repeated DEMO primaryid, for a value that
        cannot be converted (date, age, version, role), and for a quarter without DEMO, DRUG or
        REAC file.
    """
    quarters, rejects = _quarters(paths)
    yield from rejects
    for key in sorted(quarters):
        yield from _read_quarter(key, quarters[key])


def _quarters(paths: Iterable[Path]) -> tuple[dict[str, dict[str, Path]], list[RawRecord]]:
    """Group the FAERS files by quarter: ``{"<folder>/20q3.txt": {"DEMO": path, ...}}``."""
    return group_files(
        paths,
        FAERS_FILE,
        lambda m: (m.group(2).lower(), m.group(1).upper()),
        "a FAERS DEMO*, DRUG* or REAC* .txt file",
        "quarter",
    )


def _read_quarter(key: str, files: dict[str, Path]) -> Iterator[RawRecord]:
    tables = {}
    for name in _TABLES:
        path = files.get(name)
        table = (
            _read_table(path, name)
            if path is not None
            else RawRecord(
                key,
                None,
                f"no {name} file for this quarter among "
                f"{', '.join(p.name for p in files.values())}",
            )
        )
        if isinstance(table, RawRecord):
            # Read on without it: DEMO rows still become (refused) reports, and DRUG/REAC rows
            # without DEMO become error records, so nothing is dropped.
            yield table
            table = _Table(Path(name), pd.DataFrame(columns=_REQUIRED[(name, "current")]), [])
        yield from table.rejects
        tables[name] = table
    yield from _assemble(tables["DEMO"], tables["DRUG"], tables["REAC"])


def _read_table(path: Path, name: str) -> _Table | RawRecord:
    """Read one table as strings; lines with a wrong field count become error records."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        return RawRecord(str(path), None, f"cannot read {name} file: {error}")
    if not raw.strip():
        return RawRecord(str(path), None, f"{name} file {path.name} is empty (no header line)")
    try:
        raw.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "latin-1"  # older quarters are Windows-1252/latin-1 text
    text, rejects = _checked_lines(raw, path, encoding)
    try:
        frame = pd.read_csv(
            io.BytesIO(text),
            sep="$",
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            quoting=csv.QUOTE_NONE,
            encoding=encoding,
            usecols=lambda c: _column(c) in _WANTED[name],
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        return RawRecord(str(path), None, f"cannot read {name} file {path.name}: {error}")
    frame.columns = [_column(c) for c in frame.columns]
    layout = "legacy" if "isr" in frame.columns else "current"
    absent = [c for c in _REQUIRED[(name, layout)] if c not in frame.columns]
    if absent:
        return RawRecord(str(path), None, f"{name} file lacks column(s) {', '.join(absent)}")
    key = "isr" if layout == "legacy" else "primaryid"
    frame[key] = frame[key].str.strip()
    return _Table(path, frame, rejects)


def _column(name: str) -> str:
    return name.strip().lower()


def _checked_lines(raw: bytes, path: Path, encoding: str) -> tuple[bytes, list[RawRecord]]:
    """The file's lines that have the header's field count, and error records for the others.

    Counted on the bytes so that a clean file (the usual case) costs one vectorised pass. A
    record broken in two by a newline inside a field is joined again when the two halves add
    up to the header's count.
    """
    data = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    starts = np.r_[0, ends + 1]
    stops = np.r_[ends, len(raw)]
    dollars = np.flatnonzero(data == ord("$"))
    counts = np.searchsorted(dollars, stops) - np.searchsorted(dollars, starts)
    blank = (stops - starts == 0) | ((stops - starts == 1) & (data[np.maximum(stops - 1, 0)] == 13))
    if len(counts) == 0 or np.all((counts[1:] == counts[0]) | blank[1:]):
        return raw, []
    lines = raw.split(b"\n")
    expected = counts[0]
    kept, rejects = [lines[0]], []
    index = 1
    while index < len(lines):
        line = lines[index].rstrip(b"\r")
        count = line.count(b"$")
        following = lines[index + 1].rstrip(b"\r") if index + 1 < len(lines) else None
        if not line.strip() or count == expected:
            kept.append(line)
        elif following is not None and count < expected == count + following.count(b"$"):
            kept.append(line + b" " + following)
            index += 1
        else:
            shown = line[:80].decode(encoding, errors="replace")
            rejects.append(
                RawRecord(
                    f"{path.name}:{index + 1}",
                    None,
                    f"line has {count + 1} fields, the header has {expected + 1}: {shown!r}",
                )
            )
        index += 1
    return b"\n".join(kept), rejects


def _assemble(demo: _Table, drug: _Table, reac: _Table) -> Iterator[RawRecord]:
    key = _key(demo.frame)
    products, product_errors = _products(drug)
    pts = reac.frame[[_key(reac.frame), "pt"]].drop_duplicates()
    reactions = _grouped(pts.iloc[:, 0], [{"pt": pt} for pt in pts["pt"].tolist()])
    seen: set[str] = set()
    for report in _demo_fields(demo.frame, key == "isr"):
        pid = report.pop("_id")
        location = f"{demo.path.name}:{key}={pid}"
        if pid in seen:
            yield RawRecord(location, None, f"repeated DEMO row for {key} {pid}; the first is read")
            continue
        seen.add(pid)
        problem = report.pop("_error") or product_errors.get(pid)
        if problem:
            yield RawRecord(location, None, problem)
            continue
        report["products"] = products.get(pid, [])
        report["reactions"] = reactions.get(pid, [])
        yield RawRecord(location, report)
    yield from _orphans(seen, drug, reac, demo.path.name, key)


def _key(frame: pd.DataFrame) -> str:
    return "isr" if "isr" in frame.columns else "primaryid"


def _products(drug: _Table) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Products per primaryid, and the reason for each primaryid with an unknown role code.

    Rows that differ only in what the wire format does not carry (dose, route, drug_seq; PS
    and SS are both "suspect") give identical products and are kept once, in file order: a
    quarter of all DRUG rows are such repeats, and they would push long reports past the
    wire format's 200 products.
    """
    frame, key = drug.frame, _key(drug.frame)
    codes = frame["role_cod"].str.strip().str.upper()
    roles = codes.map(_ROLES)
    names = frame["drugname"]
    if "prod_ai" in frame.columns:
        names = frame["prod_ai"].where(frame["prod_ai"].str.strip() != "", names)
    unknown = roles.isna().to_numpy()
    errors: dict[str, str] = {}
    for pid, code in zip(frame.loc[unknown, key], codes[unknown], strict=True):
        errors.setdefault(
            pid, f"products: role_cod {code!r} in {drug.path.name} is not PS, SS, C or I"
        )
    kept = pd.DataFrame({"key": frame[key], "name": names, "role": roles}).drop_duplicates()
    entries = [
        {"name": name, "role": role} if name.strip() else {"role": role}
        for name, role in zip(kept["name"].tolist(), kept["role"].tolist(), strict=True)
    ]
    return _grouped(kept["key"], entries), errors


def _grouped(keys: pd.Series, entries: list[Any]) -> dict[str, list[Any]]:
    """The entries (one per key) grouped by key, in file order, without a Python groupby."""
    if keys.empty:
        return {}
    codes, uniques = pd.factorize(keys)
    uniques = uniques.tolist()
    order = np.argsort(codes, kind="stable")
    bounds = np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1, len(order)].tolist()
    return {
        uniques[codes[order[start]]]: [entries[i] for i in order[start:stop]]
        for start, stop in pairwise(bounds)
    }


def _demo_fields(frame: pd.DataFrame, legacy: bool) -> Iterator[dict[str, Any]]:
    """The report fields of each DEMO row (without products and reactions).

    Each dict carries ``_id`` (the primaryid) and ``_error`` (None, or why the row cannot be
    assembled); conversions are vectorised over the whole table.
    """
    if legacy:
        ids, cases = frame["isr"], frame["case"]
        versions, version_errors = _legacy_versions(frame)
        sexes = frame["gndr_cod"]
    else:
        ids, cases = frame["primaryid"], frame["caseid"]
        versions, version_errors = _versions(frame["caseversion"])
        sexes = frame["sex"]
    received, date_errors = _received(frame)
    ages, age_errors = _ages(frame["age"], frame["age_cod"])
    senders = _senders(frame)
    countries = _countries(frame)
    sex = sexes.str.strip().str.upper().map({"F": "F", "M": "M"}).fillna("U")
    errors = version_errors.combine_first(date_errors).combine_first(age_errors)
    columns = [ids, cases.str.strip(), versions, received, countries, ages, sex, senders, errors]
    rows = zip(*(c.tolist() if isinstance(c, pd.Series) else c for c in columns), strict=True)
    for pid, case, version, date, country, age, sex_, sender, error in rows:
        report: dict[str, Any] = {
            "_id": pid,
            "_error": error if isinstance(error, str) else None,
            "case_id": case,
            "report_id": pid,
            "version": version,
        }
        if isinstance(date, str):
            report["received"] = date
        if sender is not None:
            report["sender"] = sender
        if isinstance(country, str):
            report["country"] = country
        patient = {"sex": sex_}
        if age == age:  # not NaN
            patient["age_years"] = age
        report["patient"] = patient
        yield report


def _versions(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    text = raw.str.strip()
    ok = text.str.fullmatch(r"\d{1,7}")
    versions = pd.Series(np.where(ok, text, "0"), index=raw.index).astype(int).tolist()
    errors = pd.Series(None, index=raw.index, dtype=object)
    errors[~ok] = [f"version: caseversion {v!r} is not a whole number" for v in raw[~ok]]
    return pd.Series(versions, index=raw.index, dtype=object), errors


def _legacy_versions(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """AERS has no case version: 1 for an initial report, else 1 + foll_seq (2 if blank)."""
    follow_up = frame["i_f_cod"].str.strip().str.upper() == "F"
    seq = frame["foll_seq"].str.strip()
    numbered = seq.str.fullmatch(r"\d{1,6}")
    number = pd.to_numeric(seq.where(numbered, "0")).to_numpy()
    versions = np.where(follow_up, np.where(numbered, number + 1, 2), 1)
    errors = pd.Series(None, index=frame.index, dtype=object)
    odd = (seq != "") & ~numbered
    errors[odd] = [f"version: foll_seq {v!r} is not a whole number" for v in seq[odd]]
    return pd.Series(versions.tolist(), index=frame.index, dtype=object), errors


def _received(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """C.1.5: the first non-blank of fda_dt, init_fda_dt, rept_dt, as an ISO date."""
    chosen = pd.Series("", index=frame.index, dtype=str)
    source = pd.Series("", index=frame.index, dtype=str)
    for column in ("fda_dt", "init_fda_dt", "rept_dt"):
        if column in frame.columns:
            value = frame[column].str.strip()
            take = (chosen == "") & (value != "")
            chosen = chosen.where(~take, value)
            source = source.where(~take, column)
    dates = pd.to_datetime(
        chosen.where(chosen.str.fullmatch(r"\d{8}"), None), format="%Y%m%d", errors="coerce"
    )
    iso = dates.dt.strftime("%Y-%m-%d").astype(object).where(dates.notna(), None)
    bad = (chosen != "") & dates.isna()
    errors = pd.Series(None, index=frame.index, dtype=object)
    errors[bad] = [
        f"received: {s} {v!r} is not a YYYYMMDD date"
        for s, v in zip(source[bad], chosen[bad], strict=True)
    ]
    return iso, errors


def _ages(age: pd.Series, unit: pd.Series) -> tuple[pd.Series, pd.Series]:
    text, code = age.str.strip(), unit.str.strip().str.upper()
    value = pd.to_numeric(text.where(text != "", None), errors="coerce")
    factor = code.map(_AGE_YEARS)
    years = (value * factor).astype(float)
    errors = pd.Series(None, index=age.index, dtype=object)
    bad_value = (text != "") & value.isna()
    bad_unit = (text != "") & value.notna() & factor.isna()
    errors[bad_value] = [f"patient.age_years: age {v!r} is not a number" for v in text[bad_value]]
    errors[bad_unit] = [
        f"patient.age_years: age {v!r} has age_cod {c!r}, not one of {', '.join(_AGE_YEARS)}"
        for v, c in zip(text[bad_unit], unit[bad_unit], strict=True)
    ]
    return years.where(~(bad_value | bad_unit), np.nan), errors


def _senders(frame: pd.DataFrame) -> list[dict[str, str] | None]:
    manufacturer = frame["rept_cod"].str.strip().str.upper().isin(_MANUFACTURER_REPORTS)
    qualified = frame["occp_cod"].str.strip().str.upper().map(_QUALIFICATION).fillna("other")
    kinds = np.where(manufacturer, "mah", qualified)
    makers = (
        frame["mfr_sndr"].str.strip()
        if "mfr_sndr" in frame.columns
        else (pd.Series("", index=frame.index))
    )
    return [
        {"type": kind, "institution_id": maker} if kind == "mah" and maker else {"type": kind}
        for kind, maker in zip(kinds.tolist(), makers.tolist(), strict=True)
    ]


def _countries(frame: pd.DataFrame) -> pd.Series:
    """occr_country, else reporter_country, when it is a 2-letter code (legacy AERS has none)."""
    country = pd.Series(None, index=frame.index, dtype=object)
    for column in ("reporter_country", "occr_country"):  # the later one wins
        if column in frame.columns:
            value = frame[column].str.strip()
            code = value.str.fullmatch(r"[A-Z]{2}")
            country = country.where(~code, value)
    return country


def _orphans(
    demo_ids: set[str], drug: _Table, reac: _Table, demo_name: str, key: str
) -> Iterator[RawRecord]:
    """One error record per primaryid that has DRUG or REAC rows but no DEMO row."""
    counts: dict[str, list[int]] = {}
    for slot, table in enumerate((drug, reac)):
        for pid, n in table.frame[_key(table.frame)].value_counts(sort=False).items():
            if pid not in demo_ids:
                counts.setdefault(pid, [0, 0])[slot] = n
    for pid, (n_drug, n_reac) in counts.items():
        where = drug.path.name if n_drug else reac.path.name
        yield RawRecord(
            f"{where}:{key}={pid}",
            None,
            f"no DEMO row for {key} {pid} in {demo_name} ({n_drug} DRUG rows, {n_reac} REAC rows)",
        )
