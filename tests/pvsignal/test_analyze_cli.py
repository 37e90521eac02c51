"""`pvsignal analyze` end to end: counting, columns, the fit file, rejects and clear errors."""

import json

import numpy as np
import pandas as pd
import pytest

from detectors.mgps import Hyperparameters, posterior
from pvsignal.cli import main
from pvsignal.scoring import EXPORT_COLUMNS

# openEBGM vignette "rawDataProcessing": 17 reports.
VAR1 = list("BABAAAAAAAABBBBBC")
VAR2 = list("11211122122212121")
THETA = "3.25379356,0.39988854,2.02612692,1.90807970,0.06534557"


def _write(tmp_path, rows, name="cases.csv", sep=","):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False, sep=sep)
    return path


def _example(tmp_path, extra=()):
    rows = [
        {"id": i + 1, "drug": p, "pt": e} for i, (p, e) in enumerate(zip(VAR1, VAR2, strict=True))
    ]
    return _write(tmp_path, rows + list(extra))


def _analyze_public(cases, out):
    """Analyze a public data table with the openEBGM column names (id, var1, var2)."""
    return _analyze(cases, out, product="var1", event="var2")


def _analyze(cases, out, *extra, product="drug", event="pt"):
    argv = ["analyze", str(cases), "--id-col", "id", "--product-col", product]
    return main([*argv, "--event-col", event, "--out", str(out), *extra])


def test_openebgm_example_counts_and_columns(tmp_path):
    # A repeated row and a repeated report-product must not change any count.
    cases = _example(tmp_path, extra=[{"id": 2, "drug": "A", "pt": "1"}])
    out = tmp_path / "pairs.csv"
    assert _analyze(cases, out, "--theta", THETA) == 0
    text = out.read_text()
    assert text.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    pairs = pd.read_csv(out, dtype={"event": str}).set_index(["product", "event"])
    expected = {
        ("A", "1"): (5, 4.7647059, 1.11),
        ("A", "2"): (4, 4.2352941, 0.89),
        ("B", "1"): (3, 3.7058824, 0.71),
        ("B", "2"): (4, 3.2941176, 1.43),
        ("C", "1"): (1, 0.5294118, 2.00),
    }
    assert len(pairs) == 5
    for key, (a, e, prr) in expected.items():
        row = pairs.loc[key]
        assert row["a"] == a and row["n_total"] == 17
        assert row["expected"] == pytest.approx(e, abs=5e-8)
        assert row["prr"] == pytest.approx(prr, abs=0.005)
    assert set(pairs["signal_prr"]) <= {True, False}
    assert "true" in text or "false" in text


def test_given_theta_is_used_and_recorded(tmp_path):
    cases, out = _example(tmp_path), tmp_path / "pairs.csv"
    assert _analyze(cases, out, "--theta", THETA) == 0
    fit = json.loads((tmp_path / "pairs.fit.json").read_text())
    assert fit["theta_source"] == "given"
    assert fit["theta"]["alpha1"] == pytest.approx(3.25379356)
    pairs = pd.read_csv(out, dtype={"event": str})
    theta = Hyperparameters(*map(float, THETA.split(",")))
    direct = posterior(pairs["a"], pairs["expected"], theta)
    np.testing.assert_allclose(pairs["ebgm"], direct.ebgm, rtol=1e-15)
    np.testing.assert_allclose(pairs["eb05"], direct.lower, rtol=1e-15)


def test_rows_without_product_are_rejected_with_line_and_reason(tmp_path, capsys):
    cases = _example(tmp_path, extra=[{"id": 18, "drug": "", "pt": "1"}])
    out = tmp_path / "pairs.csv"
    assert _analyze(cases, out, "--theta", THETA) == 0
    rejects = pd.read_csv(tmp_path / "pairs.rejects.csv", dtype=str, keep_default_na=False)
    assert rejects.to_dict("records") == [
        {"line": "19", "id": "18", "drug": "", "pt": "1", "reason": "empty 'drug'"}
    ]
    assert "rejected 1 rows" in capsys.readouterr().out
    assert pd.read_csv(out)["n_total"].iloc[0] == 17


def test_unicode_product_names_survive(tmp_path):
    rows = [
        {"id": i, "drug": "度普利尤单抗" if i % 2 else "Dupixent", "pt": "结膜炎"}
        for i in range(1, 9)
    ] + [{"id": 9, "drug": "Other", "pt": "Rash"}]
    out = tmp_path / "pairs.csv"
    assert _analyze(_write(tmp_path, rows), out, "--theta", THETA) == 0
    pairs = pd.read_csv(out)
    assert set(pairs["product"]) == {"度普利尤单抗", "Dupixent", "Other"}


def test_stratified_expected_counts(tmp_path):
    rows = [
        {"id": 1, "drug": "A", "pt": "x", "sex": "F"},
        {"id": 2, "drug": "A", "pt": "y", "sex": "F"},
        {"id": 3, "drug": "B", "pt": "x", "sex": "F"},
        {"id": 4, "drug": "A", "pt": "x", "sex": "M"},
        {"id": 5, "drug": "B", "pt": "y", "sex": "M"},
        {"id": 6, "drug": "B", "pt": "y", "sex": "M"},
    ]
    out = tmp_path / "pairs.csv"
    assert _analyze(_write(tmp_path, rows), out, "--theta", THETA, "--strata-col", "sex") == 0
    pairs = pd.read_csv(out).set_index(["product", "event"])
    # A-x: F has nA=2, nx=2, N=3; M has nA=1, nx=1, N=3 -> 4/3 + 1/3.
    assert pairs.loc[("A", "x"), "expected"] == pytest.approx(2 * 2 / 3 + 1 * 1 / 3)
    # PRR and friends still use the unstratified margins.
    assert pairs.loc[("A", "x"), "n_product"] == 3


def test_conflicting_strata_of_a_report_are_rejected(tmp_path):
    rows = [
        {"id": 1, "drug": "A", "pt": "x", "sex": "F"},
        {"id": 1, "drug": "A", "pt": "y", "sex": "M"},
        {"id": 2, "drug": "B", "pt": "x", "sex": "F"},
    ]
    out = tmp_path / "pairs.csv"
    assert _analyze(_write(tmp_path, rows), out, "--theta", THETA, "--strata-col", "sex") == 0
    rejects = pd.read_csv(tmp_path / "pairs.rejects.csv")
    assert rejects["line"].tolist() == [2, 3]
    assert rejects["reason"].str.contains("conflicting values of 'sex'").all()


def test_other_delimiters(tmp_path):
    rows = [
        {"id": i + 1, "drug": p, "pt": e} for i, (p, e) in enumerate(zip(VAR1, VAR2, strict=True))
    ]
    out = tmp_path / "pairs.csv"
    assert _analyze(_write(tmp_path, rows, sep="$"), out, "--theta", THETA, "--sep", "$") == 0
    assert len(pd.read_csv(out)) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--theta", "1,2,3"], "--theta must be five comma-separated numbers"),
        (["--theta", "1,2,x,4,0.5"], "--theta alpha2 is not a number: 'x'"),
        (["--theta", "1,2,3,4,1.5"], "theta.p must lie strictly between 0 and 1, got 1.5"),
        (["--product-col", "var1"], "has no column 'var1' (--product-col)"),
    ],
)
def test_bad_options_are_clear_errors(tmp_path, capsys, args, message):
    assert _analyze(_example(tmp_path), tmp_path / "p.csv", *args) == 2
    assert message in capsys.readouterr().err


def test_missing_and_unreadable_files_are_named(tmp_path, capsys):
    assert _analyze(tmp_path / "nope.csv", tmp_path / "p.csv") == 2
    assert "nope.csv' does not exist" in capsys.readouterr().err
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,drug,pt\n1,caf\xe9,x\n".encode("latin-1"))
    assert _analyze(latin, tmp_path / "p.csv") == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_caers_end_to_end(public_data, tmp_path):
    out = tmp_path / "caers.csv"
    assert _analyze_public(str(public_data / "caers" / "caers.csv"), out) == 0
    fit = json.loads((tmp_path / "caers.fit.json").read_text())
    assert fit["neg_log_likelihood"] <= 4162.456 + 0.001
    assert fit["counts"]["reports"] == 3356 and fit["counts"]["pairs"] == 17189
    assert fit["counts"]["products"] == 2874 and fit["counts"]["events"] == 1328
    pairs = pd.read_csv(out)
    assert len(pairs) == 17189
    assert (pairs["eb05"] <= pairs["ebgm"]).all() and (pairs["ebgm"] <= pairs["eb95"]).all()


def test_rule_thresholds_are_configurable(tmp_path):
    cases, out = _example(tmp_path), tmp_path / "pairs.csv"
    assert _analyze(cases, out, "--theta", THETA, "--rule", "ic.min_lower=-10") == 0
    assert pd.read_csv(out)["signal_ic"].all()
    fit = json.loads((tmp_path / "pairs.fit.json").read_text())
    assert fit["config"]["ic_rule"] == {"min_lower": -10.0}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("xyz.min_a=3", "unknown measure 'xyz'"),
        (
            "prr.min_b=3",
            "prr has no threshold 'min_b'; its thresholds are min_prr, min_chi2, min_a",
        ),
        ("ror.min_a=three", "'three' is not a valid int"),
    ],
)
def test_bad_rules_are_named(tmp_path, capsys, rule, message):
    assert _analyze(_example(tmp_path), tmp_path / "p.csv", "--rule", rule) == 2
    assert message in capsys.readouterr().err


def test_fit_on_a_bound_warns_on_stderr(public_data, tmp_path, capsys):
    out = tmp_path / "vaers.csv"
    cases = public_data / "derived" / "vaers2020.csv"
    assert _analyze_public(str(cases), out) == 0
    assert (
        "warning: MGPS fit: theta sits on a bound of the search (alpha1)" in capsys.readouterr().err
    )
    fit = json.loads((tmp_path / "vaers.fit.json").read_text())
    assert fit["on_bound"] == ["alpha1"] and fit["counts"]["reports"] == 43588
