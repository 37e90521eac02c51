"""A small scope's borrowed prior as the API shows it: /v1/fits and /metrics."""

import json

from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import issue_key
from api.demo import load_demo
from pvsignal.detection import Detector
from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.rebuild import effective_scopes
from pvsignal.signals import scope_statistics
from pvsignal.store import open_store
from tests.api.conftest import PRODUCTS, test_settings, world_reports

SCOPES = {"scopes": [{"name": "pilot", "filter": {"pathways": ["lecheng_special_import"]}}]}


def test_fits_and_metrics_say_the_pilot_borrows_from_all(tmp_path):
    url = f"sqlite:///{tmp_path}/pilot.db"
    config = tmp_path / "scopes.yaml"
    config.write_text(json.dumps(SCOPES))
    store = open_store(url)
    try:
        store.save_products(PRODUCTS)
        scopes = effective_scopes(store, config)
        ingestor, detector = Ingestor(store, scopes), Detector(store, scopes)
        for batch in (1, 2):
            lines = world_reports(batch)
            records = [RawRecord(f"w:{batch}:{i}", line) for i, line in enumerate(lines)]
            detector.update(ingestor.apply(records).summary.touched_scopes)
        key = issue_key(store, "regulator", None)[0]
    finally:
        store.close()
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(test_settings(url, scope_config=config))) as client:
        fits = client.get("/v1/fits?scope=pilot", headers=headers).json()["fits"]
        assert [fit["decision"] for fit in fits] == ["borrowed from all"]
        assert fits[0]["theta_source"] == "borrowed" and fits[0]["borrowed_from"] == "all"
        assert fits[0]["reason"].startswith("too few pairs for its own fit (")
        parent = client.get("/v1/fits?scope=all", headers=headers).json()["fits"][-1]
        assert fits[0]["theta"] == parent["theta"] and parent["theta_source"] == "fitted"
        assert client.get("/v1/signals?scope=pilot", headers=headers).status_code == 200
        metrics = client.get("/metrics").text
    assert 'pvsignal_mgps_prior_source{scope="pilot",source="borrowed"} 1.0' in metrics
    assert 'pvsignal_mgps_prior_source{scope="pilot",source="fitted"} 0.0' in metrics


def test_the_demos_pilot_signal_leads_its_scope_by_eb05(tmp_path):
    url = f"sqlite:///{tmp_path}/demo.db"
    demo = load_demo(url)
    store = open_store(url)
    try:
        scopes = effective_scopes(store, None)
        fits = {scope: store.fits(scope)[-1] for scope in store.scopes()}
        scored = {s: scope_statistics(store, s, scopes=scopes, record_fit=False) for s in fits}
    finally:
        store.close()
    assert fits["all"]["decision"] == "given"
    assert fits["lecheng"]["decision"] == "borrowed from all"
    assert fits["lecheng"]["reason"].startswith("too few pairs for its own fit (")
    # The first planted signal is on the busiest pilot-import product (pvsignal.simulate).
    product, pt = demo.planted[0]
    lecheng = scored["lecheng"]
    pairs = list(zip(lecheng.pairs.product, lecheng.pairs.event, strict=True))
    eb05 = lecheng.statistics["eb05"]
    i = pairs.index((product, pt))
    assert eb05[i] >= 2 and int((eb05 > eb05[i]).sum()) < 10
    # In all, under the national prior, the planted pairs are no longer shrunk to 1.
    everything = scored["all"]
    pairs = list(zip(everything.pairs.product, everything.pairs.event, strict=True))
    planted = [everything.statistics["eb05"][pairs.index(p)] for p in demo.planted]
    assert sum(value > 2 for value in planted) >= len(planted) - 1
