"""`pvsignal meddra load|versions`, `pvsignal terms unmapped` and the level in exports."""

from __future__ import annotations

import json

import orjson

from pvsignal.cli import main
from pvsignal.store import open_store
from tests.support.meddra import write_release

REPORTS = [
    {"pt": "Rash"},
    {"pt": "RASH"},
    {"pt": "Queasiness"},  # an LLT of the newer release only
    {"pt": "Made-up reaction"},
    {"llt_code": "90002003"},  # "Skin rash", an LLT of Rash
]


def _ingest(tmp_path, url: str) -> None:
    lines = [
        json.dumps(
            {
                "case_id": f"C{i}",
                "report_id": f"R{i}",
                "version": 1,
                "products": [{"name": "alpha"}],
                "reactions": [reaction],
            }
        )
        for i, reaction in enumerate(REPORTS)
    ]
    (tmp_path / "reports.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["ingest", str(tmp_path / "reports.jsonl"), "--store", url]) == 0


def _events(url: str) -> dict[str, int]:
    with open_store(url) as store:
        counts = store.scope_counts("all")
    return {str(e): int(a) for e, a in zip(counts.pair_event, counts.a, strict=True)}


def test_loading_meddra_recounts_and_lists_what_stays_unmapped(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/store.db"
    _ingest(tmp_path, url)
    # Without MedDRA: spellings of one text are one term; codes count as codes.
    assert _events(url) == {
        "Rash": 2,
        "Queasiness": 1,
        "Made-up reaction": 1,
        "LLT:90002003": 1,
    }
    capsys.readouterr()
    assert main(["meddra", "load", str(write_release(tmp_path / "v26")), "--store", url]) == 0
    out = capsys.readouterr().out
    assert "loaded MedDRA 26.0 (en: 10 llt, 5 pt, 5 hlt, 4 hlgt, 4 soc, 3 smq)" in out
    assert "recounted 5 cases under MedDRA 26.0" in out
    assert _events(url) == {"Rash": 3, "unmapped:queasiness": 1, "unmapped:made up reaction": 1}
    assert main(["terms", "unmapped", "--store", url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "unmapped:made up reaction\t1",
        "unmapped:queasiness\t1",
    ]
    newer = write_release(tmp_path / "v27", version="27.0", newer=True)
    assert main(["meddra", "load", str(newer), "--store", url]) == 0
    assert "recounted 5 cases under MedDRA 27.0" in capsys.readouterr().out
    assert _events(url) == {"Rash": 3, "Nausea": 1, "unmapped:made up reaction": 1}
    assert main(["meddra", "versions", "--store", url]) == 0
    listed = [line.split("\t")[:2] for line in capsys.readouterr().out.splitlines()]
    assert listed == [["  26.0", "en"], ["* 27.0", "en"]]
    with open_store(url) as store:
        audited = [(e["action"], e["object_id"]) for e in store.audit_chain()]
    assert audited == [("meddra.load", "26.0/en"), ("meddra.load", "27.0/en")]


def test_an_export_names_its_scopes_level(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/store.db"
    assert main(["meddra", "load", str(write_release(tmp_path / "v26")), "--store", url]) == 0
    config = tmp_path / "scopes.yaml"
    config.write_text("scopes:\n  - {name: socs, level: soc, paths: all}\n")
    lines = [
        json.dumps(
            {
                "case_id": f"C{i}",
                "report_id": f"R{i}",
                "version": 1,
                "products": [{"name": "alpha" if i % 2 else "beta"}],
                "reactions": [{"pt": "Stevens-Johnson syndrome"}],
            }
        )
        for i in range(6)
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    ingest = ["ingest", str(tmp_path / "r.jsonl"), "--store", url, "--scope-config", str(config)]
    assert main([*ingest, "--detect", "off"]) == 0
    out = tmp_path / "socs.json"
    export = ["signals", "export", "--store", url, "--scope", "socs", "--format", "json"]
    assert main([*export, "--theta", "0.5,0.3,3,2.5,0.2", "--out", str(out)]) == 0
    document = orjson.loads(out.read_bytes())
    assert document["level"] == "soc"
    assert sorted((p["product"], p["event"], p["a"]) for p in document["pairs"]) == [
        ("unregistered:alpha", "Immune system disorders", 3),
        ("unregistered:alpha", "Skin and subcutaneous tissue disorders", 3),
        ("unregistered:beta", "Immune system disorders", 3),
        ("unregistered:beta", "Skin and subcutaneous tissue disorders", 3),
    ]
    assert "(event level soc)" in capsys.readouterr().err


def test_a_bad_release_stops_the_command_naming_the_file(tmp_path, capsys):
    folder = write_release(tmp_path / "v26")
    (folder / "mdhier.asc").unlink()
    url = f"sqlite:///{tmp_path}/store.db"
    assert main(["meddra", "load", str(folder), "--store", url]) == 2
    assert "has no mdhier.asc" in capsys.readouterr().err
    with open_store(url) as store:
        assert store.meddra_releases() == []
