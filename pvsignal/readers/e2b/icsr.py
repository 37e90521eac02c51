"""One ICSR (``investigationEvent``) as a wire-format report dict; paths in the package notes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from pvsignal.readers.e2b.hl7 import (
    AUTHORISATION,
    CASE_ID,
    CHARACTERISTIC,
    DRUG_ROLE,
    MEDDRA,
    NS,
    OBSERVATION,
    ORGANIZER,
    OTHER_CASE_ID,
    QUALIFICATION,
    REPORT_ID,
    SENDER_TYPE,
    SOURCE,
    UnreadableError,
    attr,
    coded,
    date,
    find,
    identifier,
    stamp_number,
    text,
    value_code,
)

_SENDERS = {
    "1": "mah",
    "2": "regulator",
    "3": "health_professional",
    "4": "regulator",  # regional pharmacovigilance centre
    "5": "other",  # WHO collaborating centre
    "6": "other",
    "7": "patient",
}
_REPORT_TYPES = {"1": "spontaneous", "2": "study", "3": "other", "4": "not_available"}
_QUALIFICATIONS = {
    "1": "physician",
    "2": "pharmacist",
    "3": "other_health_professional",
    "4": "lawyer",
    "5": "consumer",
}
_AGE_GROUPS = {
    "0": "foetus",
    "1": "neonate",
    "2": "infant",
    "3": "child",
    "4": "adolescent",
    "5": "adult",
    "6": "elderly",
}
_ROLES = {"1": "suspect", "2": "concomitant", "3": "interacting", "4": "not_administered"}
_SEXES = {"1": "M", "2": "F"}
_OUTCOMES = {
    "0": "unknown",
    "1": "recovered",
    "2": "recovering",
    "3": "not_recovered",
    "4": "recovered_with_sequelae",
    "5": "fatal",
}
# D.2.2b age units (UCUM) in years; a week and a day on the Julian year (365.25 days).
_AGE_YEARS = {
    "{decade}": 10.0,
    "a": 1.0,
    "mo": 1 / 12,
    "wk": 7 / 365.25,
    "d": 1 / 365.25,
    "h": 1 / 8766,
}
# E.i.3.2a-f observation codes.
_SERIOUSNESS = {
    "34": "death",
    "21": "life_threatening",
    "33": "hospitalisation",
    "35": "disabling",
    "12": "congenital_anomaly",
    "26": "other_medically_important",
}
_RELATED = "h:outboundRelationship2/h:observation"


def report_of(event: ET.Element, created: str | None = None) -> dict[str, Any]:
    """The wire-format report of one investigationEvent; ``created`` is C.1.2 (from the
    enclosing controlActProcess).

    Raises
    ------
    UnreadableError
        For a value E2B(R3) does not allow, naming the element and the value.
    """
    report = _identification(event, created)
    assessment = find(event, "h:component/h:adverseEventAssessment")
    role = find(assessment, "h:subject1/h:primaryRole")
    reactions = [] if role is None else coded(role, "h:subjectOf2/h:observation", "29", OBSERVATION)
    report.update(_primary_source(event, reactions))
    sender = _sender(event)
    if sender is not None:
        report["sender"] = sender
    report["patient"] = {} if role is None else _patient(role)
    report["products"] = [] if role is None or assessment is None else _products(role, assessment)
    report["reactions"] = [_reaction(observation) for observation in reactions]
    return report


def _identification(event: ET.Element, created: str | None) -> dict[str, Any]:
    """C.1: ids, dates and version, report type, nullification / amendment, other and linked ids."""
    report_id, case_id = identifier(event, REPORT_ID), identifier(event, CASE_ID)
    if report_id is None:
        raise UnreadableError(f"C.1.1 (investigationEvent/id with root {REPORT_ID}) is missing")
    if case_id is None:
        raise UnreadableError(f"C.1.8.1 (investigationEvent/id with root {CASE_ID}) is missing")
    report: dict[str, Any] = {"case_id": case_id, "report_id": report_id, "version": 1}
    if created is not None:
        report["created"] = date(created, "C.1.2 controlActProcess/effectiveTime")
    first = attr(event, "h:effectiveTime/h:low", "value")
    if first is not None:
        report["first_received"] = date(first, "C.1.4 effectiveTime/low")
    # Version: C.1.5 as YYYYMMDDhhmmss (see the package notes); C.1.4 stands in.
    latest = attr(event, "h:availabilityTime", "value")
    stamp = latest or first
    if stamp is not None:
        element = "C.1.5 availabilityTime" if latest else "C.1.4 effectiveTime/low"
        report["received"] = date(stamp, element)
        report["version"] = stamp_number(stamp)
    report.update(_characteristics(event))
    others = _other_case_ids(event)
    if others:
        report["other_case_ids"] = others
        report["duplicate_of_ids"] = [other["case_id"] for other in others]
    linked = _linked_report_ids(event)
    if linked:
        report["linked_report_ids"] = linked
    mah = _regional(event, "C.1.CN.3")
    if mah is not None:
        report["mah_id"] = mah
    return report


def _characteristic(event: ET.Element, code: str) -> ET.Element | None:
    found = coded(event, "h:subjectOf2/h:investigationCharacteristic", code, CHARACTERISTIC)
    return found[0] if found else None


def _characteristics(event: ET.Element) -> dict[str, Any]:
    """C.1.3 type of report, C.1.11.1 nullification / amendment and C.1.11.2 its reason."""
    found: dict[str, Any] = {"nullified": False}
    kind = value_code(_characteristic(event, "1"))
    if kind is not None:
        if kind not in _REPORT_TYPES:
            raise UnreadableError(f"C.1.3 type of report code {kind!r} is not one of 1-4")
        found["report_type"] = _REPORT_TYPES[kind]
    change = value_code(_characteristic(event, "3"))
    if change is not None:
        if change not in ("1", "2"):
            raise UnreadableError(f"C.1.11.1 nullification/amendment code {change!r} is not 1 or 2")
        found["nullified"] = change == "1"
        if change == "2":
            found["amended"] = True
    reason = _characteristic(event, "4")
    value = find(reason, "h:value")
    said = text(find(value, "h:originalText")) or text(value)
    if said is not None:
        found["change_reason"] = said
    return found


def _other_case_ids(event: ET.Element) -> list[dict[str, str]]:
    """C.1.9.1.r: the case id (r.2) with its source (r.1, the assigning authority)."""
    found = []
    for element in event.iterfind(
        f"h:subjectOf1/h:controlActEvent/h:id[@root='{OTHER_CASE_ID}']", NS
    ):
        case_id = (element.get("extension") or "").strip()
        source = (element.get("assigningAuthorityName") or "").strip()
        if case_id:
            found.append({"source": source, "case_id": case_id} if source else {"case_id": case_id})
    return found


def _linked_report_ids(event: ET.Element) -> list[str]:
    """C.1.10.r: related investigations without a C.1.8.2 / C.2 code (they carry a nullFlavor)."""
    found = []
    for related in event.iterfind("h:outboundRelationship/h:relatedInvestigation", NS):
        if attr(related, "h:code", "codeSystem") == SOURCE:
            continue  # C.1.8.2 first sender or C.2.r primary source
        linked = find(related, "h:subjectOf2/h:controlActEvent")
        value = None if linked is None else identifier(linked, CASE_ID)
        if value is not None:
            found.append(value)
    return found


def _regional(event: ET.Element, code: str) -> str | None:
    """A regional element carried as ``component/observationEvent`` with the element number as
    its code (China's C.1.CN.x); the code system is the region's own, so only the code is matched.
    """
    for observation in event.iterfind("h:component/h:observationEvent", NS):
        if attr(observation, "h:code", "code") == code:
            value = find(observation, "h:value")
            return attr(value, ".", "code") or attr(value, ".", "extension") or text(value)
    return None


def _primary_source(event: ET.Element, reactions: list[ET.Element]) -> dict[str, str]:
    """C.2.r.3 country and C.2.r.4 qualification of the primary source for regulatory purposes
    (priorityNumber 1, else the first); the country falls back to E.i.9 of the first reaction."""
    sources = []
    for link in event.iterfind("h:outboundRelationship", NS):
        if coded(link, "h:relatedInvestigation", "2", SOURCE):
            first = attr(link, "h:priorityNumber", "value") == "1"
            sources.insert(0 if first else len(sources), link)
    person = (
        "h:relatedInvestigation/h:subjectOf2/h:controlActEvent/h:author/h:assignedEntity/"
        "h:assignedPerson"
    )
    found: dict[str, str] = {}
    chosen = find(sources[0], person) if sources else None
    qualification = attr(
        chosen, f"h:asQualifiedEntity/h:code[@codeSystem='{QUALIFICATION}']", "code"
    )
    if qualification is not None:
        if qualification not in _QUALIFICATIONS:
            raise UnreadableError(f"C.2.r.4 qualification code {qualification!r} is not one of 1-5")
        found["reporter_qualification"] = _QUALIFICATIONS[qualification]
    places = [
        attr(find(link, person), "h:asLocatedEntity/h:location/h:code", "code") for link in sources
    ]
    place = "h:location/h:locatedEntity/h:locatedPlace/h:code"
    places += [attr(reaction, place, "code") for reaction in reactions[:1]]
    for code in places:
        if code is not None and re.fullmatch(r"[A-Z]{2}", code.upper()):
            found["country"] = code.upper()
            break
    return found


def _sender(event: ET.Element) -> dict[str, str] | None:
    """C.3.1 type and C.3.2 organisation. C.3.2 is nested inside the department (C.3.3.1):
    ``representedOrganization/assignedEntity/representedOrganization/name``."""
    entity = find(event, "h:subjectOf1/h:controlActEvent/h:author/h:assignedEntity")
    code = attr(entity, f"h:code[@codeSystem='{SENDER_TYPE}']", "code")
    if code is None:
        return None
    if code not in _SENDERS:
        raise UnreadableError(f"C.3.1 sender type {code!r} is not one of 1-7")
    sender = {"type": _SENDERS[code]}
    organisation = text(
        find(entity, "h:representedOrganization/h:assignedEntity/h:representedOrganization/h:name")
    )
    if organisation is not None:
        sender["institution_id"] = organisation
    return sender


def _patient(role: ET.Element) -> dict[str, Any]:
    """D.2.2 age (number and unit, and in years), D.2.3 age group, D.5 sex."""
    patient: dict[str, Any] = {}
    ages = coded(role, "h:subjectOf2/h:observation", "3", OBSERVATION)
    value = find(ages[0], "h:value") if ages else None
    number = attr(value, ".", "value")
    if number is not None:
        unit = attr(value, ".", "unit") or ""
        try:
            amount = float(number)
        except ValueError:
            raise UnreadableError(f"D.2.2a age {number!r} is not a number") from None
        if unit not in _AGE_YEARS:
            raise UnreadableError(
                f"D.2.2b age unit {unit!r} (age {number}) is not one of {', '.join(_AGE_YEARS)}"
            )
        patient.update(age_years=amount * _AGE_YEARS[unit], age_value=amount, age_unit=unit)
    groups = coded(role, "h:subjectOf2/h:observation", "4", OBSERVATION)
    group = value_code(groups[0]) if groups else None
    if group is not None:
        if group not in _AGE_GROUPS:
            raise UnreadableError(f"D.2.3 age group code {group!r} is not one of 0-6")
        patient["age_group"] = _AGE_GROUPS[group]
    gender = find(role, "h:player1/h:administrativeGenderCode")
    if gender is not None:
        code = gender.get("code")
        if code in _SEXES:
            patient["sex"] = _SEXES[code]
        elif code is None and gender.get("nullFlavor"):
            patient["sex"] = "U"
        else:
            raise UnreadableError(f"D.5 sex code {code!r} is not 1 (male) or 2 (female)")
    return patient


def _products(role: ET.Element, assessment: ET.Element) -> list[dict[str, Any]]:
    """G.k drugs (organizer code 4), each followed by the devices it names (FDA combination
    products: ``kindOfProduct/part/partProduct``), which take the drug's role."""
    roles = _roles(assessment)
    products = []
    for drug in coded(role, "h:subjectOf2/h:organizer", "4", ORGANIZER):
        for given in drug.iterfind("h:component/h:substanceAdministration", NS):
            kind = find(given, "h:consumable/h:instanceOfKind/h:kindOfProduct")
            key = attr(given, "h:id", "root")
            product = {**_drug(kind), "role": roles.get(key, "suspect") if key else "suspect"}
            products.append(product)
            for device in [] if kind is None else kind.iterfind("h:part/h:partProduct", NS):
                name = text(find(device, "h:name"))
                if name is not None and device.get("classCode") == "DEV":
                    products.append({"name": name, "role": product["role"], "kind": "device"})
    return products


def _drug(kind: ET.Element | None) -> dict[str, Any]:
    """G.k.2.1 identifier (MPID / PhPID, or a regional code such as an NDC) with its code
    system, G.k.2.2 name, G.k.3.1 authorisation number and G.k.3.3 holder."""
    product: dict[str, Any] = {}
    code = attr(kind, "h:code", "code")
    if code is not None:
        product["product_id"] = code
        system = attr(kind, "h:code", "codeSystem")
        if system is not None:
            product["id_system"] = system
    name = text(find(kind, "h:name"))
    if name is not None:
        product["name"] = name
    approval = find(kind, "h:asManufacturedProduct/h:subjectOf/h:approval")
    number = attr(approval, f"h:id[@root='{AUTHORISATION}']", "extension")
    if number is not None:
        product["authorisation_number"] = number
    holder = text(find(approval, "h:holder/h:role/h:playingOrganization/h:name"))
    if holder is not None:
        product["holder"] = holder
    return product


def _roles(assessment: ET.Element) -> dict[str, str]:
    """G.k.1 per substanceAdministration id. Only the ICH code system counts: the FDA reuses
    observation code 20 with its own values (e.g. "similar device")."""
    roles = {}
    for found in coded(assessment, "h:component/h:causalityAssessment", "20", OBSERVATION):
        value = find(found, "h:value")
        if attr(value, ".", "codeSystem") not in (DRUG_ROLE, None):
            continue
        code = attr(value, ".", "code")
        if code not in _ROLES:
            raise UnreadableError(f"G.k.1 drug role code {code!r} is not one of 1-4")
        target = attr(found, "h:subject2/h:productUseReference/h:id", "root")
        if target is not None:
            roles[target] = _ROLES[code]
    return roles


def _reaction(observation: ET.Element) -> dict[str, Any]:
    """E.i: the MedDRA code is the reaction; E.i.1.1a/b and E.i.1.2 texts ride along."""
    value = find(observation, "h:value")
    code = attr(value, ".", "code")
    if code is None or attr(value, ".", "codeSystem") != MEDDRA:
        raise UnreadableError(
            f"E.i.2.1b reaction has no MedDRA code (value code {code!r}, code system "
            f"{attr(value, '.', 'codeSystem')!r})"
        )
    if not re.fullmatch(r"\d{8}", code):
        raise UnreadableError(f"E.i.2.1b MedDRA code {code!r} is not 8 digits")
    reaction: dict[str, Any] = {"llt_code": code}
    texts = {
        "meddra_version": attr(value, ".", "codeSystemVersion"),
        "llt": attr(value, ".", "displayName"),
        "reported_text": text(find(value, "h:originalText")),
        "reported_language": attr(value, "h:originalText", "language"),
    }
    translated = coded(observation, _RELATED, "30", OBSERVATION)
    texts["translation_text"] = text(find(translated[0], "h:value")) if translated else None
    reaction.update({key: found for key, found in texts.items() if found is not None})
    reaction.update(_seriousness(observation))
    outcomes = coded(observation, _RELATED, "27", OBSERVATION)
    outcome = value_code(outcomes[0]) if outcomes else None
    if outcome is not None:
        if outcome not in _OUTCOMES:
            raise UnreadableError(f"E.i.7 outcome code {outcome!r} is not one of 0-5")
        reaction["outcome"] = _OUTCOMES[outcome]
    return reaction


def _seriousness(observation: ET.Element) -> dict[str, Any]:
    """E.i.3.2a-f: each criterion is true or a nullFlavor; serious if any is true, not serious
    if some are given and none is true, unknown (absent) if none is given."""
    given, true = False, []
    for code, name in _SERIOUSNESS.items():
        for criterion in coded(observation, _RELATED, code, OBSERVATION):
            given = True
            if attr(criterion, "h:value", "value") == "true":
                true.append(name)
    if not given:
        return {}
    return {"serious": bool(true), "seriousness": true} if true else {"serious": False}
