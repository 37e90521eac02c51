"""The store contract: both implementations behave the same, batches are atomic."""

import numpy as np
import pytest

from pvsignal.cases import CaseState, Contribution, Deltas, Status
from pvsignal.products import RegisteredProduct
from pvsignal.store import BatchWrite, Reject

CONTRIBUTION = Contribution("18-44|F|2026", (("all", ("P1", "P2"), ("E1",)),))


def _batch(sign=1, offsets=None, rejects=()):
    deltas = Deltas()
    deltas.add(CONTRIBUTION, sign)
    case = CaseState("C1", Status.active, 2, "R1", contribution=CONTRIBUTION, report_json="{}")
    return BatchWrite(cases=[case], deltas=deltas, rejects=list(rejects), offsets=offsets or {})


def test_batch_writes_cases_counts_rejects_and_offsets(store):
    reject = Reject("jsonl", "f.jsonl:3", "patient.age_years", "-2", "must be >= 0", "{...}")
    with store.batch() as session:
        session.write(_batch(offsets={("reports", 0): 17}, rejects=[reject]))
    state = store.case("C1")
    assert (state.status, state.version, state.contribution) == (Status.active, 2, CONTRIBUTION)
    counts = store.scope_counts("all")
    assert sorted(zip(counts.pair_product, counts.pair_event, counts.a, strict=True)) == [
        ("P1", "E1", 1.0),
        ("P2", "E1", 1.0),
    ]
    assert counts.totals[0].tolist() == ["18-44|F|2026"] and counts.totals[1].tolist() == [1.0]
    assert store.offsets("reports") == {0: 17}
    [row] = store.rejects()
    assert (row["location"], row["field"], row["value"]) == ("f.jsonl:3", "patient.age_years", "-2")
    assert store.count_rejects() == 1


def test_counts_accumulate_and_withdraw(store):
    for sign in (1, 1, -1):
        with store.batch() as session:
            session.write(_batch(sign))
    counts = store.scope_counts("all")
    assert counts.a.tolist() == [1.0, 1.0]
    with store.batch() as session:
        session.write(_batch(-1))
    assert store.scope_counts("all").a.size == 0  # withdrawn pairs are no longer listed


def test_a_state_without_payload_keeps_the_stored_one(store):
    # States loaded for a batch come without the payload; writing them back must keep it.
    with store.batch() as session:
        session.write(_batch())
    loaded = store.case("C1")
    assert loaded.report_json is None
    with store.batch() as session:
        session.write(BatchWrite(cases=[loaded]))
    assert store.active_reports() == [("unattributed", "C1", "{}")]


def test_every_batch_write_moves_the_change_token(store):
    tokens = [store.change_token()]
    for _ in range(2):
        with store.batch() as session:
            session.write(_batch())
        tokens.append(store.change_token())
    assert tokens[0] != tokens[1] != tokens[2]
    assert store.setting("batches_written") == "2"


def test_versions_as_e2b_timestamps_fit(store):
    # E2B(R3) has no follow-up number: its versions are C.1.5 as YYYYMMDDhhmmss.
    case = CaseState("C1", Status.active, 20_260_314_093_000, "R1", contribution=CONTRIBUTION)
    with store.batch() as session:
        session.write(BatchWrite(cases=[case]))
    assert store.case("C1").version == 20_260_314_093_000


def test_offsets_only_increase(store):
    for offset in (10, 7, 12):
        with store.batch() as session:
            session.write(BatchWrite(offsets={("reports", 1): offset}))
    assert store.offsets("reports") == {1: 12}


def test_a_failing_batch_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.batch() as session:
        session.write(_batch(offsets={("reports", 0): 5}))
        raise RuntimeError("crash in the middle of the batch")
    assert store.case("C1") is None
    assert store.scope_counts("all").a.size == 0
    assert store.offsets("reports") == {}


def test_products_round_trip(store):
    product = RegisteredProduct(
        product_id="P-1",
        names=["度普利尤单抗", "Dupixent"],
        kind="biologic",
        pathway="gba_hkmacao_connect",
        mah_id="M1",
    )
    store.save_products([product])
    store.save_products([product.model_copy(update={"mah_id": "M2"})])
    assert [p.mah_id for p in store.load_products()] == ["M2"]
    assert store.load_products()[0].names[0] == "度普利尤单抗"


def test_fits_are_recorded(store):
    store.record_fit("all", {"theta": {"alpha1": 1.0}, "neg_log_likelihood": np.float64(3.5)})
    [fit] = store.fits("all")
    assert fit["neg_log_likelihood"] == 3.5 and fit["scope"] == "all"


def test_reopening_keeps_data_and_schema(store):
    with store.batch() as session:
        session.write(_batch())
    from pvsignal.store import open_store

    again = open_store(store.url)
    try:
        assert again.case("C1").version == 2
    finally:
        again.close()


def test_a_stale_writer_is_fenced(store):
    from pvsignal.errors import StaleOffsetsError
    from pvsignal.ingest import Ingestor
    from pvsignal.readers import RawRecord
    from pvsignal.scopes import ScopeConfig

    def record(case_id):
        body = {
            "case_id": case_id,
            "report_id": case_id,
            "products": [{"name": "x"}],
            "reactions": [{"pt": "Rash"}],
        }
        return [RawRecord(f"reports:0@{case_id}", body)]

    ingestor = Ingestor(store, ScopeConfig())
    # The partition's first batch: the store has no offset yet, as the writer believed.
    ingestor.apply(record("A"), {("reports", 0): 1}, {("reports", 0): None})
    # Another member applies the next batch (offsets 1..4) ...
    ingestor.apply(record("B"), {("reports", 0): 5}, {("reports", 0): 1})
    # ... and a member that lost the partition still holds its read from offset 1.
    with pytest.raises(StaleOffsetsError, match=r"reports\[0\] is at offset 5 in the store, not 1"):
        ingestor.apply(record("C"), {("reports", 0): 3}, {("reports", 0): 1})
    assert store.offsets("reports") == {0: 5}
    assert store.case("C") is None and store.count_cases() == {"active": 2}
