"""The codec: what a message gives the Ingestor, and which messages are poison and why."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.reports import Report
from pvsignal.scopes import ScopeConfig
from pvsignal.simulate import SimulationConfig, simulate
from pvsignal.store import open_store
from streams.codec import POISON_REASONS, Codec, content_type

E2B_DATA = Path(__file__).parents[1] / "pvsignal" / "readers" / "data"
REPORT = {
    "case_id": "CN-HOSP-1",
    "report_id": "CN-HOSP-1",
    "products": [{"name": "dupilumab", "role": "suspect"}],
    "reactions": [{"pt": "Rash"}],
}
JSON = [("content-type", b"application/json")]
XML = [("content-type", b"application/hl7-v3+xml")]


def decode(value, headers=JSON, max_bytes=1 << 20):
    return Codec(max_bytes=max_bytes).decode(value, headers, "reports:0@7")


def test_a_valid_report_is_passed_on_as_received():
    value = orjson.dumps(REPORT)
    decoded = decode(value)
    assert decoded.poison is None
    [record] = decoded.records
    assert (record.location, record.payload, record.error) == ("reports:0@7", value, None)
    # It travels on validated, so the Ingestor does not validate it a second time.
    assert record.report == Report.model_validate_json(value)


@pytest.mark.parametrize(
    "headers",
    [None, [], [("Content-Type", b"application/json; charset=utf-8")], [("other", None)]],
)
def test_json_is_the_default_and_media_type_parameters_are_ignored(headers):
    assert decode(orjson.dumps(REPORT), headers).poison is None


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (b"HTTP/1.1 502 Bad Gateway", "not_json", "Invalid JSON"),
        (orjson.dumps(REPORT)[:-3], "not_json", "Invalid JSON"),
        (orjson.dumps({**REPORT, "case_id": None}), "invalid_report", "case_id"),
        (orjson.dumps({**REPORT, "patient": {"age_years": -3}}), "invalid_report", "age_years"),
        (orjson.dumps([REPORT]), "invalid_report", "(record)"),
    ],
)
def test_json_poison_still_reaches_the_ingestor_as_received(value, reason, detail):
    # The Ingestor rejects it exactly as it would the same line of a file.
    decoded = decode(value)
    assert decoded.poison.reason == reason
    assert detail in decoded.poison.detail
    assert decoded.records == (RawRecord("reports:0@7", value),)


@pytest.mark.parametrize(
    ("value", "headers", "reason", "detail"),
    [
        ("é".encode("latin-1") + orjson.dumps(REPORT), JSON, "not_utf8", "utf-8"),
        (None, JSON, "empty", "no value"),
        (b"", JSON, "empty", "no value"),
        (orjson.dumps(REPORT), [("content-type", b"text/csv")], "unknown_content_type", "text/csv"),
        (orjson.dumps(REPORT), [("content-type", b"\xff")], "unknown_content_type", "not one of"),
    ],
)
def test_unreadable_messages_are_refused_unparsed(value, headers, reason, detail):
    decoded = decode(value, headers)
    assert decoded.poison.reason == reason
    assert detail in decoded.poison.detail
    (record,) = decoded.records
    assert record.payload is None
    assert record.error.startswith(f"{reason}: ")


def test_oversize_is_refused_before_anything_parses_it():
    value = orjson.dumps({**REPORT, "narrative": "x" * 5_000})
    decoded = decode(value, max_bytes=4_096)
    assert decoded.poison.reason == "oversize"
    assert f"{len(value)} bytes, more than the limit of 4096" in decoded.poison.detail
    assert decoded.records[0].payload is None
    assert decode(value, max_bytes=len(value)).poison.reason == "invalid_report"  # at the limit


@pytest.mark.parametrize("kind", ["application/xml", "application/hl7-v3+xml", "text/xml"])
def test_an_e2b_batch_gives_one_record_per_report(kind):
    decoded = decode((E2B_DATA / "e2b_batch.xml").read_bytes(), [("content-type", kind.encode())])
    assert decoded.poison is None
    assert [r.payload["case_id"] for r in decoded.records] == [
        "CN-BOAO-2024-000123",
        "CN-MAHX-2023-000777",
    ]
    assert decoded.records[0].location == "reports:0@7:message 1 (C.1.1 CN-BOAO-2024-000123)"


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml"])
def test_xml_bombs_and_external_entities_are_refused_unexpanded(name):
    decoded = decode((E2B_DATA / name).read_bytes(), XML)
    assert decoded.poison.reason == "xml_refused"
    assert "declares a DTD" in decoded.poison.detail
    (record,) = decoded.records
    assert record.payload is None


def test_xml_that_is_not_well_formed_or_not_an_icsr():
    assert decode(b"<a><b></a>", XML).poison.reason == "xml_malformed"
    assert decode(orjson.dumps(REPORT), XML).poison.reason == "xml_malformed"
    not_icsr = decode(b"<ichicsr/>", XML)
    assert not_icsr.poison.reason == "invalid_report"
    assert "no PORR_IN049016UV ICSR message" in not_icsr.poison.detail


def test_one_unreadable_report_makes_the_batch_poison_but_keeps_the_others():
    text = (E2B_DATA / "e2b_batch.xml").read_text()
    broken = text.replace('administrativeGenderCode code="1"', 'administrativeGenderCode code="9"')
    decoded = decode(broken.encode(), XML)
    assert decoded.poison.reason == "invalid_report"
    assert "message 2" in decoded.poison.detail and "D.5 sex code '9'" in decoded.poison.detail
    good, bad = decoded.records
    assert good.payload["case_id"] == "CN-BOAO-2024-000123"
    assert bad.payload is None and "D.5" in bad.error


def test_content_type_header_lookup():
    assert content_type([("x", b"1"), ("CONTENT-TYPE", b" Application/XML ; q=1")]) == (
        "application/xml"
    )
    assert content_type(None) is None


def test_poison_is_exactly_what_the_ingestor_rejects(tmp_path):
    """Over simulated lines with every kind of malformation: the codec's poison is the
    simulator's malformed lines, and the Ingestor, given the codec's records, counts and
    rejects exactly as it does the lines themselves."""
    simulation = simulate(SimulationConfig(reports=2_000, seed=3, malformed_rate=0.1))
    lines = list(simulation.lines())
    codec = Codec()
    decoded = [codec.decode(line, None, f"reports:0@{i}") for i, line in enumerate(lines)]
    poison_lines = tuple(i + 1 for i, d in enumerate(decoded) if d.poison is not None)
    assert poison_lines == simulation.truth.malformed_lines
    assert {d.poison.reason for d in decoded if d.poison} == {"not_json", "invalid_report"}

    stores = [open_store(f"sqlite:///{tmp_path}/{name}.db") for name in ("codec", "lines")]
    for store in stores:
        store.save_products(simulation.products)
    Ingestor(stores[0], ScopeConfig()).ingest(r for d in decoded for r in d.records)
    Ingestor(stores[1], ScopeConfig()).ingest(
        RawRecord(f"line {i}", line) for i, line in enumerate(lines)
    )
    via_codec, direct = stores
    assert via_codec.count_cases() == direct.count_cases()
    assert via_codec.count_rejects() == direct.count_rejects()
    assert via_codec.scope_counts("all").a.tolist() == direct.scope_counts("all").a.tolist()
    for store in stores:
        store.close()


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(st.none(), st.binary(max_size=300)),
    kind=st.sampled_from([None, "application/json", "application/xml", "image/png"]),
)
def test_any_bytes_decode_without_raising(value, kind):
    headers = None if kind is None else [("content-type", kind.encode())]
    decoded = Codec(max_bytes=200).decode(value, headers, "t:0@0")
    assert decoded.records
    assert decoded.poison is None or decoded.poison.reason in POISON_REASONS
