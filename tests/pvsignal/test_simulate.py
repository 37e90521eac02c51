"""The report simulator: valid wire format, recorded malformations, case versions, a usable
registry, heavy tails, planted signals that stand out, determinism and speed.

Expectations are recomputed here from the written files with an independent reading of the
case semantics (latest version per case id, minus nullified and superseded cases).
"""

import argparse
import datetime as dt
import json
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pandas as pd
import pytest
from pydantic import ValidationError

from pvsignal.errors import InputError
from pvsignal.products import Kind, Pathway, Registry, load_products, normalize_name
from pvsignal.reports import Product, Report
from pvsignal.simulate import (
    MALFORMED_KINDS,
    UNREGISTERED_NAMES,
    SimulationConfig,
    add_simulate_command,
    sidecar_paths,
    simulate,
    write_simulation,
)

SMALL = SimulationConfig(reports=3000, seed=7, malformed_rate=0.03)
LARGE = SimulationConfig(reports=40_000, seed=11)


class Written:
    """A simulation written to disk, read back."""

    def __init__(self, config: SimulationConfig, out: Path) -> None:
        self.config = config
        self.summary = write_simulation(config, out)
        self.raw = out.read_bytes().split(b"\n")
        assert self.raw.pop() == b"", "the file ends with a newline"
        products_path, signals_path, truth_path = sidecar_paths(out)
        self.products = load_products(products_path)
        self.registry = Registry(self.products)
        self.signals = json.loads(signals_path.read_text())
        self.truth = json.loads(truth_path.read_text())
        malformed = set(self.truth["malformed_lines"])
        self.reports = [
            orjson.loads(line) for number, line in enumerate(self.raw, 1) if number not in malformed
        ]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Written:
    return Written(SMALL, tmp_path_factory.mktemp("small") / "small.jsonl")


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Written:
    return Written(LARGE, tmp_path_factory.mktemp("large") / "large.jsonl")


def _owner(report: dict) -> str:
    return report["sender"].get("institution_id", "unattributed")


def _latest_live(reports: list[dict]) -> list[dict]:
    """The latest version of every case (owner, case id) neither nullified nor superseded as a
    duplicate by a case of the same owner (links across owners are only suspicions)."""
    latest: dict[tuple[str, str], dict] = {}
    superseded: set[tuple[str, str]] = set()
    for report in reports:
        superseded.update((_owner(report), d) for d in report.get("duplicate_of_ids", []))
        key = (_owner(report), report["case_id"])
        kept = latest.get(key)
        if kept is None or report["version"] > kept["version"]:
            latest[key] = report
    return [
        report
        for key, report in latest.items()
        if not report.get("nullified") and key not in superseded
    ]


def _mentions(written: Written) -> pd.DataFrame:
    """One row per live case x resolved product x PT, with the case's first received date."""
    first_received = {}
    for report in written.reports:
        day = report["received"]
        first_received[report["case_id"]] = min(day, first_received.get(report["case_id"], day))
    rows = []
    for report in _latest_live(written.reports):
        products = {
            written.registry.resolve(Product.model_validate(entry)).product_id
            for entry in report["products"]
        }
        for product in products:
            for reaction in report["reactions"]:
                rows.append((report["case_id"], product, reaction["pt"]))
    frame = pd.DataFrame(rows, columns=["case", "product", "pt"])
    frame["first"] = pd.to_datetime(frame["case"].map(first_received))
    return frame


# --- wire format --------------------------------------------------------------------------


def test_valid_lines_validate_and_recorded_malformed_lines_fail(small):
    failed = set()
    for number, line in enumerate(small.raw, 1):
        try:
            Report.model_validate_json(line)
        except ValidationError:
            failed.add(number)
    assert len(small.raw) == SMALL.reports
    assert failed == set(small.truth["malformed_lines"])
    assert len(failed) == small.truth["malformed"] == round(0.03 * SMALL.reports)
    by_kind = small.truth["malformed_by_kind"]
    assert set(by_kind) == set(MALFORMED_KINDS)
    assert all(count > 0 for count in by_kind.values()), by_kind
    assert sum(by_kind.values()) == len(failed)


def test_reports_use_the_wire_format_names_and_iso_dates(small):
    allowed = set(Report.model_fields)
    for report in small.reports:
        assert set(report) <= allowed
        dt.date.fromisoformat(report["received"])
        assert SMALL.start.isoformat() <= report["received"] <= SMALL.end.isoformat()
    senders = Counter(report["sender"]["type"] for report in small.reports)
    assert senders.most_common(1)[0][0] == "hospital" and senders["mah"] > 0
    countries = Counter(report["country"] for report in small.reports)
    assert countries["CN"] / len(small.reports) > 0.9
    regions = {report.get("region") for report in small.reports}
    assert {"CN-HI", "CN-GD", "CN-BJ", "CN-SH"} <= regions
    lecheng = [r for r in small.reports if r["sender"].get("institution_id", "").startswith("LC-")]
    assert lecheng and all(r["region"] == "CN-HI" for r in lecheng)


# --- case versions --------------------------------------------------------------------------


def test_counts_in_the_truth_match_the_file(small):
    truth, reports = small.truth, small.reports
    assert len(reports) == truth["valid_lines"] == SMALL.reports - truth["malformed"]
    assert len({r["case_id"] for r in reports}) == truth["cases"]
    valid = [line for n, line in enumerate(small.raw, 1) if n not in set(truth["malformed_lines"])]
    assert len(valid) - len(set(valid)) == truth["resends"]
    assert sum(bool(r.get("nullified")) for r in reports) == truth["nullifications"]
    assert sum(bool(r.get("duplicate_of_ids")) for r in reports) == truth["duplicates"]
    assert len(_latest_live(reports)) == truth["live_cases"]
    # Report ids: one per version, re-sends aside.
    versions = {(r["case_id"], r["version"]): r["report_id"] for r in reports}
    assert len(set(versions.values())) == len(versions) == len(set(valid))


def test_follow_up_rate(small, large):
    for written in (small, large):
        followed = {
            r["case_id"]
            for r in written.reports
            if r["version"] >= 2 and not r.get("nullified") and not r.get("duplicate_of_ids")
        }
        cases = {r["case_id"] for r in written.reports}
        assert len(followed) / len(cases) == pytest.approx(0.15, abs=0.005)
        third = {r["case_id"] for r in written.reports if r["version"] == 3 and "products" in r}
        assert 0 < len(third) < len(followed)


def test_versions_out_of_order_nullified_last_and_duplicates_superseded(large):
    reports = large.reports
    first_seen: dict[tuple[str, int], int] = {}
    for position, report in enumerate(reports):
        first_seen.setdefault((report["case_id"], report["version"]), position)
    out_of_order = sum(
        1 for (case, version), at in first_seen.items() if version == 2 and at < first_seen[case, 1]
    )
    assert out_of_order >= large.truth["out_of_order_cases"] > 0
    by_case = defaultdict(list)
    for report in reports:
        by_case[report["case_id"]].append(report)
    for versions in by_case.values():
        top = max(r["version"] for r in versions)
        assert {r["version"] for r in versions} == set(range(1, top + 1))
        nullified = [r for r in versions if r.get("nullified")]
        assert all(r["version"] == top for r in nullified)
        if nullified:
            case = versions[0]["case_id"]
            assert all(first_seen[case, v] < first_seen[case, top] for v in range(1, top))
    # A superseding version names a case seen before it, from another sender.
    seen = set()
    for report in reports:
        for other in report.get("duplicate_of_ids", []):
            assert other in seen and other != report["case_id"]
            assert by_case[other][0]["sender"] != report["sender"]
        seen.add(report["case_id"])


def test_follow_ups_change_reactions_and_products(large):
    changes = Counter()
    by_version = {(r["case_id"], r["version"]): r for r in large.reports if "products" in r}
    for (case, version), later in by_version.items():
        earlier = by_version.get((case, version - 1))
        if version != 2 or earlier is None or later.get("duplicate_of_ids"):
            continue
        before = [x["pt"] for x in earlier["reactions"]]
        after = [x["pt"] for x in later["reactions"]]
        changes["added reaction"] += len(after) == len(before) + 1 and after[:-1] == before
        changes["corrected pt"] += before[1:] == after[1:] and before[0] != after[0]
        changes["added product"] += len(later["products"]) == len(earlier["products"]) + 1
        changes["age given"] += "age_years" in later["patient"] and not earlier["patient"].get(
            "age_years"
        )
    assert all(changes[kind] > 20 for kind in changes) and len(changes) == 4, changes


# --- registry and products ------------------------------------------------------------------


def test_registry_loads_and_covers_every_kind_and_pathway(small):
    products = small.products
    assert {p.kind for p in products} == set(Kind)
    assert {p.pathway for p in products} == set(Pathway)
    assert len({p.mah_id for p in products}) >= 5
    for product in products:
        names = product.names
        assert any(any("\u4e00" <= c <= "\u9fff" for c in name) for name in names)
        assert any(name.isascii() for name in names)
        if product.pathway is not Pathway.conventional:
            assert product.approved is not None and product.approved < SMALL.end
    devices = [p for p in products if p.kind is Kind.device]
    assert all(p.product_id.startswith("UDI-") and len(p.product_id) == 18 for p in devices)


def test_product_entries_resolve_through_ids_aliases_and_variants(large):
    live = _latest_live(large.reports)
    entries = [entry for report in live for entry in report["products"]]
    resolved = [large.registry.resolve(Product.model_validate(entry)) for entry in entries]
    assert len(entries) == large.truth["product_mentions"]
    unregistered = [r for r in resolved if not r.registered]
    assert len(unregistered) == large.truth["unregistered_mentions"]
    assert len(unregistered) / len(entries) == pytest.approx(LARGE.unregistered_rate, abs=0.01)
    known_free_text = {"unregistered:" + normalize_name(name) for name in UNREGISTERED_NAMES}
    assert {r.product_id for r in unregistered} <= known_free_text
    names = [entry["name"] for entry in entries if "name" in entry and "product_id" not in entry]
    # Full-width forms, capitals, doubled spaces and Chinese names all occur, and resolve.
    assert any(unicodedata.normalize("NFKC", name) != name and name.isupper() for name in names)
    assert any(name.isascii() and name.isupper() for name in names)
    assert any("  " in name for name in names)
    assert any(any("\u4e00" <= c <= "\u9fff" for c in name) for name in names)
    roles = Counter(entry["role"] for entry in entries)
    assert roles["suspect"] > roles["concomitant"] > roles["interacting"] > 0


def test_product_frequencies_are_heavy_tailed_and_pilots_rare(large):
    frame = _mentions(large)
    cases = frame.drop_duplicates(["case", "product"]).groupby("product").size()
    registered = cases[~cases.index.str.startswith("unregistered:")]
    top = registered.sort_values(ascending=False).head(len(large.products) // 20)
    assert top.sum() / registered.sum() > 0.5
    pilot = [
        p.product_id
        for p in large.products
        if p.pathway
        in (Pathway.lecheng_special_import, Pathway.gba_hkmacao_connect, Pathway.rare_disease_pilot)
    ]
    per_pilot = registered.reindex(pilot, fill_value=0)
    assert per_pilot.median() <= 15 and per_pilot.max() <= 60


# --- planted signals ------------------------------------------------------------------------


def test_planted_signals_stand_out(large):
    frame = _mentions(large)
    pathway = {p.product_id: p.pathway for p in large.products}
    assert len(large.signals) == LARGE.signals
    pilot = large.signals[0]
    assert pathway[pilot["product_id"]] not in (Pathway.innovative, Pathway.conventional)
    assert frame.loc[frame["product"] == pilot["product_id"], "case"].nunique() <= 40
    for signal in large.signals:
        product, pt = signal["product_id"], signal["pt"]
        assert len(_cases(frame, product, pt)) >= 3
        # From its start on, the pair stands out against the other products ...
        since = frame[frame["first"] >= pd.Timestamp(signal["start"])]
        a = len(_cases(since, product, pt))
        expected = (
            len(_cases(since, product=product))
            * len(_cases(since, pt=pt))
            / since["case"].nunique()
        )
        assert a / expected > 2, (signal, a, expected)
        # ... and occurs at strength times its background.
        planted = signal["expected_background"] * signal["strength"]
        assert planted == pytest.approx(signal["expected_background"] + signal["cases"])
        assert abs(a - planted) <= 4 * planted**0.5 + 2, (signal, a)
        # The month its counts clear Evans' rule (checked against the engine's trend in
        # tests/pvsignal/test_trends.py): in the stream, not before the plant; or never, for
        # a weak plant (5 extra cases at 3x) whose 2x2 table never meets the rule.
        month = signal["evans_month"]
        assert month is None or signal["start"][:7] <= month <= LARGE.end.isoformat()[:7]
    assert sum(s["cases"] for s in large.signals) == large.truth["planted_cases"]
    assert any(s["cases"] > 5 for s in large.signals)  # the strength, not the minimum, decided
    assert [s["evans_month"] for s in large.signals] == [
        "2025-07",
        "2026-02",
        "2025-03",
        "2026-03",
        None,
        None,
    ]


def _cases(frame: pd.DataFrame, product: str | None = None, pt: str | None = None) -> set:
    chosen = frame
    if product is not None:
        chosen = chosen[chosen["product"] == product]
    if pt is not None:
        chosen = chosen[chosen["pt"] == pt]
    return set(chosen["case"])


# --- determinism, speed, configuration, CLI -------------------------------------------------


def test_same_config_same_bytes_other_seed_other_bytes(tmp_path, small):
    out = tmp_path / "again.jsonl"
    write_simulation(SMALL, out)
    for theirs, ours in zip(
        sidecar_paths(out), sidecar_paths(small.summary.reports_path), strict=True
    ):
        assert theirs.read_bytes() == ours.read_bytes()
    assert out.read_bytes() == small.summary.reports_path.read_bytes()
    other = tmp_path / "other.jsonl"
    write_simulation(SimulationConfig(reports=3000, seed=8, malformed_rate=0.03), other)
    assert other.read_bytes() != out.read_bytes()


def test_lines_stream_without_a_file(small):
    lines = list(simulate(SMALL).lines())
    assert lines == small.raw


def test_a_small_run_is_fast(tmp_path):
    began = time.perf_counter()
    summary = write_simulation(SimulationConfig(reports=2000, seed=3), tmp_path / "fast.jsonl")
    assert time.perf_counter() - began < 1.5
    assert summary.truth.lines == 2000


@pytest.mark.parametrize("reports", [1, 2, 7, 60])
def test_tiny_runs_still_write_exactly_the_lines_asked_for(tmp_path, reports):
    out = tmp_path / "tiny.jsonl"
    write_simulation(SimulationConfig(reports=reports, seed=1, malformed_rate=0.1), out)
    lines = out.read_bytes().splitlines()
    assert len(lines) == reports
    assert sum(1 for line in lines if _valid(line)) >= 1


def _valid(line: bytes) -> bool:
    try:
        Report.model_validate_json(line)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reports": 0}, "reports must be at least 1"),
        ({"seed": -1}, "seed must not be negative"),
        ({"malformed_rate": 1.0}, "malformed_rate must lie in [0, 1)"),
        ({"follow_up_rate": -0.1}, "follow_up_rate must lie in [0, 1)"),
        ({"end": dt.date(2024, 1, 10)}, "must lie at least 30 days after start"),
        ({"pts": 5}, "pts must lie in"),
    ],
)
def test_config_refuses_bad_values(changes, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace(")", r"\)")):
        SimulationConfig(**{"reports": 100, **changes})


def test_cli_writes_the_files_and_prints_a_summary(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="pvsignal")
    add_simulate_command(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "cli" / "stream.jsonl"
    args = parser.parse_args(
        [
            "simulate",
            "--reports",
            "500",
            "--seed",
            "5",
            "--out",
            str(out),
            "--malformed-rate",
            "0.1",
        ]
    )
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 500 reports" in printed and "50 malformed" in printed
    assert all(path.exists() for path in sidecar_paths(out))
    assert len(out.read_bytes().splitlines()) == 500
    default = parser.parse_args(["simulate", "--reports", "10", "--seed", "1"])
    assert default.out == Path("simulated.jsonl")
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--reports", "10", "--seed", "1", "--malformed-rate", "1"])


def test_characteristic_pairs_are_the_products_own_terms_and_never_planted():
    simulation = simulate(SimulationConfig(reports=3_000, seed=2))
    products = {p.product_id for p in simulation.products}
    per_product = Counter(p for p, _ in simulation.characteristic)
    assert set(per_product) == products and max(per_product.values()) <= 3
    planted = {(s.product_id, s.pt) for s in simulation.signals}
    assert planted and not planted & simulation.characteristic
