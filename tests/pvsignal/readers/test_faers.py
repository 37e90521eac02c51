"""FAERS reader: real quarterly samples, checked against the DRUG/REAC rows read independently."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from pvsignal.readers.faers import read_faers
from pvsignal.reports import Report


def _table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="$", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)


@pytest.fixture(scope="module")
def q3_dir(public_data: Path) -> Path:
    return public_data / "faers" / "ubesp_faers20q3_first10000"


@pytest.fixture(scope="module")
def q3_tables(q3_dir: Path) -> dict[str, pd.DataFrame]:
    return {name: _table(q3_dir / f"{name}20Q3-10000.txt") for name in ("DEMO", "DRUG", "REAC")}


@pytest.fixture(scope="module")
def q3_records(q3_dir: Path) -> dict[str, object]:
    return {r.location.split("=", 1)[1]: r for r in read_faers([q3_dir])}


def _by_id(records):
    return {r.payload["report_id"]: r.payload for r in records if r.payload is not None}


def test_one_record_per_demo_primaryid(q3_records, q3_tables):
    demo = q3_tables["DEMO"]
    assert len(q3_records) == demo["primaryid"].nunique() == len(demo)
    assert set(q3_records) == set(demo["primaryid"])
    assert all(r.error is None for r in q3_records.values())
    assert all(r.location.startswith("DEMO20Q3-10000.txt:primaryid=") for r in q3_records.values())


def test_complete_reports_match_drug_and_reac_rows(q3_records, q3_tables):
    demo, drug, reac = q3_tables["DEMO"], q3_tables["DRUG"], q3_tables["REAC"]
    complete = set(demo["primaryid"]) & set(drug["primaryid"]) & set(reac["primaryid"])
    assert len(complete) == 934
    roles = {"PS": "suspect", "SS": "suspect", "C": "concomitant", "I": "interacting"}
    drug = drug.assign(
        name=drug["prod_ai"].where(drug["prod_ai"] != "", drug["drugname"]),
        role=drug["role_cod"].map(roles),
    )
    expected_products = {
        pid: list(dict.fromkeys(zip(rows["name"], rows["role"], strict=True)))
        for pid, rows in drug[drug["primaryid"].isin(complete)].groupby("primaryid")
    }
    expected_pts = {
        pid: list(dict.fromkeys(rows["pt"]))
        for pid, rows in reac[reac["primaryid"].isin(complete)].groupby("primaryid")
    }
    for pid in complete:
        payload = q3_records[pid].payload
        got = [(p["name"], p["role"]) for p in payload["products"]]
        assert got == expected_products[pid], pid
        assert [r["pt"] for r in payload["reactions"]] == expected_pts[pid], pid
        Report.model_validate(payload)  # good source data gives a valid report


def test_incomplete_reports_are_kept_and_refused_by_the_model(q3_records, q3_tables):
    drug, reac = q3_tables["DRUG"], q3_tables["REAC"]
    lonely = set(q3_tables["DEMO"]["primaryid"]) - set(drug["primaryid"]) - set(reac["primaryid"])
    assert lonely
    payload = q3_records[sorted(lonely)[0]].payload
    assert payload["products"] == [] and payload["reactions"] == []
    with pytest.raises(ValidationError, match="needs products and reactions"):
        Report.model_validate(payload)


def test_hand_checked_report(q3_records):
    assert q3_records["100048208"].payload == {
        "case_id": "10004820",
        "report_id": "100048208",
        "version": 8,
        "received": "2020-08-25",
        "sender": {"type": "mah", "institution_id": "PFIZER"},
        "country": "US",
        "patient": {"sex": "F", "age_years": 68.0},
        # DRUG rows: PS and SS DILANTIN (PHENYTOIN), differing only in dose.
        "products": [{"name": "PHENYTOIN", "role": "suspect"}],
        "reactions": [{"pt": "Intestinal obstruction"}],
    }


@pytest.mark.parametrize(
    ("pid", "years"),
    [("103928075", 10.0), ("104808912", 1.25), ("103462342", 1 / 365.25)],  # DEC, MON, DY
)
def test_ages_are_converted_to_years(q3_records, pid, years):
    assert q3_records[pid].payload["patient"]["age_years"] == pytest.approx(years)


def test_roles_country_fallback_and_long_reports(q3_records):
    products = q3_records["100738424"].payload["products"]
    assert products == [
        {"name": "IBUPROFEN", "role": "suspect"},
        {"name": "IBUPROFEN", "role": "interacting"},
        {"name": "METFORMIN HYDROCHLORIDE", "role": "interacting"},
        {"name": "FLUCLOXACILLIN", "role": "suspect"},
        {"name": "APIXABAN", "role": "interacting"},
        {"name": "GENTAMICIN", "role": "suspect"},
    ]
    assert q3_records["100354871"].payload["country"] == "CA"  # occr_country blank
    assert q3_records["100292121"].payload["country"] == "KR"  # reporter "COUNTRY NOT SPECIFIED"
    # 212 DRUG rows, 109 distinct (name, role): within the wire format's 200 products.
    long = q3_records["1070483315"].payload
    assert len(long["products"]) == 109
    Report.model_validate(long)


def test_current_layout_sample_is_all_valid(public_data):
    folder = public_data / "faers" / "yunuuuu_sample" / "faers_ascii_2017q2"
    records = list(read_faers([folder]))
    assert len(records) == 100
    for record in records:
        Report.model_validate(record.payload)


def test_legacy_aers_layout(public_data):
    folder = public_data / "faers" / "yunuuuu_sample" / "aers_ascii_2004q1" / "ascii"
    files = [folder / f"{name}04Q1.TXT" for name in ("DEMO", "DRUG", "REAC")]
    reports = _by_id(read_faers(files))
    assert len(reports) == 100
    first = reports["4263742"]
    assert first["case_id"] == "4061110" and first["version"] == 1
    assert first["received"] == "2004-01-02" and first["patient"] == {"sex": "F", "age_years": 42.0}
    assert first["products"][0] == {"name": "TAVOR", "role": "suspect"}
    assert first["reactions"][:2] == [{"pt": "DIARRHOEA"}, {"pt": "INTENTIONAL OVERDOSE"}]
    assert "country" not in first  # AERS has no country columns
    assert reports["4272864"]["version"] == 3  # follow-up, foll_seq 2
    assert reports["4294079"]["patient"]["age_years"] == pytest.approx(0.75)  # 9 MON
    assert reports["4265584"]["sender"] == {"type": "health_professional"}  # DIR from an MD
    for payload in reports.values():
        Report.model_validate(payload)


DEMO_HEADER = (
    "primaryid$caseid$caseversion$i_f_code$event_dt$mfr_dt$init_fda_dt$fda_dt$rept_cod$auth_num$"
    "mfr_num$mfr_sndr$lit_ref$age$age_cod$age_grp$sex$e_sub$wt$wt_cod$rept_dt$to_mfr$occp_cod$"
    "reporter_country$occr_country"
)


def _demo(
    pid,
    *,
    version="1",
    fda_dt="20200901",
    age="30",
    age_cod="YR",
    rept="DIR",
    occp="CN",
    lit_ref="",
):
    fields = [
        pid,
        pid[:-1],
        version,
        "I",
        "",
        "",
        "20200101",
        fda_dt,
        rept,
        "",
        "",
        "",
        lit_ref,
        age,
        age_cod,
        "",
        "M",
        "Y",
        "",
        "",
        "20200901",
        "",
        occp,
        "FR",
        "",
    ]
    return "$".join(fields)


def _write_quarter(folder: Path, demo: list[str], drug: list[str], reac: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "demo20q4.txt").write_text("\n".join([DEMO_HEADER, *demo]) + "\n")
    (folder / "drug20q4.txt").write_text(
        "\n".join(["primaryid$caseid$drug_seq$role_cod$drugname$prod_ai", *drug]) + "\n"
    )
    (folder / "reac20q4.txt").write_text(
        "\n".join(["primaryid$caseid$pt$drug_rec_act", *reac]) + "\n"
    )


def test_problems_become_error_records(tmp_path):
    demo = [
        _demo("11"),
        _demo("21", fda_dt="2020090"),  # not a date
        _demo("31", age="45", age_cod=""),  # age without unit
        _demo("41", version="x"),
        _demo("51"),
        _demo("11"),  # repeated
        _demo("61", lit_ref="A broken$reference"),  # one field too many
        _demo("71", lit_ref="Split in two\nby a newline"),  # rejoined
    ]
    drug = [
        "11$1$1$PS$ASPIRIN$",
        "51$5$1$XX$ASPIRIN$ACETYLSALICYLIC ACID",
        "91$9$1$PS$X$",
        "71$7$1$C$Y$",
    ]
    reac = ["11$1$Headache$", "91$9$Rash$", "92$9$Rash$", "71$7$Rash$"]
    _write_quarter(tmp_path, demo, drug, reac)
    records = list(read_faers([tmp_path]))
    errors = {r.location: r.error for r in records if r.error}
    payloads = _by_id(records)
    assert set(payloads) == {"11", "71"}
    assert payloads["71"]["products"] == [{"name": "Y", "role": "concomitant"}]
    Report.model_validate(payloads["11"])
    assert (
        errors["demo20q4.txt:primaryid=21"] == "received: fda_dt '2020090' is not a YYYYMMDD date"
    )
    assert "age '45' has age_cod ''" in errors["demo20q4.txt:primaryid=31"]
    assert "caseversion 'x'" in errors["demo20q4.txt:primaryid=41"]
    assert "role_cod 'XX'" in errors["demo20q4.txt:primaryid=51"]
    assert (
        errors["demo20q4.txt:primaryid=11"]
        == "repeated DEMO row for primaryid 11; the first is read"
    )
    assert errors["demo20q4.txt:8"].startswith("line has 26 fields, the header has 25")
    assert errors["drug20q4.txt:primaryid=91"].startswith("no DEMO row for primaryid 91")
    assert errors["reac20q4.txt:primaryid=92"].startswith("no DEMO row for primaryid 92")
    assert len(records) == 10  # nothing dropped: 7 DEMO rows, 1 bad line, 2 orphan ids


def test_missing_table_and_latin1(tmp_path):
    folder = tmp_path / "q"
    _write_quarter(folder, [_demo("11")], ["11$1$1$PS$CAFÉ$"], ["11$1$Headache$"])
    (folder / "drug20q4.txt").write_bytes(
        "primaryid$caseid$drug_seq$role_cod$drugname$prod_ai\n11$1$1$PS$CAFÉ$\n".encode("latin-1")
    )
    (folder / "reac20q4.txt").unlink()
    records = list(read_faers([folder, tmp_path / "absent"]))
    errors = [r.error for r in records if r.error]
    assert any(e.startswith("no REAC file for this quarter") for e in errors)
    assert any(e.startswith("no such file or directory") for e in errors)
    (payload,) = [r.payload for r in records if r.payload]
    assert payload["products"] == [{"name": "CAFÉ", "role": "suspect"}]
    assert payload["reactions"] == []
