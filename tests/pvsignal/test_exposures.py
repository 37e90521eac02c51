"""Exposure semantics on both stores: versions, withdrawals, owners, rejects, offsets; rates
against an independent recount and scipy; the monitor's sequential test through the outbox."""

from __future__ import annotations

import csv
import io
import json
import math

import orjson
import pytest
from scipy import stats

from pvsignal.cli import main
from pvsignal.errors import StaleOffsetsError
from pvsignal.exposures import ExposureIngestor
from pvsignal.ingest import Ingestor
from pvsignal.institutions import Institution, InstitutionRegistry
from pvsignal.monitoring import MEASURE, Monitor
from pvsignal.ownership import SubmitterOwns
from pvsignal.products import RegisteredProduct, Registry
from pvsignal.rates import RateQuery, rates
from pvsignal.readers import RawRecord
from pvsignal.scopes import ScopeConfig

PRODUCT = RegisteredProduct(
    product_id="P-1",
    names=["tezumab", "特珠单抗"],
    kind="biologic",
    pathway="lecheng_special_import",
    mah_id="MAH-A",
)
CONFIG = ScopeConfig.model_validate(
    {
        "scopes": [
            {
                "name": "lecheng",
                "filter": {"regions": ["CN-HI"], "pathways": ["lecheng_special_import"]},
                "monitoring": {
                    "products": [
                        {
                            "product_id": "P-1",
                            "length": 8,
                            "min_events": 2,
                            "references": [{"pt": "Pneumonitis", "per_1000": 5}],
                        }
                    ]
                },
            }
        ]
    }
)
INSTITUTIONS = [
    Institution(institution_id="LC-H01", names=["Lecheng Hospital 1"], region="CN-HI"),
    Institution(institution_id="GZ-H02", names=["Guangzhou Hospital 2"], region="CN-GD"),
]


def record(location: str, **fields) -> RawRecord:
    document = {
        "exposure_id": "E1",
        "product_name": "tezumab",
        "institution_id": "LC-H01",
        "start": "2026-01-10",
        **fields,
    }
    return RawRecord(location, orjson.dumps({k: v for k, v in document.items() if v is not None}))


def prepared(store):
    store.save_products([PRODUCT])
    store.save_institutions(INSTITUTIONS)
    return ExposureIngestor(store, CONFIG)


def outcomes(result) -> list[str]:
    return [str(r.outcome) for r in result.results]


def test_versions_corrections_and_withdrawals(store):
    ingestor = prepared(store)
    applied = ingestor.apply(
        [
            record("f:1", patients=10, sender="LC-H01"),
            record("f:2", patients=12, version=3, sender="LC-H01"),
            record("f:3", patients=11, version=2, sender="LC-H01"),  # older than 3: stale
            record("f:4", patients=12, version=3, sender="LC-H01"),  # the same again
        ]
    )
    assert outcomes(applied) == ["new", "corrected", "stale", "resent"]
    assert applied.summary.touched_scopes == {"all", "lecheng"}
    row = store.exposure("LC-H01", "E1")
    assert (row.version, row.patients, row.product, row.period) == (3, 12, "P-1", "2026-01")
    withdrawn = ingestor.apply(
        [
            RawRecord(
                "f:5", b'{"exposure_id": "E1", "version": 4, "withdrawn": true, "sender": "LC-H01"}'
            ),
            record("f:6", patients=99, version=5, sender="LC-H01"),
            RawRecord("f:7", b'{"exposure_id": "E404", "withdrawn": true, "sender": "LC-H01"}'),
        ]
    )
    assert outcomes(withdrawn) == ["withdrawn", "refused", "refused"]
    assert store.exposure("LC-H01", "E1").status == "withdrawn"
    assert store.active_exposures(["P-1"]) == []
    reasons = {r["location"]: r for r in store.rejects(limit=10)}
    assert reasons["f:6"]["field"] == "exposure_id" and "withdrawn" in reasons["f:6"]["reason"]
    assert "no exposure 'E404'" in reasons["f:7"]["reason"]


def test_owners_never_touch_each_others_exposures(store):
    ingestor = prepared(store)
    ingestor.apply([record("a:1", patients=10, sender="LC-H01")])
    before = store.exposure("LC-H01", "E1")
    other = ingestor.apply(
        [
            record("b:1", patients=1, version=2, sender="GZ-H02"),
            RawRecord(
                "b:2", b'{"exposure_id": "E1", "version": 3, "withdrawn": true, "sender": "GZ-H02"}'
            ),
        ]
    )
    assert outcomes(other) == ["new", "withdrawn"]  # its own E1, then its own withdrawal
    assert store.exposure("LC-H01", "E1") == before
    # Submitted as GZ-H02 (the API's rule), naming LC-H01 as sender: rejected, field named.
    forged = ingestor.apply(
        [record("c:1", version=9, withdrawn=True, sender="LC-H01")],
        owners=SubmitterOwns("GZ-H02"),
    )
    assert outcomes(forged) == ["rejected"] and forged.results[0].reason.startswith("sender:")
    assert store.exposure("LC-H01", "E1") == before


def test_invalid_records_are_kept_with_field_and_value(store):
    ingestor = prepared(store)
    applied = ingestor.apply(
        [
            record("x:1", patients=-3),
            record("x:2", start="2999-01-01"),
            record("x:3", end="2025-01-01"),
            RawRecord("x:4", b"not json"),
            record("x:5", product_name=None),
        ]
    )
    assert outcomes(applied) == ["rejected"] * 5
    kept = {r["location"]: (r["field"], r["value"]) for r in store.rejects(limit=10)}
    assert kept["x:1"] == ("patients", "-3")
    assert kept["x:2"][0] == "start" and kept["x:3"][0] == "end"
    assert kept["x:5"] == ("product_id", "None")


def test_a_batch_read_from_stale_offsets_writes_nothing(store):
    ingestor = prepared(store)
    ingestor.apply(
        [record("k:0")], {("pvsignal.exposures", 0): 5}, {("pvsignal.exposures", 0): None}
    )
    with pytest.raises(StaleOffsetsError):
        ingestor.apply(
            [record("k:1", exposure_id="E2")],
            {("pvsignal.exposures", 0): 6},
            {("pvsignal.exposures", 0): 3},
        )
    assert store.exposure("unattributed", "E2") is None
    assert store.offsets("pvsignal.exposures") == {0: 5}


def _reports(store, count: int, pt: str = "Pneumonitis", region: str = "CN-HI", start: int = 0):
    lines = [
        RawRecord(
            f"r:{i}",
            orjson.dumps(
                {
                    "case_id": f"C{i}",
                    "report_id": f"R{i}",
                    "received": "2026-02-03",
                    "region": region,
                    "products": [{"name": "tezumab"}],
                    "reactions": [{"pt": pt}],
                }
            ),
        )
        for i in range(start, start + count)
    ]
    Ingestor(store, CONFIG).apply(lines)


def _garwood(count: int, level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2
    lower = stats.chi2.ppf(tail, 2 * count) / 2 if count else 0.0
    return lower, stats.chi2.ppf(1 - tail, 2 * count + 2) / 2


def test_rates_follow_the_scope_and_equal_scipys_exact_interval(store):
    ingestor = prepared(store)
    ingestor.apply(
        [
            record("e:1", exposure_id="E1", patients=300),
            record("e:2", exposure_id="E2", patients=100, start="2026-03-02", patient_days=30),
            record("e:3", exposure_id="E3", patients=500, institution_id="GZ-H02"),  # CN-GD
        ]
    )
    _reports(store, 6)
    _reports(store, 4, region="CN-GD", start=100)  # counted in "all" only
    registry, institutions = Registry([PRODUCT]), InstitutionRegistry(INSTITUTIONS)
    [lecheng] = rates(store, RateQuery(CONFIG.all_scopes()[1]), registry, institutions)
    assert (lecheng["cases"], lecheng["patients"]) == (6, 400)
    lower, upper = _garwood(6)
    assert lecheng["incidence_per_1000"] == pytest.approx(15.0)
    assert lecheng["incidence_lower"] == pytest.approx(lower / 400 * 1000, rel=1e-9)
    assert lecheng["incidence_upper"] == pytest.approx(upper / 400 * 1000, rel=1e-9)
    assert lecheng["expected"] == pytest.approx(2.0)
    assert lecheng["oe_lower"] == pytest.approx(lower / 2.0, rel=1e-9)
    assert lecheng["per_1000_patient_years"] is None  # not every exposure gives its time
    [everything] = rates(store, RateQuery(CONFIG.all_scopes()[0]), registry, institutions)
    assert (everything["cases"], everything["patients"]) == (10, 900)
    assert everything["expected"] is None  # "all" has no reference rates
    monthly = rates(
        store, RateQuery(CONFIG.all_scopes()[1], period="month"), registry, institutions
    )
    assert {(r["period"], r["cases"], r["patients"]) for r in monthly} == {
        ("2026-01", 0, 300),
        ("2026-02", 6, 0),
        ("2026-03", 0, 100),
    }
    march = next(r for r in monthly if r["period"] == "2026-03")
    years = 30 / 365.25
    assert march["patient_years"] == pytest.approx(years)
    assert march["per_1000_patient_years_upper"] == pytest.approx(_garwood(0)[1] / years * 1000)


def test_the_monitor_signals_once_through_the_outbox(store):
    ingestor = prepared(store)
    monitor = Monitor(store, CONFIG)
    ingestor.apply([record("e:1", patients=200)])  # expected 1.0
    assert monitor.update({"lecheng"}) == []
    _reports(store, 2)  # LLR(2, 1) = 0.386: below any critical value
    assert monitor.update({"lecheng"}) == []
    _reports(store, 5, start=10)  # 7 observed, 1 expected
    [alert] = monitor.update({"lecheng"})
    assert (alert["product_id"], alert["pt"], alert["transition"]) == ("P-1", "Pneumonitis", "new")
    assert alert["mah_id"] == "MAH-A" and alert["changes"] == {MEASURE: "new"}
    statistics = alert["statistics"]
    assert statistics["observed"] == 7 and statistics["expected"] == pytest.approx(1.0)
    assert statistics["llr"] == pytest.approx(7 * math.log(7) - 6)
    assert statistics["llr"] >= statistics["critical_value"] and statistics["ended"]
    ingestor.apply([record("e:2", exposure_id="E2", patients=400)])
    _reports(store, 3, start=20)
    assert monitor.update({"lecheng", "all"}) == []  # ended with its signal: no second alert
    pending = [a for a in store.pending_alerts() if a["payload"]["changes"] == {MEASURE: "new"}]
    assert len(pending) == 1
    state = store.signal_states("lecheng")["P-1", "Pneumonitis", MEASURE]
    assert state["status"] == "ongoing" and state["last_a"] == 7  # what the test judged
    test = store.sequential_tests("lecheng")["P-1", "Pneumonitis"]
    assert test["signalled_at"] == pytest.approx(1.0) and test["observed"] == 7


def test_detection_workers_run_the_sequential_tests_once_exposures_arrive(store, tmp_path):
    """Exposures move only the exposures mark; the lone detect worker, or shard 0, runs the
    monitor on it (shard 1 never does: one monitor per store); a resent batch moves nothing."""
    scopes = tmp_path / "scopes.yaml"
    scopes.write_text(json.dumps(CONFIG.model_dump(mode="json", exclude_defaults=True)))
    ingestor = prepared(store)
    _reports(store, 7)
    detect = ["detect", "--once", "--store", store.url, "--scope-config", str(scopes)]
    assert main(detect) == 0
    # No patient recorded yet: the 7 cases wait for their denominator (at mu = 0 they would
    # make an infinite LLR, and a MaxSPRT signal is final).
    waiting = store.sequential_tests("lecheng")["P-1", "Pneumonitis"]
    assert (waiting["observed"], waiting["ended"], waiting["signalled_at"]) == (0, False, None)
    counts, mark = store.counts_mark(), store.exposures_mark()
    ingestor.apply([record("e:1", patients=200)])  # expected 1.0, 7 observed
    assert store.exposures_mark() == mark + 1 and store.counts_mark() == counts
    ingestor.apply([record("e:1", patients=200)])  # resent: nothing changed
    assert store.exposures_mark() == mark + 1
    assert main([*detect, "--shard", "1/2"]) == 0
    assert store.sequential_tests("lecheng")["P-1", "Pneumonitis"] == waiting
    assert main([*detect, "--shard", "0/2"]) == 0
    test = store.sequential_tests("lecheng")["P-1", "Pneumonitis"]
    assert (test["observed"], test["signalled_at"]) == (7, pytest.approx(1.0))
    [alert] = [a for a in store.pending_alerts() if MEASURE in a["payload"]["changes"]]
    assert alert["payload"]["changes"] == {MEASURE: "new"}


def test_exposures_ingest_and_rates_commands(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/cli.db"
    scopes = tmp_path / "scopes.yaml"
    scopes.write_text(json.dumps(CONFIG.model_dump(mode="json", exclude_defaults=True)))
    products = tmp_path / "products.yaml"
    products.write_text(json.dumps([PRODUCT.model_dump(mode="json")]))
    assert main(["products", "load", str(products), "--store", url]) == 0
    institutions = tmp_path / "institutions.yaml"
    institutions.write_text(json.dumps([i.model_dump(mode="json") for i in INSTITUTIONS]))
    assert main(["institutions", "load", str(institutions), "--store", url]) == 0
    table = tmp_path / "exposures.csv"
    table.write_text(
        "exposure_id,product_name,institution_id,start,patients,sex\n"
        "E1,特珠单抗,LC-H01,2026-01-05,40,F\n"
        "E2,tezumab,LC-H01,2026-01-06,-1,M\n"
    )
    lines = tmp_path / "more.jsonl"
    lines.write_text(
        json.dumps(
            {
                "exposure_id": "E3",
                "product_id": "P-1",
                "institution_id": "LC-H01",
                "start": "2026-02-01",
            }
        )
        + "\n"
    )
    argv = ["exposures", "ingest", str(table), str(lines), "--store", url, "--owner", "LC-H01"]
    assert main([*argv, "--scope-config", str(scopes)]) == 0
    out = capsys.readouterr().out
    assert "new 2," in out and "rejected 1" in out
    assert main(["rates", "--store", url, "--scope", "lecheng", "--format", "csv"]) == 0
    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (row["product_id"], row["pt"], row["patients"], row["cases"]) == (
        "P-1",
        "Pneumonitis",
        "41",
        "0",
    )
    assert float(row["expected"]) == pytest.approx(41 * 5 / 1000)
