"""A small scope's borrowed prior as the API shows it: /v1/fits and /metrics."""

import json

from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import issue_key
from pvsignal.detection import Detector
from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.rebuild import effective_scopes
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
