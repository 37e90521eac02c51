"""Reading a scope's counts a chunk of rows at a time (ordered reads) gives the same columns as
reading them at once, with one string object per distinct label (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest

from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig
from pvsignal.store import sql
from tests.api.conftest import report


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_chunked_reading_equals_one_read(new_store, monkeypatch, kind):
    store = new_store(kind)
    lines = [
        report(f"C-{i}", f"drug {i % 5}", [f"PT {i % 7}", f"PT {(i * 3) % 11}"]) for i in range(60)
    ]
    Ingestor(store, ScopeConfig()).ingest(RawRecord(f"l{i}", line) for i, line in enumerate(lines))
    with monkeypatch.context() as patch:  # the rows fetched at once, labels as fetched
        patch.setattr(sql.SqlStore, "_shared_columns", sql.SqlStore._columns)
        whole = store.scope_counts("all")
    monkeypatch.setattr(sql, "_FETCH_ROWS", 4)
    chunked = store.scope_counts("all")
    for name in ("pair_product", "pair_event", "a"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    for name in ("product_rows", "event_rows", "totals"):
        for mine, theirs in zip(getattr(chunked, name), getattr(whole, name), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    pairs = set(zip(whole.pair_product, whole.pair_event, strict=True))
    assert chunked.a.size == len(pairs) > 4
    # Every row of a product refers to one string.
    assert len({id(label) for label in chunked.pair_product}) == len(set(chunked.pair_product))


# Labels whose JSON needs escapes, whose code point order is not their UTF-8 byte length's,
# and which a collation would order otherwise (case, accents, CJK).
LABELS = ['drug "B", 5 mg', "Drug a\\b", "ärztlich", "zeta", "头孢", "Ω drug", "drug a"]
TERMS = ["Rash", "rash pruritic", "Übelkeit", "肝损伤", "PT, with comma", 'PT "quoted"']


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_coded_counts_hold_the_pairs_of_the_row_read_in_code_point_order(
    new_store, monkeypatch, kind
):
    store = new_store(kind)
    lines = [report(f"C-{i}", LABELS[i % 7], [TERMS[i % 6], TERMS[(i * 5) % 6]]) for i in range(90)]
    lines.append(report("C-0", LABELS[0], [TERMS[0]], version=2))  # a follow-up moves counts
    Ingestor(store, ScopeConfig()).ingest(RawRecord(f"l{i}", line) for i, line in enumerate(lines))
    rows = store.scope_counts("all")
    monkeypatch.setattr(sql, "_FETCH_PRODUCTS", 2)  # products read a few at a time
    coded = store.coded_counts("all")
    pairs = sorted(zip(rows.pair_product, rows.pair_event, rows.a.tolist(), strict=True))
    assert coded.products.tolist() == sorted(set(rows.pair_product))
    assert coded.events.tolist() == sorted(set(rows.pair_event))
    read = zip(
        coded.products[coded.product_code],
        coded.events[coded.event_code],
        coded.a.tolist(),
        strict=True,
    )
    assert list(read) == pairs and len(pairs) > 20
    for name in ("product_rows", "event_rows", "totals"):
        for mine, theirs in zip(getattr(coded, name), getattr(rows, name), strict=True):
            np.testing.assert_array_equal(mine, theirs)
