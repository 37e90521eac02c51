"""Malformed lines: the kinds, and how a report is broken into each.

Every kind fails ``Report.model_validate_json`` for a different, realistic reason (not JSON at
all, cut off, a missing or badly typed field, a field the schema refuses); ``_malform`` copies
the shared fragments it changes, never mutating them.
"""

from __future__ import annotations

import orjson

MALFORMED_KINDS = (
    "not_json",
    "truncated_json",
    "missing_case_id",
    "negative_age",
    "unknown_role",
    "bad_date",
    "region_not_iso",
    "unknown_field",
    "no_reactions",
    "bad_pt_code",
)

_BAD_ROLES = ("primary suspect", "Suspect", "co-suspect", "treatment")
_BAD_DATES = ("2025-13-01", "31/12/2025", "2025-02-30", "yesterday")
_BAD_REGIONS = ("Hainan", "cn-hi", "CN_GD", "广东省")


def _malform(report: dict, kind: int, aux: int) -> bytes:
    """The report broken in the given way; shared fragments are copied, never changed."""
    name = MALFORMED_KINDS[kind]
    report = dict(report)
    if name == "not_json":
        reaction = report["reactions"][0]["pt"]
        texts = (
            f"case_id={report['case_id']};pt={reaction}",
            f'<?xml version="1.0"?><ichicsr><safetyreportid>{report["report_id"]}</safetyreportid>',
            f"{report['case_id']},{report['received']},{reaction}",
            "HTTP/1.1 502 Bad Gateway",
        )
        return texts[aux % len(texts)].encode()
    if name == "truncated_json":
        text = orjson.dumps(report).decode()
        return text[: 1 + aux % (len(text) - 1)].encode()
    if name == "missing_case_id":
        del report["case_id"]
    elif name == "negative_age":
        report["patient"] = {**report["patient"], "age_years": -(1 + aux % 90)}
    elif name == "unknown_role":
        first = report["products"][0]
        role = _BAD_ROLES[aux % len(_BAD_ROLES)]
        report["products"] = [{**first, "role": role}, *report["products"][1:]]
    elif name == "bad_date":
        report["received"] = _BAD_DATES[aux % len(_BAD_DATES)]
    elif name == "region_not_iso":
        report["region"] = _BAD_REGIONS[aux % len(_BAD_REGIONS)]
    elif name == "unknown_field":
        report["patient_name"] = "张某某"  # E2B keeps patient identity out: the schema refuses it
    elif name == "no_reactions":
        report["reactions"] = []
    else:  # bad_pt_code
        first = report["reactions"][0]
        report["reactions"] = [
            {**first, "pt_code": "1002" + str(aux % 1000)},
            *report["reactions"][1:],
        ]
    return orjson.dumps(report)
