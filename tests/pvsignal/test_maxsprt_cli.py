"""`pvsignal maxsprt cv`: R's CV.Poisson and Performance.Poisson figures, and clear refusals."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pvsignal.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_cv_prints_the_published_critical_value(capsys):
    # Sequential's example: CV.Poisson(SampleSize=10, D=0, M=3, alpha=0.05) = 3.06424796686384.
    assert main(["maxsprt", "cv", "--length", "10", "--min-events", "3", "--alpha", "0.05"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["critical value: 3.0642479669", "alpha: 0.0500000000 (nominal 0.05)"]


def test_power_prints_performance_poisson_figures(capsys):
    # Sequential's example: Performance.Poisson(10, D=0, M=3, cv, RR=2) = 0.7329625, 4.071636,
    # 5.654732.
    argv = ["maxsprt", "cv", "--length", "10", "--min-events", "3", "--power", "--rr", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "power at rate ratio 2: 0.7329625\n" in out
    assert "expected time to signal: 4.071636 expected events\n" in out
    assert "expected length of surveillance: 5.654732 expected events\n" in out


def test_an_unreachable_alpha_names_the_options_and_the_shortest_length(capsys):
    assert main(["maxsprt", "cv", "--length", "1", "--min-events", "6"]) == 2
    err = capsys.readouterr().err
    assert "--length/--min-events/--alpha" in err
    assert "length must be at least 2.61301" in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--length", "0", "argument --length: must be a finite number > 0, got '0'"),
        ("--alpha", "0.7", r"argument --alpha: must lie in (0, 0.5], got '0.7'"),
        ("--min-events", "0", "argument --min-events: must be at least 1, got '0'"),
    ],
)
def test_bad_options_are_refused_by_name(capsys, option, value, message):
    argv = {"--length": "10", "--min-events": "1", "--alpha": "0.05", option: value}
    with pytest.raises(SystemExit) as exit_:
        main(["maxsprt", "cv", *(part for pair in argv.items() for part in pair)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_command_runs_as_a_program():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "pvsignal.cli", "maxsprt", "cv", "--length", "10"]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    # CV.Poisson(SampleSize=10, alpha=0.05) = 3.467952 (Sequential's documented example).
    assert done.stdout.startswith("critical value: 3.4679515803\n")
