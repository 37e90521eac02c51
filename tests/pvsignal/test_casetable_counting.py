"""Reading and counting a case table (Arrow reader, sort-based counting) gives exactly the
pairs, counts, order and rejects of the previous pandas / np.unique path, and a brute-force
recount of distinct reports with Python sets, on random tables."""

from collections import defaultdict

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.table import expected
from pvsignal.casetable import Columns, count_pairs, read_case_table
from pvsignal.terminology.normalise import TermLabels

# Labels small enough to repeat, with blanks (spaces, tabs, a no-break space) among them.
LABELS = st.sampled_from(["A", "B", "c", "dé", "ε1", " ", "", "\t", "\u00a0", " x "])
STRATA = st.sampled_from(["M", "F", "U"])
ROW = st.tuples(st.integers(0, 12).map(str) | st.just(" "), LABELS, LABELS, STRATA)


def _old_read(path, columns):
    """The previous reader: pandas, every field as text, blank = str.strip() is empty."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    frame = frame[
        list(dict.fromkeys([columns.id, columns.product, columns.event, *columns.strata]))
    ]
    frame.index = frame.index + 2
    reasons = pd.Series("", index=frame.index, dtype=object)
    for column in (columns.id, columns.product, columns.event):
        blank = frame[column].str.strip() == ""
        reasons[blank & (reasons == "")] = f"empty {column!r}"
    if columns.strata:
        stratum = frame[columns.strata[0]]
        valid_ids = frame.loc[reasons == "", columns.id]
        conflicting = stratum[valid_ids.index].groupby(valid_ids).transform("nunique") > 1
        reasons[conflicting[conflicting].index] = "report has conflicting values of " + ", ".join(
            map(repr, columns.strata)
        )
    bad = reasons != ""
    rejects = frame[bad].assign(reason=reasons[bad]).rename_axis("line").reset_index()
    return frame[~bad], rejects


def _old_count(rows, columns):
    """The previous counting: pandas.factorize, then np.unique on packed keys."""
    report, _ = pd.factorize(rows[columns.id])
    product, product_labels = pd.factorize(rows[columns.product])
    event, event_labels = pd.factorize(rows[columns.event])
    report, product, event = (np.asarray(x, dtype=np.int64) for x in (report, product, event))
    n_products, n_events = len(product_labels), len(event_labels)
    triples = np.unique((report * n_products + product) * n_events + event)
    pair_key, a = np.unique(triples % (n_products * n_events), return_counts=True)
    report_product = np.unique(report * n_products + product)
    report_event = np.unique(report * n_events + event)
    n_product = np.bincount(report_product % n_products, minlength=n_products)
    n_event = np.bincount(report_event % n_events, minlength=n_events)
    p, e = pair_key // n_events, pair_key % n_events
    return (
        np.asarray(product_labels, dtype=object)[p],
        np.asarray(event_labels, dtype=object)[e],
        a,
        n_product[p],
        n_event[e],
    )


def _keyed(rows, column):
    """The events as counted since terms are normalised: each spelling under the first
    spelling of its normal form (pvsignal.terminology.normalise)."""
    labels = TermLabels()
    events = rows[column]
    return rows.assign(
        **{column: events.map({text: labels.key(text) for text in pd.unique(events)})}
    )


def _write(tmp_path, rows):
    path = tmp_path / "cases.csv"
    frame = pd.DataFrame(rows, columns=["id", "drug", "pt", "sex"])
    frame.to_csv(path, index=False)
    return path


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(ROW, min_size=1, max_size=60), stratified=st.booleans())
def test_reading_and_counting_equal_the_previous_path(tmp_path, rows, stratified):
    columns = Columns("id", "drug", "pt", ("sex",) if stratified else ())
    path = _write(tmp_path, rows)
    table = read_case_table(path, columns)
    old_rows, old_rejects = _old_read(path, columns)
    pd.testing.assert_frame_equal(
        table.rejects.astype(object), old_rejects.astype(object), check_dtype=False
    )
    assert table.rows.num_rows == len(old_rows)
    if old_rows.empty:
        return
    pairs = count_pairs(table)
    old_rows = _keyed(old_rows, columns.event)
    product, event, a, n_product, n_event = _old_count(old_rows, columns)
    assert pairs.product.tolist() == product.tolist()
    assert pairs.event.tolist() == event.tolist()
    np.testing.assert_array_equal(pairs.counts.a, a)
    np.testing.assert_array_equal(pairs.counts.n_product, n_product)
    np.testing.assert_array_equal(pairs.counts.n_event, n_event)
    _check_against_sets(pairs, old_rows, columns)


def _check_against_sets(pairs, rows, columns):
    """An independent recount: sets of report ids per pair, per product, per event."""
    per_pair, per_product, per_event = defaultdict(set), defaultdict(set), defaultdict(set)
    for report, product, event in zip(
        rows[columns.id], rows[columns.product], rows[columns.event], strict=True
    ):
        per_pair[product, event].add(report)
        per_product[product].add(report)
        per_event[event].add(report)
    reports = len(set(rows[columns.id]))
    assert pairs.reports == reports
    found = {
        (p, e): (a, n_p, n_e, x)
        for p, e, a, n_p, n_e, x in zip(
            pairs.product,
            pairs.event,
            pairs.counts.a,
            pairs.counts.n_product,
            pairs.counts.n_event,
            pairs.counts.expected,
            strict=True,
        )
    }
    assert set(found) == set(per_pair)
    for (p, e), ids in per_pair.items():
        a, n_p, n_e, x = found[p, e]
        assert (a, n_p, n_e) == (len(ids), len(per_product[p]), len(per_event[e]))
        if not columns.strata:
            assert x == expected(len(per_product[p]), len(per_event[e]), reports)
