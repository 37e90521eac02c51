"""Counting under a MedDRA dictionary (synthetic, in the real file format) and without one, on
SQLite and PostgreSQL: the store's counts at every level equal a recount written here, from
this file's own reading of the synthetic tree; unresolved terms count under ``unmapped:``;
loading a newer version recounts; without MedDRA, spellings of one term are one pair."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pvsignal.case_access import CaseAccess, Level
from pvsignal.cli import main
from pvsignal.errors import InputError
from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.rebuild import rebuild
from pvsignal.scopes import Scope, ScopeConfig
from pvsignal.store import SqlStore
from pvsignal.terminology.meddra import read_release
from pvsignal.terminology.unmapped import unmapped_terms
from tests.support.meddra import (
    DRESS,
    HEPATIC,
    HEPATIC_FAILURE,
    HEPATIC_FAILURE_SMQ,
    HLGTS,
    HLTS,
    NAUSEA,
    PTS,
    RASH,
    SCAR,
    SJS,
    SMQS,
    SOCS,
    write_release,
)

# What each reaction of the test reports means in the synthetic tree, read by hand from
# tests/support/meddra.py (None: resolves to nothing).
FORMS: list[tuple[dict[str, str], str | None]] = [
    ({"pt_code": SJS}, SJS),
    ({"pt_code": "90002003"}, RASH),
    ({"llt_code": "90002001"}, SJS),
    ({"llt_code": "90002002"}, SJS),
    ({"llt_code": DRESS}, DRESS),
    ({"pt": "stevens-johnson SYNDROME"}, SJS),
    ({"pt": "RASH"}, RASH),
    ({"pt": "Liver failure"}, HEPATIC_FAILURE),
    ({"pt": "Hepatic failure"}, HEPATIC_FAILURE),
    ({"pt": "Nausea"}, NAUSEA),
    ({"pt": "史蒂文斯-约翰逊综合征"}, SJS),
    ({"pt": "恶心"}, NAUSEA),
    ({"pt": "Queasiness"}, None),  # an LLT of the newer release only
    ({"pt": "Made-up reaction"}, None),
    ({"llt_code": "99999999"}, None),
]
UNMAPPED_KEY = {
    "Queasiness": "unmapped:queasiness",
    "Made-up reaction": "unmapped:made up reaction",
    "99999999": "unmapped:llt:99999999",
}
SKIN, IMMUNE, LIVER, GUT = (SOCS[c][0] for c in SOCS)
# PT -> (primary HLT, every HLT); HLT -> HLGT -> SOC from the tables' own columns.
HLT_PATHS = {
    SJS: ("90000201", ("90000201", "90000202")),
    RASH: ("90000204", ("90000204",)),
    HEPATIC_FAILURE: ("90000203", ("90000203",)),
    NAUSEA: ("90000205", ("90000205",)),
    DRESS: ("90000202", ("90000202", "90000204")),
}
PRIMARY_SOC = {SJS: SKIN, RASH: SKIN, HEPATIC_FAILURE: LIVER, NAUSEA: GUT, DRESS: IMMUNE}
ALL_SOCS = {
    **{pt: {soc} for pt, soc in PRIMARY_SOC.items()},
    SJS: {SKIN, IMMUNE},
    DRESS: {SKIN, IMMUNE},
}
SMQ_NARROW = {SJS: {SCAR}, DRESS: {SCAR}, HEPATIC_FAILURE: {HEPATIC, HEPATIC_FAILURE_SMQ}}
SMQ_BROAD = {**SMQ_NARROW, RASH: {SCAR}, NAUSEA: {HEPATIC}}

SCOPES = ScopeConfig(
    scopes=[
        Scope(name="hlt", level="hlt"),
        Scope(name="hlgt-all", level="hlgt", paths="all"),
        Scope(name="soc", level="soc"),
        Scope(name="soc-all", level="soc", paths="all"),
        Scope(name="smq-narrow", level="smq_narrow"),
        Scope(name="smq-broad", level="smq_broad"),
    ]
)


def _terms(scope: str, pt: str) -> set[str]:
    """The terms a PT counts under in the test's scopes, from this file's tables."""
    primary, every = HLT_PATHS[pt]
    if scope == "all":
        return {PTS[pt][0]}
    if scope == "hlt":
        return {HLTS[primary][0]}
    if scope == "hlgt-all":
        return {HLGTS[HLTS[hlt][1]][0] for hlt in every}
    if scope == "soc":
        return {PRIMARY_SOC[pt]}
    if scope == "soc-all":
        return ALL_SOCS[pt]
    table = SMQ_NARROW if scope == "smq-narrow" else SMQ_BROAD
    return {SMQS[smq][0] for smq in table.get(pt, ())}


def _reports(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    products = ["alpha", "beta", "gamma", "delta"]
    reports = []
    for i in range(count):
        chosen = rng.sample(range(len(FORMS)), rng.randint(1, 4))
        reports.append(
            {
                "case_id": f"C{i}",
                "report_id": f"R{i}",
                "version": 1,
                "received": f"2026-0{rng.randint(1, 9)}-15",
                "sender": {"type": "hospital", "institution_id": rng.choice(["H-1", "H-2"])},
                "products": [
                    {"name": name, "role": "suspect"}
                    for name in rng.sample(products, rng.randint(1, 2))
                ],
                "reactions": [FORMS[k][0] for k in chosen],
            }
        )
    return reports


def _recount(reports: list[dict], scope: str, *, newer: bool = False):
    """(pairs, events, total) of the scope: distinct cases, from the test's tables."""
    pairs, events, total = Counter(), Counter(), 0
    for report in reports:
        products = {"unregistered:" + p["name"] for p in report["products"]}
        terms = set()
        for reaction in report["reactions"]:
            pt = dict((json.dumps(f, sort_keys=True), p) for f, p in FORMS)[
                json.dumps(reaction, sort_keys=True)
            ]
            if pt is None and newer and reaction.get("pt") == "Queasiness":
                pt = NAUSEA
            if pt is None:
                text = reaction.get("pt") or reaction.get("llt_code")
                terms.add(UNMAPPED_KEY[text])
            else:
                terms |= _terms(scope, pt)
        total += 1
        events.update(terms)
        pairs.update((p, t) for p in products for t in terms)
    return pairs, events, total


def _stored(store: SqlStore, scope: str):
    counts = store.scope_counts(scope)
    pairs = Counter(
        {
            (p, e): int(a)
            for p, e, a in zip(counts.pair_product, counts.pair_event, counts.a, strict=True)
        }
    )
    events = Counter()
    for event, _, n in zip(*counts.event_rows, strict=True):
        events[event] += int(n)
    return +pairs, +events, int(sum(counts.totals[1]))


def _ingest(store: SqlStore, reports: list[dict], scopes: ScopeConfig = SCOPES) -> None:
    records = [
        RawRecord(f"t:{i}", json.dumps(r, ensure_ascii=False)) for i, r in enumerate(reports)
    ]
    Ingestor(store, scopes, batch_size=70).ingest(records)


def _load(store: SqlStore, folder: Path, **options) -> str:
    """Load the English and the Chinese release of a version; return the current version."""
    store.save_release(read_release(write_release(folder / "en", **options)), str(folder))
    chinese = write_release(folder / "zh", chinese=True, **options)
    return store.save_release(read_release(chinese), str(folder))


@pytest.fixture(scope="module")
def reports():
    return _reports(300)


def test_counts_at_every_level_equal_an_independent_recount(store, reports, tmp_path):
    _load(store, tmp_path / "v26")
    _ingest(store, reports)
    for scope in ("all", *(s.name for s in SCOPES.scopes)):
        assert _stored(store, scope) == _recount(reports, scope), scope
    # Each case once per term, however many of its reactions map there: SJS by code, LLT,
    # names in two languages is still one case per SJS pair.
    pairs, _, _ = _stored(store, "all")
    assert max(pairs.values()) <= len(reports)
    # A query's filter resolves like a reaction: PT or LLT code, LLT name in any case, the
    # Chinese name; a name above the PT level (an SOC here) or unknown text stays as typed.
    for typed in (SJS, "90002001", "stevens johnson SYNDROME", "sjs", "史约综合征"):
        assert store.named_event(typed) == "Stevens-Johnson syndrome", typed
    soc = "Skin and subcutaneous tissue disorders"
    assert (store.named_event(soc), store.named_event("nothing")) == (soc, "nothing")


def test_unresolved_terms_count_under_unmapped_and_are_listed(store, reports, tmp_path):
    _load(store, tmp_path / "v26")
    _ingest(store, reports)
    _, events, _ = _recount(reports, "all")
    listed = unmapped_terms(store, CaseAccess(Level.full, b""), "all")
    assert {t.term: t.cases for t in listed} == {
        k: n for k, n in events.items() if k.startswith("unmapped:")
    }
    assert [t.cases for t in listed] == sorted((t.cases for t in listed), reverse=True)
    # A hospital lists the terms of its own cases only.
    own = unmapped_terms(store, CaseAccess(Level.full, b"", owner="H-1"), "all")
    mine = [r for r in reports if r["sender"]["institution_id"] == "H-1"]
    _, my_events, _ = _recount(mine, "all")
    assert {t.term: t.cases for t in own} == {
        k: n for k, n in my_events.items() if k.startswith("unmapped:")
    }
    assert (
        unmapped_terms(store, CaseAccess(Level.restricted, b"", products=frozenset()), "all") == []
    )


def test_loading_a_newer_version_recounts(store, reports, tmp_path):
    assert _load(store, tmp_path / "v26") == "26.0"
    _ingest(store, reports)
    assert _stored(store, "soc") == _recount(reports, "soc")
    assert _load(store, tmp_path / "v27", version="27.0", newer=True) == "27.0"
    rebuild(store, SCOPES)
    for scope in ("all", "soc", "smq-broad"):
        assert _stored(store, scope) == _recount(reports, scope, newer=True), scope
    assert "unmapped:queasiness" not in _stored(store, "all")[1]
    # An older release loaded later is kept, and counting stays in the newest.
    assert _load(store, tmp_path / "v25", version="25.0") == "27.0"
    assert [(r["version"], r["language"], r["current"]) for r in store.meddra_releases()] == [
        ("26.0", "en", False),
        ("26.0", "zh", False),
        ("27.0", "en", True),
        ("27.0", "zh", True),
        ("25.0", "en", False),
        ("25.0", "zh", False),
    ]


def test_a_running_engine_takes_up_a_version_loaded_meanwhile(store, reports, tmp_path):
    _load(store, tmp_path / "v26")
    engine = Ingestor(store, SCOPES, batch_size=70)  # started under 26.0
    _load(store, tmp_path / "v27", version="27.0", newer=True)
    engine.ingest(
        [RawRecord(f"t:{i}", json.dumps(r, ensure_ascii=False)) for i, r in enumerate(reports)]
    )
    assert _stored(store, "all") == _recount(reports, "all", newer=True)


def test_levels_above_pt_need_a_dictionary(store):
    with pytest.raises(InputError, match=r"scope 'hlt' counts at level 'hlt'.*meddra load"):
        Ingestor(store, SCOPES)


SPELLINGS = ["Stevens-Johnson syndrome"] * 6 + [
    "Stevens-Johnson Syndrome",
    "stevens johnson syndrome",
]


def test_without_meddra_the_three_spellings_are_one_pair(store):
    reports = [
        {
            "case_id": f"S{i}",
            "report_id": f"S{i}",
            "version": 1,
            "products": [{"name": "alpha"}],
            "reactions": [{"pt": pt}],
        }
        for i, pt in enumerate(SPELLINGS)
    ] + [
        {
            "case_id": "F1",
            "report_id": "F1",
            "version": 1,
            "products": [{"name": "alpha"}],
            "reactions": [{"pt": "STEVENS-JOHNSON SYNDROME"}, {"pt": "Stevens Johnson syndrome"}],
        }
    ]
    _ingest(store, reports, ScopeConfig())
    pairs, events, total = _stored(store, "all")
    assert pairs == {("unregistered:alpha", "Stevens-Johnson syndrome"): 9}
    assert (events, total) == ({"Stevens-Johnson syndrome": 9}, 9)
    # Another engine, a new spelling: still the label the store recorded first.
    _ingest(
        store,
        [{**reports[0], "case_id": "S99", "reactions": [{"pt": "STEVENS–JOHNSON syndrome"}]}],
        ScopeConfig(),
    )
    assert _stored(store, "all")[0] == {("unregistered:alpha", "Stevens-Johnson syndrome"): 10}
    # A query's filter names the pair in any of the spellings; an unknown term stays as typed.
    for typed in ("stevens johnson SYNDROME", "Ｓｔｅｖｅｎｓ‐Johnson syndrome"):
        assert store.named_event(typed) == "Stevens-Johnson syndrome"
    assert store.named_event("Odd feeling") == "Odd feeling"


def test_two_engines_agree_on_a_term_first_seen_by_both(store):
    """Two engines, each seeing a new term in another spelling before either wrote it: the
    second to write counts under the first one's label (writers are serialised)."""
    first, second = Ingestor(store, ScopeConfig()), Ingestor(store, ScopeConfig())
    line = {"version": 1, "products": [{"name": "alpha"}]}
    first.terms.keys([_reaction("Drug-induced liver injury")])  # both saw it before writing
    second.terms.keys([_reaction("drug induced LIVER injury")])
    first.ingest(
        [
            RawRecord(
                "a",
                json.dumps(
                    {
                        **line,
                        "case_id": "A",
                        "report_id": "A",
                        "reactions": [{"pt": "Drug-induced liver injury"}],
                    }
                ),
            )
        ]
    )
    second.ingest(
        [
            RawRecord(
                "b",
                json.dumps(
                    {
                        **line,
                        "case_id": "B",
                        "report_id": "B",
                        "reactions": [{"pt": "drug induced LIVER injury"}],
                    }
                ),
            )
        ]
    )
    assert _stored(store, "all")[0] == {("unregistered:alpha", "Drug-induced liver injury"): 2}
    assert second.terms.labels.key("DRUG INDUCED LIVER INJURY") == "Drug-induced liver injury"


def _reaction(pt: str):
    from pvsignal.reports import Reaction

    return Reaction(pt=pt)


def test_analyze_counts_the_spellings_as_one_event_too(tmp_path):
    rows = [{"id": f"S{i}", "product": "alpha", "event": pt} for i, pt in enumerate(SPELLINGS)]
    rows += [{"id": f"O{i}", "product": "beta", "event": "Rash"} for i in range(4)]
    pd.DataFrame(rows).to_csv(tmp_path / "cases.csv", index=False)
    columns = ["--id-col", "id", "--product-col", "product", "--event-col", "event"]
    out = tmp_path / "pairs.csv"
    assert (
        main(
            [
                "analyze",
                str(tmp_path / "cases.csv"),
                *columns,
                "--theta",
                "0.5,0.3,3,2.5,0.2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    pairs = pd.read_csv(out)
    assert sorted(zip(pairs["product"], pairs["event"], pairs["a"], strict=True)) == [
        ("alpha", "Stevens-Johnson syndrome", 8),
        ("beta", "Rash", 4),
    ]
