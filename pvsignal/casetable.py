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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from detectors.counting import distinct, distinct_counts, distinct_of_sorted
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

    rows: pa.Table  # every field as text
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


@dataclass(frozen=True)
class CodedPairs:
    """A :class:`PairTable` whose labels are codes into the distinct labels (pairs in order of
    (product, event) codes; a store's labels are sorted): what the API's snapshot, the export
    and `pvsignal analyze` keep."""

    products: np.ndarray
    events: np.ndarray
    product_code: np.ndarray
    event_code: np.ndarray
    counts: PairCounts
    reports: int
    strata: int

    @property
    def product(self) -> np.ndarray:
        return self.products[self.product_code]

    @property
    def event(self) -> np.ndarray:
        return self.events[self.event_code]


def read_case_table(path: Path, columns: Columns, *, sep: str = ",") -> CaseTable:
    """Read a delimited case table; rows missing an id, product or event are set aside.

    Every field is read as text, as written (Arrow's multi-threaded CSV reader).

    Raises
    ------
    InputError
        If the file cannot be read or parsed, or a named column is missing.
    """
    header = _header(path, sep)
    missing = [(flag, column) for column, flag in columns.flags().items() if column not in header]
    if missing:
        named = ", ".join(f"{column!r} ({flag})" for flag, column in missing)
        raise InputError(
            f"cases file {str(path)!r} has no column {named}; "
            f"its columns are {', '.join(map(repr, header))}"
        )
    wanted = list(dict.fromkeys([columns.id, columns.product, columns.event, *columns.strata]))
    table = _read(
        path,
        sep,
        pa_csv.ConvertOptions(
            column_types={name: _column_type(name, columns) for name in header},
            include_columns=wanted,
            strings_can_be_null=False,
        ),
    )
    return _set_aside_invalid(table.unify_dictionaries().combine_chunks(), columns)


def _column_type(name: str, columns: Columns) -> pa.DataType:
    """Products and events are read dictionary-encoded: a few thousand distinct labels over
    millions of rows, so each is checked and coded once, not once per row. The id (one value
    per report) and the strata stay plain text."""
    if name in (columns.product, columns.event) and name not in (columns.id, *columns.strata):
        return pa.dictionary(pa.int32(), pa.string())
    return pa.string()


def _header(path: Path, sep: str) -> list[str]:
    """The column names of the file (its first row)."""
    try:
        with pa_csv.open_csv(
            path, parse_options=pa_csv.ParseOptions(delimiter=sep)
        ) as reader:  # reads and parses the first block only
            return reader.schema.names
    except FileNotFoundError:
        raise InputError(f"cases file {str(path)!r} does not exist") from None
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(path, error) from None


def _read(path: Path, sep: str, convert: pa_csv.ConvertOptions) -> pa.Table:
    try:
        return pa_csv.read_csv(
            path, parse_options=pa_csv.ParseOptions(delimiter=sep), convert_options=convert
        )
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> InputError:
    if "UTF8" in str(error) or isinstance(error, UnicodeDecodeError):
        return InputError(f"cases file {str(path)!r} is not UTF-8 text: {error}")
    return InputError(f"cannot parse cases file {str(path)!r}: {error}")


# What Python's str.strip() removes: a field made only of these is blank.
_BLANK = "^[" + "".join(f"\\x{{{code:x}}}" for code in range(0x3001) if chr(code).isspace()) + "]*$"


def _set_aside_invalid(table: pa.Table, columns: Columns) -> CaseTable:
    """Rows with a blank id, product or event, or whose report has conflicting strata, are
    rejected with the first reason that applies; the others are counted."""
    # Each row's reason as an index into `texts` (0: valid): millions of rows, a few reasons.
    texts = [""]
    reason = np.zeros(table.num_rows, dtype=np.uint8)
    for column in (columns.id, columns.product, columns.event):
        texts.append(f"empty {column!r}")
        reason[_blank(_single(table.column(column))) & (reason == 0)] = len(texts) - 1
    if columns.strata:
        valid = np.flatnonzero(reason == 0)
        ids = pd.Series(table.column(columns.id).take(valid).to_numpy(zero_copy_only=False))
        stratum = pd.Series(_stratum_labels(table.take(valid), columns.strata))
        conflicting = stratum.groupby(ids).transform("nunique").to_numpy() > 1
        texts.append("report has conflicting values of " + ", ".join(map(repr, columns.strata)))
        reason[valid[conflicting]] = len(texts) - 1
    bad = reason != 0
    rejected = np.flatnonzero(bad)
    rejects = _as_text(table.take(rejected)).to_pandas()
    rejects.insert(0, "line", rejected + 2)  # the file's line number (line 1 is the header)
    rejects["reason"] = np.array(texts, dtype=object)[reason[rejected]]
    return CaseTable(
        rows=table.filter(pa.array(~bad)) if rejected.size else table,
        rejects=rejects,
        columns=columns,
    )


def _stratum_labels(table: pa.Table, strata: Sequence[str]) -> np.ndarray:
    """One label per row joining its strata values (with a unit separator)."""
    if len(strata) == 1:
        return table.column(strata[0]).to_numpy(zero_copy_only=False)
    joined = pc.binary_join_element_wise(*(table.column(name) for name in strata), "\x1f")
    return joined.to_numpy(zero_copy_only=False)


def _single(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The column as one array (one dictionary for every row)."""
    if isinstance(column, pa.ChunkedArray):
        return (
            column.unify_dictionaries().combine_chunks()
            if column.num_chunks != 1
            else column.chunk(0)
        )
    return column


def _as_text(table: pa.Table) -> pa.Table:
    """The table with dictionary-encoded columns decoded to text."""
    for k, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(k, field.name, table.column(k).cast(pa.string()))
    return table


def _runs(column: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Each row's run of equal consecutive values, and the value of each run.

    A case table lists a report's rows together, so a report's id is one run: whatever is
    decided per distinct id is decided on the runs' values, a fraction of the rows, and is
    exact however the rows are ordered (rows of one run share their value)."""
    starts = np.ones(len(column), dtype=bool)
    if len(column) > 1:
        differs = pc.not_equal(column.slice(1), column.slice(0, len(column) - 1))
        starts[1:] = differs.to_numpy(zero_copy_only=False)
    return np.cumsum(starts) - 1, column.filter(pa.array(starts))


def _blank(column: pa.Array) -> np.ndarray:
    """Which rows are blank (only whitespace), testing each distinct label or run once."""
    if pa.types.is_dictionary(column.type):
        blank = pc.match_substring_regex(column.dictionary, _BLANK).to_numpy(zero_copy_only=False)
        return blank[column.indices.to_numpy(zero_copy_only=False)]
    run, values = _runs(column)
    return pc.match_substring_regex(values, _BLANK).to_numpy(zero_copy_only=False)[run]


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Each value's code (int64, in order of first appearance, as pandas.factorize) and the
    distinct values (object array)."""
    column = _single(column)
    if pa.types.is_dictionary(column.type):
        # The dictionary may hold labels of rejected rows and another order: recode by rows.
        codes, used = pd.factorize(column.indices.to_numpy(zero_copy_only=False))
        labels = column.dictionary.take(pa.array(used))
        return codes.astype(np.int64), labels.to_numpy(zero_copy_only=False)
    run, values = _runs(column)
    encoded = values.dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)[run]
    return codes, encoded.dictionary.to_numpy(zero_copy_only=False)


def count_pairs(table: CaseTable) -> CodedPairs:
    """Count distinct reports per pair, per product, per event, per stratum and in all."""
    columns, rows = table.columns, table.rows
    if rows.num_rows == 0:
        raise InputError("the cases file has no valid rows to count")
    report, _ = _codes(rows.column(columns.id))
    product, product_labels = _codes(rows.column(columns.product))
    event, event_labels = event_keys(*_codes(rows.column(columns.event)))
    n_reports = int(report.max()) + 1
    n_products, n_events = len(product_labels), len(event_labels)

    # Distinct (report, product, event), sorted: (report, product) runs are then adjacent.
    triples = distinct((report * n_products + product) * n_events + event)
    pair_key, a = distinct_counts(triples % (n_products * n_events))
    pair_product, pair_event = pair_key // n_events, pair_key % n_events
    report_product = distinct_of_sorted(triples // n_events)
    del triples
    report_event = distinct(report * n_events + event)

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
    return CodedPairs(
        products=np.asarray(product_labels, dtype=object),
        events=np.asarray(event_labels, dtype=object),
        product_code=pair_product,
        event_code=pair_event,
        counts=counts,
        reports=n_reports,
        strata=n_strata,
    )


def event_keys(codes: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each event under the key the store counts it under without a dictionary: spellings
    that normalise alike (case, width, hyphens, spacing) are one event, named by the first
    spelling in the file (pvsignal.terminology.normalise). ``texts`` are in order of first
    appearance, so the codes stay in that order."""
    labels = TermLabels()
    keys = np.array([labels.key(text) for text in texts.tolist()] + [None], dtype=object)[:-1]
    key_code, key_labels = pd.factorize(keys)
    return key_code.astype(np.int64)[codes], np.asarray(key_labels, dtype=object)


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
