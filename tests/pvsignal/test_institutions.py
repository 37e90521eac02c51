"""The institution registry: sender names resolve to one owner, and a report without a region
takes its institution's (an E2B report from Boao reaches the Hainan scope)."""

from pathlib import Path

import orjson
import pytest
import yaml

from pvsignal.cases import Status
from pvsignal.cli import main
from pvsignal.errors import InputError
from pvsignal.institutions import Institution, InstitutionRegistry
from pvsignal.store import open_store

BOAO = {
    "institution_id": "LC-H01",
    "names": ["Boao Lecheng Designated Hospital 01", "博鳌乐城第一医院"],
    "kind": "hospital",
    "region": "CN-HI",
    "designations": ["lecheng"],
}


def _report(sender: str, version: int, pts: list[str]) -> dict:
    return {
        "case_id": "CN-BOAO-1",
        "report_id": f"R{version}",
        "version": version,
        "sender": {"type": "hospital", "institution_id": sender},
        "products": [{"name": "lecanemab"}],
        "reactions": [{"pt": pt} for pt in pts],
    }


def _write(path: Path, *reports: dict) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in reports))
    return path


def _pairs(url: str, scope: str) -> set[tuple[str, str]]:
    with open_store(url) as store:
        counts = store.scope_counts(scope)
    return set(zip(counts.pair_product.tolist(), counts.pair_event.tolist(), strict=True))


def test_registering_an_institution_renames_its_cases_owner_and_gives_its_region(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    scopes = tmp_path / "scopes.yaml"
    scopes.write_text("scopes:\n  - {name: hainan, filter: {regions: [CN-HI]}}\n")
    sent_as = "Boao Lecheng Designated Hospital 01"
    first = _write(tmp_path / "a.jsonl", _report(sent_as, 1, ["Rash"]))
    args = ["--store", url, "--scope-config", str(scopes), "--detect", "off"]
    assert main(["ingest", str(first), *args]) == 0
    assert _pairs(url, "hainan") == set()  # no region stated, none known yet

    registry = tmp_path / "institutions.yaml"
    registry.write_text(yaml.safe_dump([BOAO], allow_unicode=True))
    assert main(["institutions", "load", str(registry), "--store", url]) == 0
    with open_store(url) as store:
        assert store.case("CN-BOAO-1", "LC-H01").status is Status.active
        assert store.case("CN-BOAO-1", sent_as) is None
    assert _pairs(url, "hainan") == {("unregistered:lecanemab", "Rash")}

    # The same hospital, named by its id or its Chinese name: one owner, so a follow-up.
    follow_up = _write(tmp_path / "b.jsonl", _report("博鳌乐城第一医院", 2, ["Headache"]))
    assert main(["ingest", str(follow_up), *args]) == 0
    assert _pairs(url, "hainan") == {("unregistered:lecanemab", "Headache")}
    with open_store(url) as store:
        assert store.count_cases() == {"active": 1}


def test_a_name_of_another_institution_is_refused():
    registry = InstitutionRegistry([Institution.model_validate(BOAO)])
    other = Institution(institution_id="LC-H02", names=["博鳌乐城第一医院 "], region="CN-HI")
    with pytest.raises(InputError, match="already names 'LC-H01'"):
        registry.add(other)
