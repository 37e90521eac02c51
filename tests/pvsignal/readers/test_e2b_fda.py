"""E2B(R3) reader on the FDA's reference instances; expected values read from the XML by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pvsignal.readers.e2b import read_e2b, read_e2b_batch, read_e2b_stream
from pvsignal.reports import Reaction, Report

FDA = Path(__file__).parents[2] / "data" / "e2b-fda"
MAH = {"type": "mah", "institution_id": "Big Pharma Drug"}  # C.3.2, not "Management" (C.3.3.1)
MAN_48 = {"age_years": 48.0, "age_value": 48.0, "age_unit": "a", "age_group": "adult", "sex": "M"}
WOMAN_48 = {**MAN_48, "sex": "F"}
NDC = "2.16.840.1.113883.6.69"


def _dvt(*criteria: str) -> dict:
    """E.i reaction #1 of the instances: LLT 10027940 with its French text for translation."""
    return {
        "llt_code": "10027940",
        "meddra_version": "25.0",
        "translation_text": "THROMBOSE VEINEUSE PROFONDE",
        "serious": True,
        "seriousness": list(criteria),
        "outcome": "not_recovered",
    }


COLITIS = {
    "llt_code": "10009896",
    "meddra_version": "25.0",
    "translation_text": "COLITE ISCHEMIQUE",
    "serious": True,
    "seriousness": ["other_medically_important"],
    "outcome": "recovered",
}
REACTIONS = [_dvt("disabling", "other_medically_important"), COLITIS]


def _drug(name, holder, role, code=None, number=None, **more):
    product = {"product_id": code, "id_system": NDC} if code else {}
    product.update(name=name, holder=holder, role=role, **more)
    if number:
        product["authorisation_number"] = number
    return product


def _abc(first: str, number: str) -> list[dict]:
    return [
        _drug(first, "Big Pharma A Drug", "suspect", "59762-2858", number),
        _drug("Drug B", "Big Pharma B Drug", "suspect", "894444-28525-765", "NDA012567"),
        _drug("Drug C", "Big Pharma C Drug", "concomitant"),
    ]


def _case(report_id: str, case_id: str, received: str, created: str = "2014-07-14", **more):
    stamp = received.replace("-", "")
    report = {
        "case_id": case_id,
        "report_id": report_id,
        "created": created,
        "first_received": received,
        "received": received,
        "version": int((stamp + more.pop("time", "")).ljust(14, "0")),
        "nullified": False,
        "report_type": "spontaneous",
        "reporter_qualification": "physician",
        "country": "US",
        "sender": MAH,
        "patient": MAN_48,
        "reactions": REACTIONS,
    }
    report.update(more)
    return report


APHARMA = "US-APHARMA-8744554B"
EXPECTED = {
    "FAERS2022Scenario1.xml": _case(
        APHARMA, APHARMA, "2022-06-14", time="101010", products=_abc("Drug A", "NDA012345")
    ),
    "FAERS2022Scenario2.xml": _case(
        "US-APHARMA-8744554B-UPDATE-TESTING222",
        APHARMA,
        "2022-06-15",
        products=[
            _drug("Drug A", "Big Pharma A Drug", "suspect", "59762-2858", "NDA012345"),
            {"name": "Brand Name", "role": "suspect", "kind": "device"},  # Drug A's syringe
            *_abc("Drug A", "NDA012345")[1:],
        ],
    ),
    "FAERS2022Scenario3.xml": _case(
        APHARMA, APHARMA, "2022-06-15", report_type="study", products=_abc("MK-001", "IND123456")
    ),
    "FAERS2022Scenario4.xml": _case(
        "US-APHARMA-222222222",
        "US-APHARMA-222222222",
        "2022-06-15",
        report_type="study",
        sender={"type": "mah", "institution_id": "Big Pharma A"},
        patient={},  # an aggregate report: age and age group NA, no sex
        linked_report_ids=["US-APHARMA-111111111", "US-APHARMA-333333333", "US-APHARMA-444444444"],
        reactions=[_dvt("hospitalisation", "other_medically_important"), COLITIS],
        products=[_drug("AA-001", "Big Pharma A", "suspect", "59762-2858", "IND012345")],
    ),
    "FAERS2022Scenario5-1.xml": _case(
        "US-APHARMA-234545656",
        "US-APHARMA-234545656",
        "2022-06-14",
        time="101010",
        report_type="study",
        patient=WOMAN_48,
        products=[
            _drug("TEST", "Generic Pharma Test Drug", "suspect", "59762-2858", "Pre-ANDA054321"),
            _drug("RLD", "Reference Pharma RLD Drug", "suspect", "894444-28525-765", "NDA012567"),
            _drug("Drug A", "Generic Pharma A Drug", "concomitant"),
        ],
    ),
    "FAERS2022Scenario5-2.xml": _case(
        "US-APHARMA-234545656",
        "US-APHARMA-234545656",
        "2022-06-14",
        time="101010",
        report_type="study",
        patient=WOMAN_48,
        products=[
            _drug(
                "Vehicle Patch for Buprenorphine Transdermal System",
                "Generic Pharma Vehicle",
                "suspect",
                "59762-2858",
                "054321",
            ),
            _drug("Positive Control System", "Pharma Control", "suspect", "894444-28525-765"),
            _drug("Drug A", "Generic Pharma A Drug", "concomitant"),
        ],
    ),
    "FAERS2022Scenario5-3.xml": _case(
        "US-APHARMA-234545656",
        "US-APHARMA-234545656",
        "2022-06-14",
        time="101010",
        report_type="study",
        patient=WOMAN_48,
        products=[  # Drug Z and Drug X share one id: see tests/data/e2b-fda/README.md
            _drug(
                "Drug Z (No drug exposure)",
                "Generic Pharma",
                "suspect",
                "894444-28525-765",
                "NDA012567",
            ),
            _drug("Drug X", "Pharma X Drug", "suspect", "894444-28525-765", "NDA345678"),
            _drug("Drug A", "Generic Pharma A Drug", "concomitant"),
        ],
    ),
    "FAERS2022Scenario7.xml": _case(
        "US-APHARMA-8744554B-UPDATET-TESTING",
        APHARMA,
        "2022-06-14",
        time="101010",
        reactions=[  # criteria all nullFlavor NI: given, none true
            {
                "llt_code": "10000001",
                "meddra_version": "25.0",
                "translation_text": "NO ADVERSE EVENT",
                "serious": False,
                "outcome": "unknown",
            }
        ],
        products=[  # the FDA's "similar device" (its own code system) is not a G.k.1 role
            _drug("Drug A", "Big Pharma A", "suspect", "59762-2858", "NDA012345"),
            {"name": "Brand Name", "role": "suspect", "kind": "device"},
            _drug("Drug B", "Big Pharma B", "not_administered", "894444-28525-765", "NDA012567"),
            {"name": "Brand Name", "role": "not_administered", "kind": "device"},
        ],
    ),
    "FAERS2022Scenario8.xml": _case(
        APHARMA, APHARMA, "2022-06-14", created="2022-06-14", products=_abc("MK-001", "IND123456")
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fda_instance_reads_as_the_xml_states(name):
    (record,) = read_e2b([FDA / name])
    assert record.error is None
    assert record.payload == EXPECTED[name]
    report = Report.model_validate(record.payload)
    assert not report.amended and not report.duplicate_of_ids


def test_every_shared_instance_is_covered():
    assert sorted(p.name for p in FDA.glob("*.xml")) == sorted(EXPECTED)


def test_scenario_1_counts_by_code_and_shows_the_reporter_text():
    (record,) = read_e2b([FDA / "FAERS2022Scenario1.xml"])
    first, second = Report.model_validate(record.payload).reactions
    assert (first.event_key, first.label) == ("LLT:10027940", "THROMBOSE VEINEUSE PROFONDE")
    assert (second.event_key, second.label) == ("LLT:10009896", "COLITE ISCHEMIQUE")


def test_one_reaction_in_three_languages_is_one_event():
    french = Reaction(llt_code="10027940", translation_text="THROMBOSE VEINEUSE PROFONDE")
    chinese = Reaction(llt_code="10027940", reported_text="深静脉血栓形成", reported_language="zh")
    english = Reaction(llt_code="10027940", reported_text="deep vein thrombosis")
    assert {r.event_key for r in (french, chinese, english)} == {"LLT:10027940"}
    assert [r.label for r in (french, chinese, english)] == [
        "THROMBOSE VEINEUSE PROFONDE",
        "深静脉血栓形成",
        "deep vein thrombosis",
    ]


def test_json_reactions_keep_their_pt_as_the_key():
    assert Reaction(pt="Headache", pt_code="10019211").event_key == "Headache"
    assert Reaction(pt_code="10019211").event_key == "PT:10019211"
    with pytest.raises(ValueError, match="a reaction needs pt, pt_code or llt_code"):
        Reaction(reported_text="headache")


def _batch_of_three() -> bytes:
    """One batch holding the ICSR messages of Scenarios 1, 3 and 7 (the batch of Scenario 1)."""
    texts = [(FDA / f"FAERS2022Scenario{n}.xml").read_text(encoding="utf-8") for n in (1, 3, 7)]
    message = re.compile(r"<PORR_IN049016UV>.*?</PORR_IN049016UV>", re.S)
    messages = [message.search(text).group(0) for text in texts]
    return message.sub(lambda _: "\n".join(messages), texts[0], count=1).encode("utf-8")


def test_a_batch_of_three_gives_three_records_and_headers():
    batch, found = read_e2b_batch(_batch_of_three(), "three.xml")
    assert (batch.batch_id, batch.sender_id, batch.receiver_id, batch.created) == (
        "FAERS2022Scenario1-4069-a2dd-08002b30309d",  # N.1.2
        "4567AB89012",  # N.1.3
        "ZZFDA",  # N.1.4
        "20220614101010-0500",  # N.1.5
    )
    assert [(h.message_id, h.sender_id, h.receiver_id, h.report_id) for h, _ in found] == [
        ("21ec1492-3aea-4069-a2ab-08002b30309d", "4567AB89012", "CDER", APHARMA),
        ("21ec1492-3aea-4069-a2ab-08002b30309d", "4567AB89012", "CDER_IND", APHARMA),
        (
            "21ec1492-3aea-4069-a2ab-08002b30309d",
            "4567AB89012",
            "CDER",
            "US-APHARMA-8744554B-UPDATET-TESTING",
        ),
    ]
    assert {h.created for h, _ in found} == {"20140714151617-0500"}  # N.2.r.4
    records = [record for _, record in found]
    assert [r.location for r in records] == [
        f"three.xml:message 1 (C.1.1 {APHARMA})",
        f"three.xml:message 2 (C.1.1 {APHARMA})",
        "three.xml:message 3 (C.1.1 US-APHARMA-8744554B-UPDATET-TESTING)",
    ]
    assert [r.payload for r in records] == [
        EXPECTED[f"FAERS2022Scenario{n}.xml"] for n in (1, 3, 7)
    ]


def test_the_stream_reader_yields_each_icsr_as_its_message_closes():
    data = _batch_of_three()
    fed = []

    def chunks():
        for start in range(0, len(data), 4096):
            fed.append(start)
            yield data[start : start + 4096]

    stream = read_e2b_stream(chunks(), "three.xml")
    first = next(stream)
    assert first.payload == EXPECTED["FAERS2022Scenario1.xml"]
    assert len(fed) < len(data) // 4096 / 2  # the rest was not read
    assert [r.payload["report_id"] for r in stream] == [
        APHARMA,
        "US-APHARMA-8744554B-UPDATET-TESTING",
    ]


def test_the_stream_reader_refuses_a_dtd_before_expanding_it():
    bomb = (Path(__file__).parent / "data" / "billion_laughs.xml").read_bytes()
    (record,) = read_e2b_stream([bomb[:50], bomb[50:]], "upload")
    assert record.payload is None and record.error.startswith("refused: upload declares a DTD")
