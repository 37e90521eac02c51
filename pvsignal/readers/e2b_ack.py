"""ICH E2B(R3) acknowledgement (``MCCI_IN200101UV01``) of a received ICSR batch.

The structure follows the FDA's acknowledgement examples (``R3ack-positive.ack``,
``R3ack-negative.ack``): the batch part answers N.1 (ACK.M, ACK.A), one ``MCCI_IN000002UV01``
per ICSR answers N.2.r (ACK.B.r). Senders and receivers are swapped: the acknowledgement goes
back to whoever sent the batch and each message.

Codes: ACK.A.4 is AA when every ICSR was accepted, AE when some were rejected, AR when the batch
itself could not be read (refused, not well-formed, no ICSR); ACK.B.r.6 is CA (accepted) or CR
(rejected), with the reason in ACK.B.r.7.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from pvsignal.readers.e2b import BatchHeader, MessageHeader

__all__ = ["IcsrResult", "build_ack"]

_HL7 = "urn:hl7-org:v3"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_OID = "2.16.840.1.113883.3.989.2.1.3."  # identifier roots, ICH E2B(R3) appendix
_KEYWORDS = "2.16.840.1.113883.3.989.2.1.1.24"
_INTERACTION = "2.16.840.1.113883.1.6"
_BATCH_TEXT = {
    "AA": "message successfully processed, no further action",
    "AE": "some ICSR message(s) need further action",
}


@dataclass(frozen=True, slots=True)
class IcsrResult:
    """What became of one ICSR of the batch."""

    header: MessageHeader  # as read_e2b_batch gave it
    accepted: bool
    detail: str | None = None  # ACK.B.r.7 error / warning message or comment
    local_report_id: str | None = None  # ACK.B.r.2 the receiver's number for the report


def build_ack(
    batch: BatchHeader,
    results: Sequence[IcsrResult],
    *,
    ack_id: str,
    created: dt.datetime | None = None,
    batch_error: str | None = None,
) -> bytes:
    """The acknowledgement of a batch, as UTF-8 XML.

    Parameters
    ----------
    batch
        The batch header read with the ICSRs (all None for a message sent without a batch).
    results
        One per ICSR, in batch order. A result whose header is empty (a whole-document error
        from the reader) is no ICSR: it makes the batch AR and its detail becomes ACK.A.5.
    ack_id
        ACK.M.1 acknowledgement batch number and ACK.A.2 local message number (a receipt id).
    created
        ACK.M.4 date of the acknowledgement; now (UTC) if None.
    batch_error
        Why the whole batch was refused (ACK.A.5): makes the batch AR.
    """
    when = _timestamp(created or dt.datetime.now(dt.UTC))
    icsrs = [result for result in results if result.header != MessageHeader()]
    errors = [r.detail or "unreadable" for r in results if r.header == MessageHeader()]
    if batch_error is not None:
        errors.insert(0, batch_error)
    if errors or not icsrs:
        code, detail = "AR", "; ".join(errors) or "no ICSR message in the batch"
    else:
        code = "AA" if all(result.accepted for result in icsrs) else "AE"
        detail = _BATCH_TEXT[code]
    # Namespaces written as attributes: ElementTree cannot put unprefixed attributes beside a
    # default namespace, and the HL7 attributes are unprefixed.
    root = ET.Element(
        "MCCI_IN200101UV01", {"xmlns": _HL7, "xmlns:xsi": _XSI, "ITSVersion": "XML_1.0"}
    )
    _id(root, "20", ack_id)  # ACK.M.1
    ET.SubElement(root, _tag("creationTime"), _value(when))  # ACK.M.4
    ET.SubElement(root, _tag("responseModeCode"), {"code": "D"})
    ET.SubElement(root, _tag("interactionId"), _interaction("MCCI_IN200101UV01"))
    for number, result in enumerate(icsrs, start=1):
        root.append(_message(result, when, result.local_report_id or f"{ack_id}-{number}"))
    _device(root, "receiver", "18", batch.sender_id)  # ACK.M.3
    _device(root, "sender", "17", batch.receiver_id)  # ACK.M.2
    _attention(root, "2", "acknowledgementLocalMessageNumber", _ii("21", ack_id))  # ACK.A.2
    _attention(root, "3", "dateOfIcsrBatchTransmission", _ts(batch.created))  # ACK.A.3
    answer = ET.SubElement(root, _tag("acknowledgement"), {"typeCode": code})  # ACK.A.4
    _id(ET.SubElement(answer, _tag("targetBatch")), "22", batch.batch_id)  # ACK.A.1
    _detail(answer, detail)  # ACK.A.5
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _message(result: IcsrResult, when: str, local_id: str) -> ET.Element:
    """One MCCI_IN000002UV01: the acknowledgement of one ICSR message (ACK.B.r)."""
    header = result.header
    message = ET.Element(_tag("MCCI_IN000002UV01"))
    _id(message, "19", local_id)  # ACK.B.r.2
    ET.SubElement(message, _tag("creationTime"), _value(when))
    ET.SubElement(message, _tag("interactionId"), _interaction("MCCI_IN000002UV01"))
    ET.SubElement(message, _tag("processingCode"), {"code": "P"})
    ET.SubElement(message, _tag("processingModeCode"), {"code": "T"})
    ET.SubElement(message, _tag("acceptAckCode"), {"code": "NE"})
    _device(message, "receiver", "16", header.sender_id)  # ACK.B.r.3
    _device(message, "sender", "15", header.receiver_id)  # ACK.B.r.4
    _attention(message, "1", "dateOfIcsrMessageCreation", _ts(header.created))  # ACK.B.r.5
    code = "CA" if result.accepted else "CR"
    answer = ET.SubElement(message, _tag("acknowledgement"), {"typeCode": code})  # ACK.B.r.6
    # ACK.B.r.1 is the ICSR message number (N.2.r.1); C.1.1 stands in when it was not sent.
    _id(ET.SubElement(answer, _tag("targetMessage")), "1", header.message_id or header.report_id)
    text = result.detail or ("Report Loaded Successfully" if result.accepted else "rejected")
    _detail(answer, text)  # ACK.B.r.7
    return message


def _tag(name: str) -> str:
    return name  # in the default namespace declared on the root


def _timestamp(when: dt.datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S%z")


def _value(stamp: str) -> dict[str, str]:
    return {"value": stamp}


def _interaction(name: str) -> dict[str, str]:
    return {"extension": name, "root": _INTERACTION}


def _id(parent: ET.Element, root: str, extension: str | None) -> None:
    given = {"extension": extension} if extension else {"nullFlavor": "NI"}
    ET.SubElement(parent, _tag("id"), {**given, "root": _OID + root})


def _device(parent: ET.Element, role: str, root: str, extension: str | None) -> None:
    typed = ET.SubElement(parent, _tag(role), {"typeCode": "RCV" if role == "receiver" else "SND"})
    device = ET.SubElement(
        typed, _tag("device"), {"classCode": "DEV", "determinerCode": "INSTANCE"}
    )
    _id(device, root, extension)


def _ii(root: str, extension: str) -> dict[str, str]:
    return {"extension": extension, "root": _OID + root, "xsi:type": "II"}


def _ts(stamp: str | None) -> dict[str, str]:
    given = {"value": stamp} if stamp else {"nullFlavor": "NI"}
    return {**given, "xsi:type": "TS"}


def _attention(parent: ET.Element, code: str, name: str, value: dict[str, str]) -> None:
    line = ET.SubElement(parent, _tag("attentionLine"))
    keyword = {
        "code": code,
        "codeSystem": _KEYWORDS,
        "codeSystemVersion": "1.0",
        "displayName": name,
    }
    ET.SubElement(line, _tag("keyWordText"), keyword)
    ET.SubElement(line, _tag("value"), value)


def _detail(parent: ET.Element, text: str) -> None:
    detail = ET.SubElement(parent, _tag("acknowledgementDetail"))
    ET.SubElement(detail, _tag("text")).text = text
