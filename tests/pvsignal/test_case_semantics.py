"""Case semantics: any arrival order leaves the counts of a from-scratch recount, per owner.

The reference recount below is written independently of the engine: it looks at the whole
set of reports at once (latest version per case, a case being (sender organisation, case id);
nullified cases and cases named as duplicates by a report of the same owner excluded) and
counts distinct cases per pair, margin and stratum. Two organisations use the same case ids,
so any leak between owners shows.
"""

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig

CASES = ["C1", "C2", "C3", "C4"]
OWNERS = ["HOSP-A", "MAH-B"]
PRODUCTS = ["P1", "P2", "P3"]
EVENTS = ["Rash", "Nausea", "Headache"]


@st.composite
def versions(draw):
    case_id = draw(st.sampled_from(CASES))
    return {
        "sender": {"type": "hospital", "institution_id": draw(st.sampled_from(OWNERS))},
        "case_id": case_id,
        "report_id": f"{case_id}-{draw(st.integers(0, 99))}",
        "version": draw(st.integers(1, 3)),
        "nullified": draw(st.integers(0, 6)) == 0,
        "duplicate_of_ids": draw(st.lists(st.sampled_from(CASES), max_size=1))
        if draw(st.integers(0, 5)) == 0
        else [],
        "patient": {
            "age_years": draw(st.sampled_from([None, 30, 70])),
            "sex": draw(st.sampled_from([None, "F", "M"])),
        },
        "products": [
            {"name": p} for p in draw(st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=3))
        ],
        "reactions": [
            {"pt": e} for e in draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=3))
        ],
    }


def _key(report):
    return report["sender"]["institution_id"], report["case_id"]


def _canonical_versions(reports):
    """One content per (case, version): a resend repeats its version's content exactly."""
    seen = {}
    for report in reports:
        seen.setdefault((*_key(report), report["version"]), report)
    return [seen[(*_key(r), r["version"])] for r in reports]


def _stratum(report):
    age = report["patient"]["age_years"]
    band = "unknown" if age is None else ("18-44" if age < 45 else "65-74")
    return f"{band}|{report['patient']['sex'] or 'U'}|unknown"


def recount(reports):
    nullified = {_key(r) for r in reports if r["nullified"]}
    duplicates = {
        (_key(r)[0], d) for r in reports for d in r["duplicate_of_ids"] if d != r["case_id"]
    }
    latest = {}
    for r in reports:
        if _key(r) not in latest or r["version"] > latest[_key(r)]["version"]:
            latest[_key(r)] = r
    pairs, products, events, totals = Counter(), Counter(), Counter(), Counter()
    for key, r in latest.items():
        if key in nullified or key in duplicates:
            continue
        stratum = _stratum(r)
        ps = {"unregistered:" + p["name"].lower() for p in r["products"]}
        es = {x["pt"] for x in r["reactions"]}
        totals[stratum] += 1
        products.update((stratum, p) for p in ps)
        events.update((stratum, e) for e in es)
        pairs.update((p, e) for p in ps for e in es)
    return pairs, products, events, totals


def stored(store):
    counts = store.scope_counts("all")
    pairs = Counter(
        {
            (p, e): int(a)
            for p, e, a in zip(counts.pair_product, counts.pair_event, counts.a, strict=True)
        }
    )
    product, stratum, n = counts.product_rows
    products = Counter({(s, p): int(k) for p, s, k in zip(product, stratum, n, strict=True)})
    event, stratum, n = counts.event_rows
    events = Counter({(s, e): int(k) for e, s, k in zip(event, stratum, n, strict=True)})
    totals = Counter({s: int(k) for s, k in zip(*counts.totals, strict=True)})
    return pairs, products, events, totals


def _check(store_kind, new_store, reports, batch_size):
    store = new_store(store_kind)
    reports = _canonical_versions(reports)
    records = [RawRecord(f"r:{i}", report) for i, report in enumerate(reports)]
    Ingestor(store, ScopeConfig(), batch_size=batch_size).ingest(records)
    assert stored(store) == recount(reports)
    # A link across owners is only ever a suspicion: the survivor named the suspect's id.
    links = {(_key(r), d) for r in reports for d in r["duplicate_of_ids"]}
    for suspicion in store.suspicions(limit=1000):
        survivor, suspect = suspicion["survivor"], suspicion["suspect"]
        assert survivor["owner"] != suspect["owner"]
        assert ((survivor["owner"], survivor["case_id"]), suspect["case_id"]) in links


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(st.lists(versions(), min_size=1, max_size=25), st.integers(1, 8))
def test_any_interleaving_equals_recount_sqlite(new_store, reports, batch_size):
    _check("sqlite", new_store, reports, batch_size)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(versions(), min_size=1, max_size=25), st.integers(1, 8))
def test_any_interleaving_equals_recount_postgresql(new_store, reports, batch_size):
    _check("postgresql", new_store, reports, batch_size)


def test_order_does_not_matter_for_a_worked_example(new_store):
    v1 = {
        "case_id": "C1",
        "report_id": "a",
        "version": 1,
        "nullified": False,
        "duplicate_of_ids": [],
        "patient": {"age_years": 30, "sex": "F"},
        "products": [{"name": "P1"}],
        "reactions": [{"pt": "Rash"}],
    }
    v2 = {**v1, "report_id": "b", "version": 2, "reactions": [{"pt": "Nausea"}]}
    for order in ([v1, v2], [v2, v1], [v1, v2, v2, v1]):
        store = new_store("sqlite")
        Ingestor(store, ScopeConfig(), batch_size=1).ingest(
            RawRecord(str(i), r) for i, r in enumerate(order)
        )
        pairs = stored(store)[0]
        assert pairs == Counter({("unregistered:p1", "Nausea"): 1})
