"""VAERS reader: the 2019 and 2020 files, checked against an independent pandas reading."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pvsignal.readers.vaers import read_vaers
from pvsignal.reports import Report

SYMPTOMS = [f"SYMPTOM{i}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def vaers_dir(public_data: Path) -> Path:
    return public_data / "vaers"


@pytest.fixture(scope="module")
def records(vaers_dir: Path) -> list:
    return list(read_vaers([vaers_dir]))


def _expected(folder: Path, year: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Distinct vaccine types and PTs per id, read with pandas (11 columns kept)."""
    symptoms = pd.read_csv(
        folder / f"{year}VAERSSYMPTOMS.csv",
        dtype=str,
        keep_default_na=False,
        encoding="latin-1",
        usecols=range(11),
    )
    vax = pd.read_csv(
        folder / f"{year}VAERSVAX.csv", dtype=str, keep_default_na=False, encoding="latin-1"
    )
    # Row by row, SYMPTOM1..5 in order: the reading order of the file.
    long = (
        symptoms.melt(id_vars="VAERS_ID", value_vars=SYMPTOMS, value_name="pt", ignore_index=False)
        .reset_index()
        .sort_values(["index", "variable"])
    )
    long = long[long["pt"].str.strip() != ""].drop_duplicates(["VAERS_ID", "pt"])
    vax = vax[vax["VAX_TYPE"] != ""].drop_duplicates(["VAERS_ID", "VAX_TYPE"])
    return (
        vax.groupby("VAERS_ID", sort=False)["VAX_TYPE"].apply(list).to_dict(),
        long.groupby("VAERS_ID", sort=False)["pt"].apply(list).to_dict(),
    )


def _payloads(records, year: str) -> dict[str, dict]:
    return {
        r.payload["report_id"]: r.payload
        for r in records
        if r.payload is not None and r.location.startswith(f"{year}VAERS")
    }


def test_2020_reports_match_the_files(records, vaers_dir):
    vaccines, pts = _expected(vaers_dir, "2020")
    payloads = _payloads(records, "2020")
    both = vaccines.keys() & pts.keys()
    assert len(payloads) == len(both) == 43_588  # the data's README: 43,588 reports
    assert len({v for types in vaccines.values() for v in types}) == 60
    assert len({p for terms in pts.values() for p in terms}) == 3_975
    for vaers_id, payload in payloads.items():
        assert payload["case_id"] == f"VAERS-{vaers_id}" and payload["version"] == 1
        assert payload["country"] == "US" and "received" not in payload
        assert [p["name"] for p in payload["products"]] == vaccines[vaers_id]
        assert {p["role"] for p in payload["products"]} == {"suspect"}
        assert [r["pt"] for r in payload["reactions"]] == pts[vaers_id]
    for payload in payloads.values():
        Report.model_validate(payload)


def test_2020_totals_seen_through_the_reader(records):
    payloads = _payloads(records, "2020").values()
    assert len({p["name"] for r in payloads for p in r["products"]}) == 60
    assert len({x["pt"] for r in payloads for x in r["reactions"]}) == 3_975
    assert not [r for r in records if r.error and r.location.startswith("2020")]


def test_2019_last_line_quoted_terms_and_continuation_rows(records, vaers_dir):
    vaccines, pts = _expected(vaers_dir, "2019")
    payloads = _payloads(records, "2019")
    # The last line ends with two extra commas; its 11 fields are read as any other line.
    assert payloads["833823"]["reactions"] == [
        {"pt": "Injection site bruising"},
        {"pt": "Injection site nodule"},
        {"pt": "Injection site oedema"},
        {"pt": "Injection site pain"},
        {"pt": "Ultrasound scan"},
    ]
    assert payloads["833823"]["products"] == [{"name": "FLU4", "role": "suspect"}]
    assert {"pt": "Hallucination, visual"} in payloads["794223"]["reactions"]  # quoted comma
    many = max(pts, key=lambda i: len(pts[i]))
    assert len(pts[many]) > 5  # a report continued on further rows
    assert [r["pt"] for r in payloads[many]["reactions"]] == pts[many]
    assert len(payloads) == len(vaccines.keys() & pts.keys())


def test_2019_vaccine_without_symptoms_is_an_error_record(records):
    errors = [r for r in records if r.error and r.location.startswith("2019")]
    assert [(r.location, r.error) for r in errors] == [
        (
            "2019VAERSVAX.csv:VAERS_ID=796081",
            "VAERS_ID 796081 (line 1815) has no row in 2019VAERSSYMPTOMS.csv",
        )
    ]


def test_bad_rows_and_non_domestic_files(tmp_path):
    header = "VAERS_ID," + ",".join(f"SYMPTOM{i},SYMPTOMVERSION{i}" for i in range(1, 6))
    (tmp_path / "NonDomesticVAERSSYMPTOMS.csv").write_text(
        f"{header}\n1,Pyrexia,26.0,,,,,,,,\n2,Rash,26.0,,,,,,,,,oops\n3,Rash\n,Rash,26.0,,,,,,,,\n"
    )
    (tmp_path / "NonDomesticVAERSVAX.csv").write_text(
        "VAERS_ID,VAX_TYPE,VAX_MANU,VAX_LOT,VAX_DOSE_SERIES,VAX_ROUTE,VAX_SITE,VAX_NAME\n"
        "1,HPV9,MERCK & CO. INC.,X1,1,IM,LA,HPV (GARDASIL 9)\n1,HPV9,MERCK,X2,2,IM,LA,HPV\n"
    )
    found = list(
        read_vaers(
            [tmp_path / "NonDomesticVAERSSYMPTOMS.csv", tmp_path / "NonDomesticVAERSVAX.csv"]
        )
    )
    errors = {r.location: r.error for r in found if r.error}
    assert errors == {
        "NonDomesticVAERSSYMPTOMS.csv:3": "row has 12 fields, the header has 11: "
        "'2,Rash,26.0,,,,,,,,,oops'",
        "NonDomesticVAERSSYMPTOMS.csv:4": "row has 2 fields, the header has 11: '3,Rash'",
        "NonDomesticVAERSSYMPTOMS.csv:5": "VAERS_ID is empty",
    }
    (payload,) = [r.payload for r in found if r.payload]
    assert payload == {
        "case_id": "VAERS-1",
        "report_id": "1",
        "version": 1,
        "products": [{"name": "HPV9", "role": "suspect"}],
        "reactions": [{"pt": "Pyrexia"}],
    }  # no country: not a US year file
    Report.model_validate(payload)
