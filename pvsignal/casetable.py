"""Case-level tables (one row per report x product x event) counted into pair statistics.

Counting follows openEBGM's ``processRaw``: every count is of **distinct reports** — a row that
repeats (report, product, event) adds nothing, a report naming a product twice counts once in
the product's margin, and the scope's total is the number of distinct reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.table import expected, stratified_expected
from pvsignal.errors import InputError
from pvsignal.scoring import PairCounts
from pvsignal.terminology.normalise import TermLabels

# Stratified expectations are summed in blocks of pairs so that memory stays bounded
# whatever the number of strata.
_STRATA_BLOCK = 65_536


@dataclass(frozen=True)
class Columns:
    """Which columns of the case table hold what (as named on the command line)."""

    id: str
    product: str
    event: str
    strata: tuple[str, ...] = ()

    def flags(self) -> dict[str, str]:
        named = {self.id: "--id-col", self.product: "--product-col", self.event: "--event-col"}
        named.update({column: "--strata-col" for column in self.strata})
        return named


@dataclass(frozen=True)
class CaseTable:
    """The valid rows of a case table and the rows rejected, each with its reason."""

    rows: pd.DataFrame
    rejects: pd.DataFrame
    columns: Columns


@dataclass(frozen=True)
class PairTable:
    """Distinct-report counts of every observed pair, with its labels."""

    product: np.ndarray
    event: np.ndarray
    counts: PairCounts
    reports: int
    strata: int


def read_case_table(path: Path, columns: Columns, *, sep: str = ",") -> CaseTable:
    """Read a delimited case table; rows missing an id, product or event are set aside.

    Raises
    ------
    InputError
        If the file cannot be read or parsed, or a named column is missing.
    """
    try:
        frame = pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8"
        )
    except FileNotFoundError:
        raise InputError(f"cases file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as error:
        raise InputError(f"cases file {str(path)!r} is not UTF-8 text: {error}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as error:
        raise InputError(f"cannot parse cases file {str(path)!r}: {error}") from None
    missing = [
        (flag, column) for column, flag in columns.flags().items() if column not in frame.columns
    ]
    if missing:
        named = ", ".join(f"{column!r} ({flag})" for flag, column in missing)
        raise InputError(
            f"cases file {str(path)!r} has no column {named}; "
            f"its columns are {', '.join(map(repr, frame.columns))}"
        )
    frame = frame[
        list(dict.fromkeys([columns.id, columns.product, columns.event, *columns.strata]))
    ]
    frame.index = frame.index + 2  # the file's line number (line 1 is the header)
    return _set_aside_invalid(frame, columns)


def _set_aside_invalid(frame: pd.DataFrame, columns: Columns) -> CaseTable:
    reasons = pd.Series("", index=frame.index, dtype=object)
    for column in (columns.id, columns.product, columns.event):
        blank = frame[column].str.strip() == ""
        reasons[blank & (reasons == "")] = f"empty {column!r}"
    if columns.strata:
        stratum = _stratum_labels(frame, columns.strata)
        valid_ids = frame.loc[reasons == "", columns.id]
        conflicting = stratum[valid_ids.index].groupby(valid_ids).transform("nunique") > 1
        conflict_rows = conflicting[conflicting].index
        reasons[conflict_rows] = "report has conflicting values of " + ", ".join(
            map(repr, columns.strata)
        )
    bad = reasons != ""
    rejects = frame[bad].assign(reason=reasons[bad]).rename_axis("line").reset_index()
    return CaseTable(rows=frame[~bad], rejects=rejects, columns=columns)


def _stratum_labels(frame: pd.DataFrame, strata: Sequence[str]) -> pd.Series:
    return frame[list(strata)].agg("\x1f".join, axis=1) if len(strata) > 1 else frame[strata[0]]


def count_pairs(table: CaseTable) -> PairTable:
    """Count distinct reports per pair, per product, per event, per stratum and in all."""
    columns, rows = table.columns, table.rows
    if rows.empty:
        raise InputError("the cases file has no valid rows to count")
    report, _ = pd.factorize(rows[columns.id])
    product, product_labels = pd.factorize(rows[columns.product])
    event, event_labels = pd.factorize(event_keys(rows[columns.event]))
    report, product, event = (np.asarray(x, dtype=np.int64) for x in (report, product, event))
    n_reports = int(report.max()) + 1
    n_products, n_events = len(product_labels), len(event_labels)

    triples = np.unique((report * n_products + product) * n_events + event)
    pair_key, a = np.unique(triples % (n_products * n_events), return_counts=True)
    pair_product, pair_event = pair_key // n_events, pair_key % n_events
    report_product = np.unique(report * n_products + product)
    report_event = np.unique(report * n_events + event)

    if columns.strata:
        stratum_of_row, stratum_labels = pd.factorize(_stratum_labels(rows, columns.strata))
        stratum_of_report = np.zeros(n_reports, dtype=np.int64)
        stratum_of_report[report] = stratum_of_row
        n_strata = len(stratum_labels)
    else:
        stratum_of_report = np.zeros(n_reports, dtype=np.int64)
        n_strata = 1
    per_product = _per_stratum(
        report_product // n_products,
        report_product % n_products,
        stratum_of_report,
        n_products,
        n_strata,
    )
    per_event = _per_stratum(
        report_event // n_events, report_event % n_events, stratum_of_report, n_events, n_strata
    )
    per_stratum_total = np.bincount(stratum_of_report, minlength=n_strata)
    n_product, n_event = per_product.sum(axis=1), per_event.sum(axis=1)
    if columns.strata:
        e = stratified_expectation(
            per_product, per_event, per_stratum_total, pair_product, pair_event
        )
    else:
        e = expected(n_product[pair_product], n_event[pair_event], n_reports)
    counts = PairCounts(
        a=a.astype(np.float64),
        n_product=n_product[pair_product].astype(np.float64),
        n_event=n_event[pair_event].astype(np.float64),
        n_total=np.float64(n_reports),
        expected=e,
    )
    return PairTable(
        product=np.asarray(product_labels, dtype=object)[pair_product],
        event=np.asarray(event_labels, dtype=object)[pair_event],
        counts=counts,
        reports=n_reports,
        strata=n_strata,
    )


def event_keys(events: pd.Series) -> pd.Series:
    """Each event under the key the store counts it under without a dictionary: spellings
    that normalise alike (case, width, hyphens, spacing) are one event, named by the first
    spelling in the file (pvsignal.terminology.normalise)."""
    labels = TermLabels()
    return events.map({text: labels.key(text) for text in pd.unique(events)})


def _per_stratum(
    report: np.ndarray, item: np.ndarray, stratum_of_report: np.ndarray, n_items: int, n_strata: int
) -> np.ndarray:
    """Distinct reports per (item, stratum) from distinct (report, item) pairs."""
    flat = item * n_strata + stratum_of_report[report]
    return np.bincount(flat, minlength=n_items * n_strata).reshape(n_items, n_strata)


def stratified_expectation(
    per_product: np.ndarray,
    per_event: np.ndarray,
    per_stratum_total: np.ndarray,
    pair_product: np.ndarray,
    pair_event: np.ndarray,
) -> np.ndarray:
    """Stratified E of each pair from dense (items x strata) margins and stratum totals."""
    result = np.empty(pair_product.size)
    for start in range(0, pair_product.size, _STRATA_BLOCK):
        block = slice(start, start + _STRATA_BLOCK)
        result[block] = stratified_expected(
            per_product[pair_product[block]], per_event[pair_event[block]], per_stratum_total
        )
    return result
