"""E2B(R3) acknowledgements compared, element by element, with the FDA's examples."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pvsignal.readers.e2b import BatchHeader, MessageHeader, read_e2b_batch
from pvsignal.readers.e2b_ack import IcsrResult, build_ack
from tests.pvsignal.readers.test_e2b_fda import _batch_of_three

FDA = Path(__file__).parents[2] / "data" / "e2b-fda"
H = {"h": "urn:hl7-org:v3"}
MESSAGE = "{urn:hl7-org:v3}MCCI_IN000002UV01"
XSI_SCHEMA = "{http://www.w3.org/2001/XMLSchema-instance}schemaLocation"
WHEN = dt.datetime(2026, 5, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
# Values that differ per acknowledgement; everything else (element paths, codes, code systems,
# id roots, type and class codes) must match the FDA example.
_VARYING = {"extension", "value", XSI_SCHEMA}


def _shape(element: ET.Element, path: str = "") -> list[tuple]:
    here = f"{path}/{element.tag.rpartition('}')[2]}"
    fixed = tuple(sorted((k, v) for k, v in element.attrib.items() if k not in _VARYING))
    varying = tuple(sorted(k for k in element.attrib if k in _VARYING and k != XSI_SCHEMA))
    shape = [(here, fixed, varying)]
    for child in element:
        shape += _shape(child, here)
    return shape


def _parts(document: bytes) -> tuple[list[tuple], list[list[tuple]]]:
    """The batch part's shape (messages left out) and each message's shape."""
    root = ET.fromstring(document)
    messages = [_shape(m) for m in root.iterfind("h:MCCI_IN000002UV01", H)]
    for message in root.findall("h:MCCI_IN000002UV01", H):
        root.remove(message)
    return _shape(root), messages


def _header(report_id: str = "US-APHARMA-8744554B") -> MessageHeader:
    return MessageHeader(
        "21ec1492-3aea-4069-a2ab-08002b30309d",
        "4567AB89012",
        "CDER",
        "20140714151617-0500",
        report_id,
    )


BATCH = BatchHeader(
    "FAERS2022Scenario1-4069-a2dd-08002b30309d", "4567AB89012", "ZZFDA", "20220614101010-0500"
)


@pytest.mark.parametrize(
    ("example", "accepted", "code"),
    [("R3ack-positive.ack", True, "CA"), ("R3ack-negative.ack", False, "CR")],
)
def test_a_one_icsr_ack_has_the_structure_of_the_fda_example(example, accepted, code):
    result = IcsrResult(_header(), accepted, None if accepted else "C.1.1 is missing")
    ack = build_ack(BATCH, [result], ack_id="R-1", created=WHEN)
    assert _parts(ack) == _parts((FDA / example).read_bytes())
    root = ET.fromstring(ack)
    assert root.find("h:MCCI_IN000002UV01/h:acknowledgement", H).get("typeCode") == code
    assert root.find("h:acknowledgement", H).get("typeCode") == ("AA" if accepted else "AE")


def test_a_batch_of_three_icsrs_is_answered_message_by_message():
    batch, found = read_e2b_batch(_batch_of_three(), "three.xml")
    results = [
        IcsrResult(header, accepted=index != 2, detail=None if index != 2 else "E.i: rejected")
        for index, (header, _) in enumerate(found)
    ]
    ack = build_ack(batch, results, ack_id="R-42", created=WHEN)
    shape, messages = _parts(ack)
    fda_shape, (refused,) = _parts((FDA / "R3ack-negative.ack").read_bytes())
    _, (loaded,) = _parts((FDA / "R3ack-positive.ack").read_bytes())
    assert shape == fda_shape  # AE, like the negative example
    assert messages == [loaded, loaded, refused]

    root = ET.fromstring(ack)
    assert root.find("h:id", H).attrib == {
        "extension": "R-42",
        "root": "2.16.840.1.113883.3.989.2.1.3.20",
    }
    assert root.find("h:creationTime", H).get("value") == "20260501093000+0800"
    assert root.find("h:acknowledgement", H).get("typeCode") == "AE"
    target = root.find("h:acknowledgement/h:targetBatch/h:id", H).get("extension")
    assert target == "FAERS2022Scenario1-4069-a2dd-08002b30309d"  # ACK.A.1 = N.1.2
    # Swapped: the ACK goes to the batch's sender (N.1.3) from its receiver (N.1.4).
    assert root.find("h:receiver/h:device/h:id", H).get("extension") == "4567AB89012"
    assert root.find("h:sender/h:device/h:id", H).get("extension") == "ZZFDA"
    sent = root.findall("h:attentionLine/h:value", H)[1].get("value")
    assert sent == "20220614101010-0500"  # ACK.A.3 = N.1.5
    answers = root.findall("h:MCCI_IN000002UV01", H)
    assert [a.find("h:acknowledgement", H).get("typeCode") for a in answers] == ["CA", "CA", "CR"]
    assert [a.find("h:sender/h:device/h:id", H).get("extension") for a in answers] == [
        "CDER",  # N.2.r.3 of each message
        "CDER_IND",
        "CDER",
    ]
    assert {a.find("h:receiver/h:device/h:id", H).get("extension") for a in answers} == {
        "4567AB89012"
    }
    texts = [a.find("h:acknowledgement/h:acknowledgementDetail/h:text", H).text for a in answers]
    assert texts == ["Report Loaded Successfully", "Report Loaded Successfully", "E.i: rejected"]
    target = answers[0].find("h:acknowledgement/h:targetMessage/h:id", H).attrib
    assert target == {
        "extension": "21ec1492-3aea-4069-a2ab-08002b30309d",  # ACK.B.r.1 = N.2.r.1
        "root": "2.16.840.1.113883.3.989.2.1.3.1",
    }


def test_an_unreadable_batch_is_rejected_whole():
    batch, found = read_e2b_batch(b"<MCCI_IN200100UV01 xmlns='urn:hl7-org:v3'><id", "bad.xml")
    results = [IcsrResult(header, False, record.error) for header, record in found]
    root = ET.fromstring(build_ack(batch, results, ack_id="R-7", created=WHEN))
    assert root.find("h:acknowledgement", H).get("typeCode") == "AR"
    assert root.findall("h:MCCI_IN000002UV01", H) == []
    detail = root.find("h:acknowledgement/h:acknowledgementDetail/h:text", H).text
    assert detail.startswith("not well-formed XML")
    assert root.find("h:acknowledgement/h:targetBatch/h:id", H).get("nullFlavor") == "NI"
