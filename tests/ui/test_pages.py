"""The pages' content, without a browser: the signals table and its CSV are one query, the
'new' column recounts the case series, and every text has its zh-CN and en translation."""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract

from api.auth import Role
from api.ui.i18n import LANGUAGES, messages
from pvsignal.case_access import _FULL_COLUMNS, _RESTRICTED_COLUMNS
from pvsignal.cases import Outcome
from pvsignal.products import Kind, Pathway
from pvsignal.review import Priority
from pvsignal.review import Status as ReviewStatus
from tests.ui.conftest import Demo
from tests.ui.test_session import sign_in

TEMPLATES = Path(__file__).resolve().parents[2] / "api" / "ui" / "templates"
ROW = re.compile(r'data-testid="signal-row" data-product-id="([^"]*)" data-pt="([^"]*)"')


def test_the_csv_holds_exactly_the_rows_and_figures_the_table_shows(app_on, demo: Demo):
    client = app_on()
    sign_in(client, demo.keys["regulator"])
    query = {"pathway": "innovative", "sort": "-prr", "limit": "25", "period": "year"}
    page = client.get("/ui/signals", params=query)
    shown = ROW.findall(page.text)
    assert len(shown) == 25
    exported = list(
        csv.DictReader(
            io.StringIO(client.get("/ui/signals.csv", params=query).text.lstrip("\ufeff"))
        )
    )
    assert [(r["product_id"], r["pt"]) for r in exported] == shown
    api = client.get(
        "/v1/signals",
        params={"pathway": "innovative", "sort": "-prr", "limit": 25},
        headers={"Authorization": f"Bearer {demo.keys['regulator']}"},
    ).json()["signals"]
    for row, pair in zip(exported, api, strict=True):
        assert (row["product_id"], row["pt"]) == (pair["product_id"], pair["pt"])
        assert int(row["total"]) == pair["a"]
        assert float(row["prr"]) == pair["statistics"]["prr"]
        assert row["signal_ebgm"] == str(pair["signals"]["ebgm"]["flagged"]).lower()
    # 'new' is the cases received in the scope's latest year: recounted from the case series.
    year = next(k for k in exported[0] if k.startswith("new_")).removeprefix("new_")
    for row in exported[:5]:
        cases = client.get(
            "/v1/cases",
            params={
                "product_id": row["product_id"],
                "pt": row["pt"],
                "received_from": f"{year}-01-01",
                "received_to": f"{year}-12-31",
                "limit": 1000,
            },
            headers={"Authorization": f"Bearer {demo.keys['regulator']}"},
        ).json()["cases"]
        assert int(row[f"new_{year}"]) == len(cases), row


def test_filters_narrow_the_table_and_a_review_status_finds_its_pairs(app_on, demo: Demo):
    client = app_on()
    sign_in(client, demo.keys["regulator"])
    product_id, pt = demo.planted[0]
    every = ROW.findall(client.get("/ui/signals", params={"product_id": product_id}).text)
    assert every and {p for p, _ in every} == {product_id}
    page = client.get("/ui/signal", params={"product_id": product_id, "pt": pt})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    etag = html.unescape(re.search(r'name="etag" value="([^"]+)"', page.text).group(1))
    moved = client.post(
        "/ui/signal/review",
        data={"csrf_token": csrf, "etag": etag, "scope": "all", "product_id": product_id,
              "pt": pt, "status": "validation", "assignee": "dr.li", "due_at": "2026-12-31"},
        follow_redirects=False,
    )  # fmt: skip
    assert moved.status_code == 303
    found = ROW.findall(client.get("/ui/signals", params={"review_status": "validation"}).text)
    assert found == [(product_id, pt)]
    stale = client.post(
        "/ui/signal/review",
        data={"csrf_token": csrf, "etag": etag, "scope": "all", "product_id": product_id,
              "pt": pt, "status": "validated"},
    )  # fmt: skip
    assert stale.status_code == 409 and "the review changed" in stale.text
    bad = client.get("/ui/signals", params={"pathway": "moon"})
    assert bad.status_code == 422 and "pathway" in bad.text and "moon" in bad.text


def _template_messages() -> set[str]:
    found = set()
    for path in TEMPLATES.glob("*.html"):
        with path.open("rb") as handle:
            for _, message, _, _ in extract(
                "jinja2.ext:babel_extract", handle, options={"extensions": "jinja2.ext.i18n"}
            ):
                found.add(message if isinstance(message, str) else message[0])
    return found


# Values the templates translate through a variable: enums and column names.
DYNAMIC = {
    *(r.value for r in Role),
    *("new", "ongoing", "strengthened", "weakened", "closed", "open"),
    *(s.value for s in ReviewStatus),
    *(p.value for p in Priority),
    *(p.value for p in Pathway),
    *(k.value for k in Kind),
    *(o.value for o in Outcome),
    "rejected",
    *("month", "quarter", "year", "full", "restricted"),
    *_FULL_COLUMNS,
    *_RESTRICTED_COLUMNS,
}


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_text_has_a_translation_in_both_catalogues(language: str):
    table = messages(language)
    missing = sorted((_template_messages() | DYNAMIC) - set(table))
    assert missing == []
    if language == "zh-CN":
        assert table["Signals"] == "信号" and table["lecheng_special_import"] == "博鳌乐城特许进口"
        untranslated = [m for m in _template_messages() if table[m] == m and m != "PT"]
        assert untranslated == []


def test_the_language_switch_changes_every_text_and_keeps_the_page(app_on, demo: Demo):
    client = app_on()
    sign_in(client, demo.keys["mah_a"])
    english = client.get("/ui/signals?status=open")
    assert '<html lang="en">' in english.text and ">Signals</a>" in english.text
    switched = client.get(
        "/ui/lang",
        params={"to": "zh-CN", "next": "/ui/signals?status=open"},
        follow_redirects=False,
    )
    assert switched.headers["location"] == "/ui/signals?status=open"
    chinese = client.get(switched.headers["location"])
    assert '<html lang="zh-CN">' in chinese.text and ">信号</a>" in chinese.text
    assert 'data-testid="lang"' in chinese.text and ">English</a>" in chinese.text
    away = client.get(
        "/ui/lang", params={"to": "en", "next": "https://evil.test/"}, follow_redirects=False
    )
    assert away.headers["location"] == "/ui"  # no redirect off the dashboard


def _csrf(page_text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page_text).group(1)


def test_keys_and_subscriptions_are_managed_through_the_api_rules(app_on, demo: Demo):
    client = app_on()
    sign_in(client, demo.keys["admin"])
    page = client.get("/ui/keys")
    made = client.post(
        "/ui/keys",
        data={"csrf_token": _csrf(page.text), "role": "mah", "org": "MAH-900", "name": "ui"},
    )
    key = re.search(r'data-testid="new-key">(pvs_[^<]+)<', made.text).group(1)
    assert made.status_code == 200 and client.get("/ui/keys").text.count(key) == 0  # once
    blank = client.post("/ui/keys", data={"csrf_token": _csrf(page.text), "role": "mah"})
    assert blank.status_code == 422 and "org" in blank.text  # the API's own refusal
    audit = client.get(
        "/v1/audit", params={"action": "key.create"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert audit.status_code == 403  # an MAH key, made through the screen, reads no audit

    mah = app_on()
    sign_in(mah, key)
    page = mah.get("/ui/subscriptions")
    url = "http://127.0.0.1:9/hook"
    created = mah.post(
        "/ui/subscriptions", data={"csrf_token": _csrf(page.text), "url": url, "digest": ""}
    )
    assert created.status_code == 200 and 'data-testid="secret">whsec_' in created.text
    rows = re.findall(r'<tr data-testid="subscription-row"><td>(\d+)</td>', created.text)
    assert len(rows) == 1
    other = app_on()
    sign_in(other, demo.keys["mah_a"])
    theirs = other.get("/ui/subscriptions")
    assert url not in theirs.text
    stolen = other.post(
        "/ui/subscriptions", data={"csrf_token": _csrf(theirs.text), "delete": rows[0]}
    )
    assert stolen.status_code == 404  # another organisation's subscription is not there
    gone = mah.post(
        "/ui/subscriptions",
        data={"csrf_token": _csrf(page.text), "delete": rows[0]},
        follow_redirects=False,
    )
    assert gone.status_code == 303 and url not in mah.get("/ui/subscriptions").text


def test_pages_follow_on_in_the_order_sorted_by(app_on, demo: Demo):
    client = app_on()
    sign_in(client, demo.keys["regulator"])
    first = client.get("/ui/signals", params={"sort": "a", "limit": 25})
    following = re.search(r'rel="next" href="([^"]+)"', first.text).group(1)
    second = client.get(html.unescape(following))
    both = ROW.findall(first.text) + ROW.findall(second.text)
    assert len(both) == 50 and len(set(both)) == 50
    api = client.get(
        "/v1/signals",
        params={"sort": "a", "limit": 50},
        headers={"Authorization": f"Bearer {demo.keys['regulator']}"},
    ).json()["signals"]
    assert both == [(r["product_id"], r["pt"]) for r in api]


def _table_totals(page_text: str, kind: str) -> dict[str, int] | None:
    """category -> total of the overview's by-month table of ``kind`` (None: not shown)."""
    found = re.search(rf'data-testid="by-{kind}">(.*?)</table>', page_text, re.S)
    if found is None:
        return None
    rows = re.findall(r'data-category="([^"]*)" data-total="(\d+)"', found.group(1))
    return {html.unescape(name): int(total) for name, total in rows}


def _recount(url: str, scope: str, products: set[str] | None, pathway_of: dict[str, str]):
    """Per pathway, province and institution, the scope's active cases read straight from the
    cases table (an MAH's: those counted with one of ``products``)."""
    import orjson

    from pvsignal.store import open_store

    store = open_store(url)
    try:
        rows = store._query(
            "SELECT contribution, report FROM cases WHERE status = 'active' "
            "AND contribution IS NOT NULL"
        )
    finally:
        store.close()
    by: dict[str, dict[str, int]] = {"pathway": {}, "region": {}, "institution": {}, "": {}}
    for contribution, report in rows:
        counted = next((c[1] for c in orjson.loads(contribution)["c"] if c[0] == scope), None)
        if counted is None:
            continue
        mine = [p for p in counted if products is None or p in products]
        if not mine:
            continue
        document = orjson.loads(report)
        region = "-".join((document.get("region") or "unknown").split("-")[:2])
        institution = (document.get("sender") or {}).get("institution_id") or "unknown"
        for kind, name in (("region", region), ("institution", institution), ("", "all")):
            by[kind][name] = by[kind].get(name, 0) + 1
        for pathway in {pathway_of.get(p, "unregistered") for p in mine}:
            by["pathway"][pathway] = by["pathway"].get(pathway, 0) + 1
    return by


def test_the_overview_counts_reports_by_pathway_region_and_institution_per_role(app_on, demo: Demo):
    client = app_on()
    sign_in(client, demo.keys["regulator"])
    page = client.get("/ui/overview", params={"scope": "all"}).text
    url = client.app.state.runtime.settings.store_url  # this copy of the demo store
    everything = _recount(url, "all", None, demo.pathway_of)
    assert _table_totals(page, "pathway") == everything["pathway"]
    # Tables list the 15 largest categories and sum the rest as "others".
    regions = _table_totals(page, "region")
    assert sum(regions.values()) == sum(everything["region"].values())
    assert {k: v for k, v in regions.items() if k != "others"}.items() <= everything[
        "region"
    ].items()
    institutions = _table_totals(page, "institution")
    assert sum(institutions.values()) == sum(everything["institution"].values())
    # The monthly bars are the cases per month; they add up to the counted reports.
    bars = [int(v) for v in re.findall(r'class="bar"[^>]*data-value="(\d+)"', page)]
    assert (
        sum(bars)
        == everything[""]["all"]
        == int(re.search(r'<span class="big">([\d,]+)</span>', page).group(1).replace(",", ""))
    )
    # An MAH: only the cases counted with its own products, no institution, no other MAH's.
    for mah, key in ((demo.mah_a, "mah_a"), (demo.mah_b, "mah_b")):
        other = app_on()
        sign_in(other, demo.keys[key])
        seen = other.get("/ui/overview", params={"scope": "all"}).text
        own = _recount(url, "all", demo.products_of[mah], demo.pathway_of)
        assert _table_totals(seen, "pathway") == own["pathway"]
        assert sum(_table_totals(seen, "region").values()) == own[""]["all"]
        assert _table_totals(seen, "institution") is None
        assert 0 < own[""]["all"] < everything[""]["all"]
        listed = other.get(
            "/v1/cases",
            params={"scope": "all", "limit": 1000},
            headers={"Authorization": f"Bearer {demo.keys[key]}"},
        ).json()["cases"]
        assert len(listed) == own[""]["all"] or len(listed) == 1000


def test_after_a_change_the_overview_shows_its_last_count_until_the_recount(app_on, demo: Demo):
    from api.ui.routes import finish_recounts
    from tests.api.conftest import report

    client = app_on()
    sign_in(client, demo.keys["regulator"])
    before = client.get("/ui/overview", params={"scope": "all"}).text
    counted_at = re.search(r'data-testid="counted-at" data-at="([^"]+)"', before).group(1)
    name = demo.names_of[demo.planted[0][0]][0]
    posted = client.post(
        "/v1/reports",
        content=b"\n".join(report(f"NEW-{i}", name, ["Headache"]) for i in range(3)),
        headers={
            "Authorization": f"Bearer {demo.keys['hospital']}",
            "Content-Type": "application/x-ndjson",
        },
    )
    assert posted.status_code == 200, posted.text
    stale = client.get("/ui/overview", params={"scope": "all"}).text  # starts the recount
    assert f'data-at="{counted_at}"' in stale
    assert _table_totals(stale, "region") == _table_totals(before, "region")
    finish_recounts()
    fresh = client.get("/ui/overview", params={"scope": "all"}).text
    assert f'data-at="{counted_at}"' not in fresh
    url = client.app.state.runtime.settings.store_url
    regions = _table_totals(fresh, "region")
    assert sum(regions.values()) == sum(_table_totals(before, "region").values()) + 3
    assert sum(regions.values()) == _recount(url, "all", None, demo.pathway_of)[""]["all"]


def _stat(page_text: str, testid: str, stat: str) -> dict[str, float]:
    """The data-value/-lower/-upper of a statistic of the rates panel's table ``testid``."""
    table = re.search(rf'data-testid="{testid}"(.*?)</table>', page_text, re.S).group(1)
    found = re.search(rf'data-stat="{stat}"([^>]*)>', table).group(1)
    return {k: float(v) for k, v in re.findall(r'data-(value|lower|upper)="([^"]+)"', found)}


def _key(client, role: Role, org: str) -> str:
    from api.auth import issue_key

    with client.app.state.runtime.pool.store() as store:
        return issue_key(store, role, org, "test")[0]


def test_the_signal_page_shows_rates_and_the_sequential_test_where_exposure_exists(
    app_on, demo: Demo
):
    import math

    import orjson
    from scipy import stats

    from pvsignal.simulate.exposures import SCOPE
    from pvsignal.store import open_store

    client = app_on()
    sign_in(client, demo.keys["regulator"])
    product_id, pt = demo.monitored  # the pilot's planted pair
    pair = {"scope": SCOPE, "product_id": product_id, "pt": pt}
    page = client.get("/ui/signal", params=pair).text
    assert 'data-testid="rates-panel"' in page
    # Independent numbers: the exposures and cases tables read directly, scipy's chi-square.
    store = open_store(client.app.state.runtime.settings.store_url)
    try:
        patients = sum(
            int(n)
            for (n,) in store._query(
                "SELECT patients FROM exposures WHERE product = ? AND status = 'active'",
                (product_id,),
            )
        )
        cases = sum(
            1
            for (contribution,) in store._query(
                "SELECT contribution FROM cases WHERE status = 'active' "
                "AND contribution IS NOT NULL"
            )
            if any(
                c[0] == SCOPE and product_id in c[1] and pt in c[2]
                for c in orjson.loads(contribution)["c"]
            )
        )
    finally:
        store.close()
    assert _stat(page, "rates-total", "cases")["value"] == cases > 0
    assert _stat(page, "rates-total", "patients")["value"] == patients > 0
    incidence = _stat(page, "rates-total", "incidence")
    lower, upper = stats.chi2.ppf(0.025, 2 * cases) / 2, stats.chi2.ppf(0.975, 2 * cases + 2) / 2
    assert incidence["value"] == pytest.approx(cases / patients * 1000, rel=1e-12)
    assert incidence["lower"] == pytest.approx(lower / patients * 1000, rel=1e-9)
    assert incidence["upper"] == pytest.approx(upper / patients * 1000, rel=1e-9)
    expected = _stat(page, "rates-total", "expected")["value"]
    oe = _stat(page, "rates-total", "oe")
    assert oe["value"] == pytest.approx(cases / expected, rel=1e-12)
    assert oe["lower"] == pytest.approx(lower / expected, rel=1e-9) and oe["lower"] > 1
    # The MaxSPRT state: LLR = c ln(c/mu) - (c - mu), over the critical value, signalled.
    mu = _stat(page, "maxsprt", "expected")["value"]
    c = _stat(page, "maxsprt", "observed")["value"]
    llr = _stat(page, "maxsprt", "llr")["value"]
    assert llr == pytest.approx(c * math.log(c / mu) - (c - mu), rel=1e-9)
    assert llr >= _stat(page, "maxsprt", "critical_value")["value"]
    assert 'data-signalled="true"' in page and 'data-ended="true"' in page
    # In scope all: the incidence, no test there, a link to the scope that tests it.
    in_all = client.get("/ui/signal", params={**pair, "scope": "all"}).text
    assert 'data-testid="rates-panel"' in in_all and 'data-testid="maxsprt"' not in in_all
    assert f"scope={SCOPE}" in in_all
    # No exposure, no panel.
    other_product, other_pt = demo.planted[0]
    plain = client.get("/ui/signal", params={"product_id": other_product, "pt": other_pt}).text
    assert 'data-testid="rates-panel"' not in plain
    # The product's MAH sees it; another MAH neither the page nor the rates.
    owner = _key(client, Role.mah, "MAH-001")
    other = _key(client, Role.mah, "MAH-002")
    mah = app_on()
    sign_in(mah, owner)
    assert 'data-testid="rates-panel"' in mah.get("/ui/signal", params=pair).text
    stranger = app_on()
    sign_in(stranger, other)
    refused = stranger.get("/ui/signal", params=pair)
    assert refused.status_code == 404 and "rates-panel" not in refused.text
    own = stranger.get(
        "/ui/signal", params={**pair, "product_id": "LC-P02", "pt": "Hepatotoxicity"}
    )
    assert 'data-testid="maxsprt"' in own.text and 'data-signalled="false"' in own.text
