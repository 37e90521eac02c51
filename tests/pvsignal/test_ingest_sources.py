"""Real public data through `pvsignal ingest`: FAERS and VAERS, checked independently."""

from pathlib import Path

import pandas as pd
import pytest

from pvsignal.cases import Status
from pvsignal.cli import main
from pvsignal.products import normalize_name
from pvsignal.store import open_store

THETA = "0.5,0.3,3.0,2.5,0.2"


def test_faers_counts_distinct_cases_at_their_latest_version(public_data, tmp_path, capsys):
    folder = public_data / "faers" / "ubesp_faers20q3_first10000"
    url = f"sqlite:///{tmp_path}/faers.db"
    assert main(["ingest", str(folder), "--format", "faers", "--store", url]) == 0
    assert "received 9999 records" in capsys.readouterr().out

    def table(name):
        return pd.read_csv(
            folder / f"{name}20Q3-10000.txt", sep="$", dtype=str, keep_default_na=False, quoting=3
        )

    demo, drug, reac = table("DEMO"), table("DRUG"), table("REAC")
    demo["caseversion"] = demo["caseversion"].astype(int)
    latest = demo.sort_values("caseversion").groupby("caseid").tail(1)
    suspect = set(drug.loc[drug["role_cod"].isin(["PS", "SS", "I"]), "primaryid"])
    counted = latest[
        latest["primaryid"].isin(suspect) & latest["primaryid"].isin(set(reac["primaryid"]))
    ]
    store = open_store(url)
    try:
        assert int(store.scope_counts("all").totals[1].sum()) == counted["caseid"].nunique() == 934
        assert store.count_cases() == {"active": 934}
        # Every other record is kept with its reason (the sample's tables were cut apart).
        assert store.count_rejects() == 9999 - 934
    finally:
        store.close()


@pytest.fixture(scope="module")
def vaers_store(public_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vaers")
    url = f"sqlite:///{folder}/vaers.db"
    files = [public_data / "vaers" / f"2020VAERS{kind}.csv" for kind in ("SYMPTOMS", "VAX")]
    assert main(["ingest", *map(str, files), "--format", "vaers", "--store", url]) == 0
    return url, folder


def test_vaers_equals_analyze_of_the_equivalent_case_table(public_data, vaers_store):
    url, folder = vaers_store
    assert (
        main(
            [
                "signals",
                "export",
                "--store",
                url,
                "--theta",
                THETA,
                "--out",
                str(folder / "export.csv"),
            ]
        )
        == 0
    )
    cases = public_data / "derived" / "vaers2020.csv"
    assert (
        main(
            [
                "analyze",
                str(cases),
                "--id-col",
                "id",
                "--product-col",
                "var1",
                "--event-col",
                "var2",
                "--theta",
                THETA,
                "--out",
                str(folder / "analyze.csv"),
            ]
        )
        == 0
    )
    exported = pd.read_csv(folder / "export.csv", keep_default_na=False, na_values=["nan"])
    analyzed = pd.read_csv(folder / "analyze.csv", keep_default_na=False, na_values=["nan"])
    analyzed["product"] = "unregistered:" + analyzed["product"].map(normalize_name)
    key = ["product", "event"]
    exported = exported.sort_values(key).reset_index(drop=True)
    analyzed = analyzed.sort_values(key).reset_index(drop=True)
    assert len(exported) == 23_119 and exported["n_total"].iloc[0] == 43_588
    pd.testing.assert_frame_equal(exported, analyzed, check_exact=False, rtol=1e-9)


def test_e2b_batch_and_hostile_xml_through_ingest(tmp_path, capsys):
    data = Path(__file__).parent / "readers" / "data"
    url = f"sqlite:///{tmp_path}/e2b.db"
    files = [data / "e2b_batch.xml", data / "billion_laughs.xml", data / "xxe.xml"]
    assert main(["ingest", *map(str, files), "--format", "e2b", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "rejected 2" in out  # the bomb and the XXE file, each refused whole
    store = open_store(url)
    try:
        reasons = [row["reason"] for row in store.rejects()]
        assert [r.split(":")[0] for r in reasons] == ["refused", "refused"]
        # The Boao hospital's report names the MAH's case as its duplicate: one organisation
        # never withdraws another's case, so the MAH's own nullification of it applies, and
        # since its owner withdrew it there is nothing left for a regulator to decide.
        mah = "Example Pharma (Hainan) Co., Ltd."
        assert store.case("CN-MAHX-2023-000777", mah).status is Status.nullified
        assert store.suspicions() == []
        assert store.count_cases() == {"active": 1, "nullified": 1, "duplicate": 1}
    finally:
        store.close()
