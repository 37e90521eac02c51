"""E2B(R3) reader: hand-written ICSR fixtures, hostile XML, and elements that cannot be read."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pvsignal.readers.e2b import read_e2b
from pvsignal.reports import Report

DATA = Path(__file__).parent / "data"

BOAO = {
    "case_id": "CN-BOAO-2024-000123",
    "report_id": "CN-BOAO-2024-000123",
    "version": 20240315000000,  # C.1.5 as YYYYMMDDhhmmss
    "created": "2024-03-16",  # C.1.2
    "first_received": "2024-03-01",  # C.1.4
    "received": "2024-03-15",
    "report_type": "spontaneous",
    "nullified": False,  # C.1.11.1 = 2, an amendment; the NMPA code 3 is not C.1.11.1
    "amended": True,
    "change_reason": "Corrected the onset date of brain oedema",
    "other_case_ids": [{"source": "MAH", "case_id": "CN-MAHX-2023-000777"}],
    "duplicate_of_ids": ["CN-MAHX-2023-000777"],  # C.1.9.1, not the C.1.10.r linked report
    "linked_report_ids": ["CN-BOAO-2024-000122"],
    "mah_id": "91460000MA5T000001",  # C.1.CN.3
    "reporter_qualification": "physician",
    "sender": {  # C.3.2, not the department C.3.3.1 that encloses it
        "type": "health_professional",
        "institution_id": "Boao Lecheng Designated Hospital 01",
    },
    "country": "CN",
    "patient": {"age_years": 45.0, "age_value": 45.0, "age_unit": "a", "sex": "F"},
    "products": [
        {
            "product_id": "CN-BOAO-IMP-0042",
            "id_system": "TBD-MPID",
            "name": "仑卡奈单抗注射液 (LEQEMBI)",
            "role": "suspect",
        },
        {"name": "DONEPEZIL", "role": "concomitant"},
        {"name": "MEMANTINE", "role": "suspect"},  # no G.k.1: suspect
    ],
    "reactions": [  # the D.8 drug history's reaction is not among them
        {
            "llt_code": "10019211",
            "meddra_version": "26.1",
            "llt": "Headache",
            "reported_text": "头痛",
            "reported_language": "zh",
            "serious": False,
            "outcome": "recovered",
        },
        {
            "llt_code": "10048962",
            "meddra_version": "26.1",
            "reported_text": "脑水肿",
            "reported_language": "zh",
            "translation_text": "brain oedema",
            "serious": True,
            "seriousness": ["hospitalisation"],
            "outcome": "recovering",
        },
    ],
}

NULLIFICATION = {
    "case_id": "CN-MAHX-2023-000777",
    "report_id": "CN-MAHX-2023-000777",
    "version": 20240316101500,
    "created": "2024-03-16",
    "first_received": "2023-11-20",
    "received": "2024-03-16",
    "nullified": True,
    "change_reason": "Duplicate of CN-BOAO-2024-000123",
    "sender": {"type": "mah", "institution_id": "Example Pharma (Hainan) Co., Ltd."},
    "country": "CN",  # from E.i.9: the report names no primary source country
    "patient": {"age_years": 1.5, "age_value": 18.0, "age_unit": "mo", "sex": "M"},
    "products": [{"name": "LECANEMAB", "role": "suspect"}],
    "reactions": [{"llt_code": "10037087", "meddra_version": "26.1", "reported_text": "Pruritus"}],
}

CONSUMER = {
    "case_id": "JP-PMDA-2023-55501",
    "report_id": "JP-CONSUMER-0009",
    "version": 20231101223000,
    "created": "2023-11-02",
    "first_received": "2023-11-01",
    "received": "2023-11-01",  # C.1.4, since C.1.5 is absent
    "nullified": False,
    "reporter_qualification": "consumer",
    "sender": {"type": "patient"},
    "country": "JP",
    "patient": {"age_years": 60.0, "age_value": 6.0, "age_unit": "{decade}", "sex": "U"},
    "products": [
        {"name": "WARFARIN", "role": "interacting"},
        {"name": "ASPIRIN", "role": "not_administered"},
    ],
    "reactions": [{"llt_code": "10028813", "meddra_version": "26.1", "llt": "Nausea"}],
}


def test_batch_with_regional_elements_and_a_nullification():
    records = list(read_e2b([DATA / "e2b_batch.xml"]))
    assert [r.location for r in records] == [
        "e2b_batch.xml:message 1 (C.1.1 CN-BOAO-2024-000123)",
        "e2b_batch.xml:message 2 (C.1.1 CN-MAHX-2023-000777)",
    ]
    assert [r.error for r in records] == [None, None]
    assert [r.payload for r in records] == [BOAO, NULLIFICATION]
    for record in records:
        Report.model_validate(record.payload)


def test_single_message_without_batch_wrapper():
    (record,) = read_e2b([DATA / "e2b_single.xml"])
    assert record.payload == CONSUMER
    Report.model_validate(record.payload)


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml"])
def test_hostile_xml_is_one_refused_record(name):
    started = time.perf_counter()
    records = list(read_e2b([DATA / name]))
    assert time.perf_counter() - started < 1  # nothing was expanded
    assert len(records) == 1
    (record,) = records
    assert record.payload is None and record.location == name
    assert record.error.startswith(f"refused: {name} declares a DTD")
    assert "not expanded or fetched" in record.error
    assert "root:" not in record.error  # no /etc/passwd content


def test_directory_reads_every_file():
    records = list(read_e2b([DATA]))
    assert sum(r.payload is not None for r in records) == 3
    assert sum(r.error is not None for r in records) == 2


def _variant(tmp_path: Path, old: str, new: str, source: str = "e2b_single.xml") -> Path:
    text = (DATA / source).read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "variant.xml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            'unit="{decade}"',
            'unit="yr"',
            "D.2.2b age unit 'yr' (age 6) is not one of {decade}, a, mo, wk, d, h",
        ),
        ('value="6" unit', 'value="six" unit', "D.2.2a age 'six' is not a number"),
        (
            '<low value="20231101223000+0900"/>',
            '<low value="202311"/>',
            "C.1.4 effectiveTime/low '202311' is not a full date (YYYYMMDD…)",
        ),
        (
            'code="3" codeSystem="2.16.840.1.113883.3.989.2.1.1.13"',
            'code="9" codeSystem="2.16.840.1.113883.3.989.2.1.1.13"',
            "G.k.1 drug role code '9' is not one of 1-4",
        ),
        (
            '<administrativeGenderCode nullFlavor="MSK"/>',
            '<administrativeGenderCode code="F"/>',
            "D.5 sex code 'F' is not 1 (male) or 2 (female)",
        ),
        (
            'extension="JP-PMDA-2023-55501" ',
            "",
            "C.1.8.1 (investigationEvent/id with root 2.16.840.1.113883.3.989.2.1.3.2) is missing",
        ),
        (
            'code="10028813" codeSystem="2.16.840.1.113883.6.163"',
            'nullFlavor="UNK"',
            "E.i.2.1b reaction has no MedDRA code (value code None, code system None)",
        ),
        (
            'code="10028813"',
            'code="1002881"',
            "E.i.2.1b MedDRA code '1002881' is not 8 digits",
        ),
    ],
)
def test_unreadable_elements_become_error_records(tmp_path, old, new, error):
    (record,) = read_e2b([_variant(tmp_path, old, new)])
    assert record.payload is None
    assert record.location == "variant.xml:message 1 (C.1.1 JP-CONSUMER-0009)"
    assert record.error == error


def test_a_reaction_with_a_code_and_no_text_is_valid(tmp_path):
    (record,) = read_e2b([_variant(tmp_path, ' displayName="Nausea"', "")])
    assert record.error is None
    assert record.payload["reactions"] == [{"llt_code": "10028813", "meddra_version": "26.1"}]
    (reaction,) = Report.model_validate(record.payload).reactions
    assert (reaction.event_key, reaction.label) == ("LLT:10028813", "LLT:10028813")


def test_the_department_is_not_the_sender_organisation(tmp_path):
    nested = '<assignedEntity classCode="ASSIGNED">\n                      <representedOrganization'
    path = _variant(
        tmp_path,
        nested,
        "<x>\n                      <representedOrganization",
        source="e2b_batch.xml",
    )
    text = path.read_text(encoding="utf-8").replace(
        "</assignedEntity>\n                  </repr", "</x>\n                  </repr", 1
    )
    path.write_text(text, encoding="utf-8")
    first = next(iter(read_e2b([path])))
    assert first.payload["sender"] == {"type": "health_professional"}  # not the department


def test_files_that_are_not_icsrs(tmp_path):
    broken = _variant(tmp_path, "</controlActProcess>", "</controlActProces>")
    (record,) = read_e2b([broken])
    assert record.location.startswith("variant.xml:") and record.location != "variant.xml:0"
    assert record.error.startswith("not well-formed XML: mismatched tag")
    other = tmp_path / "other.xml"
    other.write_text('<ClinicalDocument xmlns="urn:hl7-org:v3"/>')
    missing = tmp_path / "missing.xml"
    found = [(r.location, r.error) for r in read_e2b([other, missing])]
    assert found == [
        (
            "other.xml",
            "no PORR_IN049016UV ICSR message in other.xml "
            "(root element {urn:hl7-org:v3}ClinicalDocument)",
        ),
        (str(missing), f"no such file or directory: {missing}"),
    ]
