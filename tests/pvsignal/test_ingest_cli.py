"""`pvsignal ingest` and `pvsignal signals export` end to end, against `pvsignal analyze`."""

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from pvsignal.cli import main
from pvsignal.reports import Report
from pvsignal.scopes import stratum_of

PRODUCTS = [f"drug-{i}" for i in range(12)]
EVENTS = [f"Event {i}" for i in range(15)]
# The same prior on both sides: the comparison is of counts and scoring, not of two fits.
THETA = "0.5,0.3,3.0,2.5,0.2"


def _reports(count, seed=3):
    rng = random.Random(seed)
    for i in range(count):
        yield {
            "case_id": f"C{i}",
            "report_id": f"R{i}",
            "version": 1,
            "received": f"202{rng.randint(4, 5)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            "patient": {
                "age_years": rng.choice([None, 12, 33, 50, 70, 80]),
                "sex": rng.choice([None, "F", "M"]),
            },
            "products": [
                {"name": rng.choice(PRODUCTS[: 3 + i % 10]), "role": "suspect"}
                for _ in range(rng.randint(1, 3))
            ]
            + [{"name": "concomitant-only", "role": "concomitant"}],
            "reactions": [
                {"pt": rng.choice(EVENTS[: 2 + i % 14])} for _ in range(rng.randint(1, 3))
            ],
        }


def _case_table(reports):
    rows = []
    for raw in reports:
        report = Report.model_validate(raw)
        for product in report.products:
            if product.role.value != "suspect":
                continue
            for reaction in report.reactions:
                rows.append(
                    {
                        "id": report.case_id,
                        "product": "unregistered:" + product.name,
                        "event": reaction.pt,
                        "stratum": stratum_of(report),
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def ingested(tmp_path):
    reports = list(_reports(400))
    path = tmp_path / "reports.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in reports) + "\n")
    url = f"sqlite:///{tmp_path}/store.db"
    assert main(["ingest", str(path), "--store", url]) == 0
    return reports, url


@pytest.mark.parametrize("stratify", [True, False])
def test_export_equals_analyze_of_the_same_cases(tmp_path, ingested, stratify):
    reports, url = ingested
    _case_table(reports).to_csv(tmp_path / "cases.csv", index=False)
    scope_config = tmp_path / "scopes.yaml"
    scope_config.write_text(f"stratify: {str(stratify).lower()}\n")
    export = ["signals", "export", "--store", url, "--scope-config", str(scope_config)]
    assert main([*export, "--out", str(tmp_path / "export.csv"), "--theta", THETA]) == 0
    columns = ["--id-col", "id", "--product-col", "product", "--event-col", "event"]
    strata = ["--strata-col", "stratum"] if stratify else []
    analyze = ["analyze", str(tmp_path / "cases.csv"), *columns, *strata]
    assert main([*analyze, "--out", str(tmp_path / "analyze.csv"), "--theta", THETA]) == 0
    exported = pd.read_csv(tmp_path / "export.csv").sort_values(["product", "event"])
    analyzed = pd.read_csv(tmp_path / "analyze.csv").sort_values(["product", "event"])
    assert len(exported) == len(analyzed) > 50
    pd.testing.assert_frame_equal(
        exported.reset_index(drop=True),
        analyzed.reset_index(drop=True),
        check_exact=False,
        rtol=1e-9,
    )


def _line(case_id, report_id, version=1, pt="Rash", **extra):
    body = {"products": [{"name": "x"}], "reactions": [{"pt": pt}]}
    return json.dumps(
        {"case_id": case_id, "report_id": report_id, "version": version, **body, **extra}
    )


def test_ingest_summary_and_rejects(tmp_path, capsys):
    lines = [
        _line("A", "1"),
        _line("A", "2", version=2, pt="Itch"),
        "{broken",
        _line("B", "3", received="2026-13-01"),
        json.dumps({"case_id": "A", "report_id": "4", "version": 3, "nullified": True}),
        _line("A", "5", version=4),
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["ingest", str(path), "--store", url]) == 0
    out = capsys.readouterr().out
    assert "received 6 records" in out
    assert "new cases 1, follow-ups applied 1" in out
    assert "nullified 1" in out and "refused (versions of withdrawn cases) 1" in out
    assert "rejected 2" in out
    assert main(["rejects", "--store", url]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "r.jsonl:3\t(record)" in listing[0]
    assert "r.jsonl:4\treceived\t'2026-13-01'" in listing[1]
    assert "r.jsonl:6\tcase_id\t'A'\tcase 'A' was nullified" in listing[2]


def test_export_of_an_unknown_scope_is_a_clear_error(ingested, capsys):
    _, url = ingested
    assert main(["signals", "export", "--store", url, "--scope", "hainan"]) == 2
    assert "scope 'hainan' has no counted pairs (scopes with data: all)" in capsys.readouterr().err


def test_json_export(tmp_path, ingested):
    _, url = ingested
    out = tmp_path / "export.json"
    assert (
        main(
            [
                "signals",
                "export",
                "--store",
                url,
                "--format",
                "json",
                "--out",
                str(out),
                "--theta",
                "1,1,2,2,0.1",
            ]
        )
        == 0
    )
    document = json.loads(out.read_text())
    assert document["scope"] == "all" and document["fit"]["theta_source"] == "given"
    assert {"product", "event", "ebgm", "signal_prr"} <= set(document["pairs"][0])


def test_scopes_and_registry(tmp_path, capsys):
    registry = tmp_path / "products.yaml"
    registry.write_text(
        "- {product_id: P-1, names: [dupilumab, 度普利尤单抗], kind: biologic,"
        " pathway: lecheng_special_import, mah_id: M1}\n"
        "- {product_id: D-1, names: [stent-x], kind: device, pathway: gba_hkmacao_connect,"
        " mah_id: M2}\n"
    )
    scopes = tmp_path / "scopes.yaml"
    scopes.write_text(
        "scopes:\n"
        "  - {name: hainan, filter: {regions: [CN-HI]}}\n"
        "  - {name: devices, filter: {product_kinds: [device]}}\n"
    )
    reports = [
        {
            "case_id": "1",
            "report_id": "1",
            "region": "CN-HI",
            "products": [{"name": "ＤＵＰＩＬＵＭＡＢ"}, {"name": "stent-x"}],
            "reactions": [{"pt": "Rash"}],
        },
        {
            "case_id": "2",
            "report_id": "2",
            "region": "CN-GD",
            "products": [{"name": "度普利尤单抗"}],
            "reactions": [{"pt": "Rash"}],
        },
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in reports) + "\n")
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["products", "load", str(registry), "--store", url]) == 0
    assert main(["ingest", str(path), "--store", url, "--scope-config", str(scopes)]) == 0
    exports = {}
    for scope in ("all", "hainan", "devices"):
        out = tmp_path / f"{scope}.csv"
        assert (
            main(
                [
                    "signals",
                    "export",
                    "--store",
                    url,
                    "--scope",
                    scope,
                    "--out",
                    str(out),
                    "--theta",
                    "1,1,2,2,0.1",
                ]
            )
            == 0
        )
        exports[scope] = pd.read_csv(out)
    assert dict(zip(exports["all"]["product"], exports["all"]["a"], strict=True)) == {
        "D-1": 1,
        "P-1": 2,
    }
    assert set(exports["hainan"]["product"]) == {"D-1", "P-1"}
    assert exports["hainan"]["n_total"].iloc[0] == 1
    assert exports["devices"]["product"].tolist() == ["D-1"]


def _write_reports(path, reports):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in reports) + "\n")
    return path


def _export(url, scope="all"):
    return main(["signals", "export", "--store", url, "--scope", scope, "--theta", THETA])


def test_scope_changes_need_a_rebuild_and_products_load_recounts(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    reports = _write_reports(
        tmp_path / "r.jsonl",
        [
            {
                "case_id": "1",
                "report_id": "1",
                "region": "CN-HI",
                "products": [{"name": "Dupixent"}],
                "reactions": [{"pt": "Rash"}],
            },
            {
                "case_id": "2",
                "report_id": "2",
                "region": "CN-GD",
                "products": [{"name": "度普利尤单抗"}],
                "reactions": [{"pt": "Rash"}],
            },
        ],
    )
    assert main(["ingest", str(reports), "--store", url]) == 0
    scopes = tmp_path / "scopes.yaml"
    scopes.write_text("scopes:\n  - {name: hainan, filter: {regions: [CN-HI]}}\n")
    assert main(["ingest", str(reports), "--store", url, "--scope-config", str(scopes)]) == 2
    assert "run `pvsignal rebuild --scope-config" in capsys.readouterr().err
    assert main(["rebuild", "--store", url, "--scope-config", str(scopes)]) == 0
    assert "recounted 2 cases into scopes all, hainan" in capsys.readouterr().out
    assert _export(url, "hainan") == 0
    assert "unregistered:dupixent" in capsys.readouterr().out
    # Registering the product makes both names one product: the counts follow at once.
    registry = tmp_path / "products.yaml"
    registry.write_text(
        "- {product_id: P-1, names: [Dupixent, 度普利尤单抗], kind: biologic,"
        " pathway: conventional, mah_id: M1}\n"
    )
    assert main(["products", "load", str(registry), "--store", url]) == 0
    assert "recounted 2 cases" in capsys.readouterr().out
    assert _export(url) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith('"P-1","Rash",2,2,2,2,')


def test_ingest_tells_the_format_from_the_file(tmp_path, capsys):
    data = Path(__file__).parent / "readers" / "data"
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["ingest", str(data / "e2b_batch.xml"), "--store", url]) == 0
    assert "rejected 0" in capsys.readouterr().out
    # No suffix: the content tells (an XML declaration, a JSON object).
    (tmp_path / "upload").write_bytes((data / "e2b_single.xml").read_bytes())
    (tmp_path / "feed").write_text(_line("J", "1") + "\n")
    for name in ("upload", "feed"):
        assert main(["ingest", str(tmp_path / name), "--store", url]) == 0
        assert "new cases 1" in capsys.readouterr().out


def test_ingest_of_mixed_or_unknown_formats_asks_for_format(tmp_path, capsys):
    data = Path(__file__).parent / "readers" / "data"
    url = f"sqlite:///{tmp_path}/s.db"
    (tmp_path / "r.jsonl").write_text(_line("J", "1") + "\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    assert main(["ingest", str(data / "e2b_single.xml"), str(tmp_path / "r.jsonl")]) == 2
    assert "different formats" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "notes.txt"), "--store", url]) == 2
    err = capsys.readouterr().err
    assert "cannot tell the format of" in err and "notes.txt" in err and "--format" in err


def test_an_ingest_whose_every_record_is_rejected_fails(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text("{broken\n" + json.dumps({"case_id": "A"}) + "\n")
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["ingest", str(path), "--store", url]) == 1
    captured = capsys.readouterr()
    assert "rejected 2" in captured.out
    assert "all 2 records were rejected" in captured.err


def test_version_is_the_installed_one(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"pvsignal {version('pvsignal')}"
