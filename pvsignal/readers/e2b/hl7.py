"""HL7 v3 vocabulary of the ICH E2B(R3) ICSR message: namespaces, OIDs and small finders."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

NS = {"h": "urn:hl7-org:v3"}
MESSAGE = "{urn:hl7-org:v3}PORR_IN049016UV"
BATCH = "{urn:hl7-org:v3}MCCI_IN200100UV01"

# Identifier roots (ICH E2B(R3) implementation guide, appendix of OIDs).
REPORT_ID = "2.16.840.1.113883.3.989.2.1.3.1"  # C.1.1 (and N.2.r.1 on the message)
CASE_ID = "2.16.840.1.113883.3.989.2.1.3.2"  # C.1.8.1 (and C.1.10.r)
OTHER_CASE_ID = "2.16.840.1.113883.3.989.2.1.3.3"  # C.1.9.1.r.2
AUTHORISATION = "2.16.840.1.113883.3.989.2.1.3.4"  # G.k.3.1

# Code systems.
OBSERVATION = "2.16.840.1.113883.3.989.2.1.1.19"
CHARACTERISTIC = "2.16.840.1.113883.3.989.2.1.1.23"
ORGANIZER = "2.16.840.1.113883.3.989.2.1.1.20"
SENDER_TYPE = "2.16.840.1.113883.3.989.2.1.1.7"
SOURCE = "2.16.840.1.113883.3.989.2.1.1.22"
QUALIFICATION = "2.16.840.1.113883.3.989.2.1.1.6"
DRUG_ROLE = "2.16.840.1.113883.3.989.2.1.1.13"
MEDDRA = "2.16.840.1.113883.6.163"


class UnreadableError(ValueError):
    """A report element whose value E2B(R3) does not allow: names the element and the value."""


def find(parent: ET.Element | None, path: str) -> ET.Element | None:
    return None if parent is None else parent.find(path, NS)


def attr(parent: ET.Element | None, path: str, name: str) -> str | None:
    """The stripped attribute of the element at path ('.' for parent itself), or None if empty."""
    element = find(parent, path)
    value = None if element is None else (element.get(name) or "").strip()
    return value or None


def text(element: ET.Element | None) -> str | None:
    value = None if element is None else (element.text or "").strip()
    return value or None


def identifier(parent: ET.Element, root: str) -> str | None:
    """The extension of the child id with this root."""
    return attr(parent, f"h:id[@root='{root}']", "extension")


def coded(parent: ET.Element, path: str, code: str, system: str) -> list[ET.Element]:
    """The elements at path whose ``code`` child has this code in this code system.

    The code system is always checked: regional elements reuse code numbers in their own systems.
    """
    test = f"h:code[@code='{code}'][@codeSystem='{system}']"
    return [found for found in parent.iterfind(path, NS) if found.find(test, NS) is not None]


def value_code(element: ET.Element | None) -> str | None:
    return attr(element, "h:value", "code")


def date(value: str, element: str) -> str:
    """The date of an HL7 timestamp (YYYYMMDD[hhmmss][+zzzz]) as ISO YYYY-MM-DD."""
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(\d*)([.+-].*)?", value.strip())
    try:
        if match is None:
            raise ValueError
        return dt.date(*(int(part) for part in match.group(1, 2, 3))).isoformat()
    except ValueError:
        raise UnreadableError(f"{element} {value!r} is not a full date (YYYYMMDD…)") from None


def stamp_number(value: str) -> int:
    """YYYYMMDD[hhmm[ss]][.fff][+zzzz] -> the number YYYYMMDDhhmmss (missing digits are 0)."""
    digits = re.match(r"\d*", value.strip())
    return int((digits.group(0) if digits else "")[:14].ljust(14, "0"))
