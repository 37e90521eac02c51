"""GET /v1/terms/unmapped: terms no MedDRA entry resolves, per reader (a regulator every case,
a hospital its own, an MAH those counted with its products; another organisation's never),
checked against a recount of the submitted reports; and the event level in /v1/scopes and
/v1/signals (JSON, CSV header)."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import issue_key
from pvsignal.ingest import Ingestor
from pvsignal.readers import RawRecord
from pvsignal.scopes import Scope, ScopeConfig
from pvsignal.store import open_store
from pvsignal.terminology.meddra import read_release
from tests.api.conftest import PRODUCTS, test_settings
from tests.support.meddra import write_release
from tests.support.postgres import create_database

SCOPES = ScopeConfig(scopes=[Scope(name="soc", level="soc")])
# (case id, sending hospital, product, reactions): unresolved texts become unmapped terms.
CASES = [
    ("1", "H-1", "alphamab", ["Rash", "Made-up reaction"]),
    ("2", "H-1", "alphamab", ["Itchy-ness", "made up REACTION"]),
    ("3", "H-2", "betanib", ["Itchy-ness", "Nausea"]),
    ("4", "H-2", "gammadrug", ["Odd feeling"]),
    ("5", "H-2", "alphamab", ["Odd feeling", "Odd Feeling"]),
]


def _line(case_id: str, hospital: str, product: str, pts: list[str]) -> bytes:
    return orjson.dumps(
        {
            "case_id": case_id,
            "report_id": f"R-{case_id}",
            "version": 1,
            "sender": {"type": "hospital", "institution_id": hospital},
            "products": [{"name": product, "role": "suspect"}],
            "reactions": [{"pt": pt} for pt in pts],
        }
    )


def _expected(admits) -> dict[str, int]:
    """Unmapped terms of the admitted cases, once per case: recounted from CASES."""
    found: Counter[str] = Counter()
    for _case, hospital, product, pts in CASES:
        if admits(hospital, product):
            known = {"rash", "nausea"}
            found.update(
                {"unmapped:" + " ".join(pt.lower().replace("-", " ").split()) for pt in pts}
                - {f"unmapped:{k}" for k in known}
            )
    return dict(found)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("terms")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'store.db'}"
    else:
        url = create_database(request.getfixturevalue("postgres_server"), "terms_api")
    with open_store(url) as store:
        store.save_products(PRODUCTS)
        store.save_release(read_release(write_release(root / "meddra")), "test")
        store.set_setting("scope_config", SCOPES.model_dump_json())
        Ingestor(store, SCOPES).apply([RawRecord(c[0], _line(*c)) for c in CASES])
        keys = {
            "regulator": issue_key(store, "regulator", None)[0],
            "h1": issue_key(store, "hospital", "H-1")[0],
            "h2": issue_key(store, "hospital", "H-2")[0],
            "mah_a": issue_key(store, "mah", "MAH-A")[0],
            "mah_c": issue_key(store, "mah", "MAH-C")[0],
            "mah_none": issue_key(store, "mah", "MAH-Z")[0],
        }
    with TestClient(create_app(test_settings(url))) as test_client:
        yield test_client, keys


def _unmapped(client, who: str, **params) -> dict[str, int]:
    test_client, keys = client
    answer = test_client.get(
        "/v1/terms/unmapped", params=params, headers={"Authorization": f"Bearer {keys[who]}"}
    )
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["meddra_version"] == "26.0"
    return {t["term"]: t["cases"] for t in document["terms"]}


MAH_PRODUCTS = {"mah_a": {"alphamab", "alphacel"}, "mah_c": {"gammadrug"}, "mah_none": set()}


@pytest.mark.parametrize(
    ("who", "admits"),
    [
        ("regulator", lambda hospital, product: True),
        ("h1", lambda hospital, product: hospital == "H-1"),
        ("h2", lambda hospital, product: hospital == "H-2"),
        ("mah_a", lambda hospital, product: product in MAH_PRODUCTS["mah_a"]),
        ("mah_c", lambda hospital, product: product in MAH_PRODUCTS["mah_c"]),
        ("mah_none", lambda hospital, product: False),
    ],
)
def test_each_reader_lists_the_unmapped_terms_of_the_cases_it_may_read(client, who, admits):
    expected = _expected(admits)
    assert _unmapped(client, who) == expected
    assert _unmapped(client, who, scope="soc") == expected  # unmapped at every level


def test_the_listing_has_terms_to_hide():
    """The tenancy cases above differ: each reader's list is a strict part of the whole."""
    whole = _expected(lambda h, p: True)
    assert whole == {
        "unmapped:made up reaction": 2,
        "unmapped:itchy ness": 2,
        "unmapped:odd feeling": 2,
    }
    assert _expected(lambda h, p: h == "H-1") == {
        "unmapped:made up reaction": 2,
        "unmapped:itchy ness": 1,
    }


def test_unknown_scope_and_undeclared_parameters_are_refused(client):
    test_client, keys = client
    headers = {"Authorization": f"Bearer {keys['regulator']}"}
    assert test_client.get("/v1/terms/unmapped?scope=nope", headers=headers).status_code == 404
    assert test_client.get("/v1/terms/unmapped?owner=H-1", headers=headers).status_code == 422
    assert test_client.get("/v1/terms/unmapped").status_code == 401


def test_scopes_and_signals_carry_the_event_level(client):
    test_client, keys = client
    headers = {"Authorization": f"Bearer {keys['regulator']}"}
    scopes = test_client.get("/v1/scopes", headers=headers).json()["scopes"]
    assert {(s["name"], s["level"], s["paths"]) for s in scopes} == {
        ("all", "pt", "primary"),
        ("soc", "soc", "primary"),
    }
    page = test_client.get("/v1/signals", params={"scope": "soc"}, headers=headers).json()
    assert page["level"] == "soc"
    assert {row["pt"] for row in page["signals"]} >= {
        "Skin and subcutaneous tissue disorders",
        "Gastrointestinal disorders",
        "unmapped:odd feeling",
    }
    csv = test_client.get("/v1/signals", params={"scope": "soc", "format": "csv"}, headers=headers)
    assert csv.headers["pvsignal-event-level"] == "soc"
    assert test_client.get("/v1/signals", headers=headers).json()["level"] == "pt"
    # A filter names its PT as a reaction would: here an LLT's name in another case.
    for typed in ("SKIN RASH", "90002003", "Rash"):
        rash = test_client.get("/v1/signals", params={"pt": typed}, headers=headers).json()
        assert [(r["product_id"], r["pt"]) for r in rash["signals"]] == [("A1", "Rash")]
