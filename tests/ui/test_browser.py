"""End to end, in Chromium against `pvsignal serve`: what each role does on the dashboard."""

from __future__ import annotations

import json
import re

from tests.support.server import Server
from tests.ui.conftest import ARTIFACTS, E2B_BATCH, Demo, shoot, sign_in

LECHENG = "lecheng_special_import"


def test_a_regulator_validates_a_planted_lecheng_signal(browser, server: Server, demo: Demo):
    product_id, pt = next(
        (p, t) for p, t in demo.planted if demo.pathway_of[p] == LECHENG
    )  # the simulation plants its first signal on a pilot-import product
    page = sign_in(browser, server.base, demo.keys["regulator"])
    page.goto("/ui/signals")
    page.get_by_label("Pathway").select_option(LECHENG)
    page.get_by_label("PT", exact=True).fill(pt)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile("pathway=" + LECHENG))
    rows = page.locator('[data-testid="signal-row"]')
    assert rows.count() >= 1
    shown = [rows.nth(i).get_attribute("data-product-id") for i in range(rows.count())]
    assert {demo.pathway_of[p] for p in shown} == {LECHENG}
    shoot(page, "regulator-signals-lecheng")

    page.locator(f'[data-testid="signal-row"][data-product-id="{product_id}"]').get_by_role(
        "link", name=pt
    ).click()
    page.wait_for_url(re.compile(r"/ui/signal\?"))
    chart = page.locator('[data-testid="trend-chart"]')
    assert chart.locator("circle.point").count() >= 2
    assert chart.locator('[data-testid="interval-band"]').count() == 1
    assert chart.locator('[data-testid="threshold-line"]').count() == 1
    assert page.locator('[data-testid="case-row"]').count() >= 3
    shoot(page, "regulator-signal-detail")

    for status, comment in (("validation", None), ("validated", "Hepatic signal confirmed")):
        page.get_by_label("Move to").select_option(status)
        if comment:
            page.get_by_label("Comment").fill(comment)
        page.get_by_role("button", name="Save review").click()
        page.wait_for_load_state()
        assert page.locator('[data-testid="review-status"]').inner_text() == status
    assert page.get_by_text("Hepatic signal confirmed").count() == 1
    trail = page.locator('[data-testid="audit-row"]')
    assert trail.count() == 2
    assert "validation → validated" in trail.nth(1).inner_text()
    assert "regulator" in trail.nth(1).inner_text()
    shoot(page, "regulator-review-validated")
    page.context.close()


def _without_case_rows(html: str) -> tuple[str, list[str]]:
    """The page without its case rows, and the rows (cases list co-reported products)."""
    rows = re.findall(r'<tr data-testid="case-row">.*?</tr>', html, flags=re.S)
    for row in rows:
        html = html.replace(row, "")
    return html, rows


def _mah_pages(demo: Demo, mah: str, scopes: list[str]) -> list[str]:
    """Every page an MAH may open, under every filter value (and foreign ones)."""
    foreign = sorted(demo.foreign_products(mah))
    signals = ["/ui/signals", "/ui/signals.csv"]
    filters = [
        *(f"pathway={p}" for p in sorted(set(demo.pathway_of.values()))),
        *(f"status={s}" for s in ("new", "ongoing", "strengthened", "weakened", "closed", "open")),
        *(f"measure={m}" for m in ("prr", "ror", "ic", "ebgm")),
        *(f"review_status={s}" for s in ("validation", "validated", "refuted")),
        *(f"period={p}" for p in ("month", "quarter", "year")),
        *(f"sort={s}" for s in ("a", "-prr", "product")),
        *(f"product_id={p}" for p in foreign[:5]),
        *(f"mah_id={m}" for m in sorted(demo.products_of) if m and m != mah),
        *(f"scope={s}" for s in scopes),
        "limit=100",
    ]
    planted = [(p, t) for p, t in demo.planted if p in demo.foreign_products(mah)]
    return [
        *(f"{page}?{f}" for page in signals for f in filters),
        *(f"/ui/overview?scope={s}" for s in scopes),
        *(f"/ui/products?pathway={p}" for p in sorted(set(demo.pathway_of.values()))),
        "/ui/products",
        "/ui/alerts",
        "/ui/subscriptions",
        "/ui/upload",
        "/ui/cases",
        *(f"/ui/signal?product_id={p}&pt={t}" for p, t in planted),
    ]


def test_an_mah_never_sees_another_mahs_products_cases_or_alerts(
    browser, server: Server, demo: Demo
):
    page = sign_in(browser, server.base, demo.keys["mah_a"])
    own = demo.products_of[demo.mah_a]
    foreign = re.compile(
        "|".join(rf"\b{re.escape(p)}\b" for p in sorted(demo.foreign_products(demo.mah_a)))
    )
    seen_own = 0
    for path in _mah_pages(demo, demo.mah_a, ["all"]):
        answer = page.request.get(path)
        assert answer.status in (200, 404), (path, answer.status)
        body, case_rows = _without_case_rows(answer.text())
        if foreign.search(path):  # asked for by name: found nowhere but in the echoed query
            assert 'data-testid="signal-row"' not in body, path
            for echoed in set(foreign.findall(path)):
                body = body.replace(echoed, "")
        assert foreign.search(body) is None, (path, foreign.search(body).group(0))
        for row in case_rows:  # a case of one of its own products (co-reported ones masked)
            named = {n.lower() for p in own for n in [p, *demo.names_of[p]]}
            assert any(n in row.lower() for n in named), (path, row)
        seen_own += sum(body.count(p) for p in own)
        if path.startswith("/ui/signal?"):
            assert answer.status == 404, path  # another MAH's pair is not there for it
    assert seen_own > 0  # the pages were not empty

    # A live alert arrives without a reload; the other MAH's, raised in the same run, does not.
    page.goto("/ui/alerts")
    page.wait_for_selector("#live-state:has-text('Live')")
    mine = sorted(own)[0]
    theirs = sorted(demo.products_of[demo.mah_b])[0]
    lines = [
        {
            "case_id": f"UI-LIVE-{product}-{i}",
            "report_id": f"UI-LIVE-{product}-{i}-1",
            "version": 1,
            "received": "2026-06-20",
            "patient": {"age_years": 40, "sex": "F"},
            "products": [{"product_id": product, "role": "suspect"}],
            "reactions": [{"pt": "Ui live test reaction"}],
        }
        for product in (theirs, mine)
        for i in range(6)
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    posted = page.request.post(
        f"{server.base}/v1/reports",
        data=body,
        headers={
            "Authorization": f"Bearer {demo.keys['regulator']}",
            "Content-Type": "application/x-ndjson",
        },
    )
    assert posted.ok, posted.text()
    live = '[data-testid="alert-row"][data-pt="Ui live test reaction"]'
    page.locator(f'{live}[data-product-id="{mine}"]').first.wait_for(timeout=30_000)
    assert page.locator(live).count() == 1  # not the other MAH's, raised in the same run
    assert page.locator(f'[data-testid="alert-row"][data-product-id="{theirs}"]').count() == 0
    shoot(page, "mah-alerts-live")
    page.context.close()


def test_a_hospital_uploads_an_e2b_file_and_reads_its_receipt(browser, server: Server, demo: Demo):
    page = sign_in(browser, server.base, demo.keys["hospital"])
    assert page.url.endswith("/ui/upload")
    page.get_by_label(re.compile("File")).set_input_files(str(E2B_BATCH))
    page.get_by_role("button", name="Submit").click()
    page.wait_for_selector('[data-testid="receipt"]')
    rows = page.locator('[data-testid="receipt-row"]')
    outcomes = [rows.nth(i).get_attribute("data-outcome") for i in range(rows.count())]
    assert rows.count() >= 2 and "new" in outcomes
    rejected = page.locator('[data-testid="receipt-row"][data-outcome="rejected"]')
    assert rejected.count() == outcomes.count("rejected") >= 1  # the other sender's messages
    assert "sender.institution_id" in rejected.first.inner_text()
    shoot(page, "hospital-upload-receipt")
    page.goto("/ui/cases")
    assert page.locator('[data-testid="case-row"]').count() == outcomes.count("new")
    page.context.close()


def test_the_rates_panel_shows_a_monitored_products_test_to_whom_may_see_it(
    browser, server: Server, demo: Demo
):
    from urllib.parse import urlencode

    from pvsignal.simulate.exposures import SCOPE

    product_id, pt = demo.monitored
    path = "/ui/signal?" + urlencode({"scope": SCOPE, "product_id": product_id, "pt": pt})
    for who in ("regulator", "pilot_owner"):
        page = sign_in(browser, server.base, demo.keys[who])
        page.goto(path)
        panel = page.locator('[data-testid="rates-panel"]')
        assert panel.get_by_role("heading", name="Rates from exposure").count() == 1
        assert panel.get_by_text("Incidence per 1,000 patients").count() >= 1
        test = panel.locator('[data-testid="maxsprt"]')
        assert test.get_attribute("data-signalled") == "true"
        assert float(test.locator('[data-stat="llr"]').get_attribute("data-value")) >= float(
            test.locator('[data-stat="critical_value"]').get_attribute("data-value")
        )
        shoot(page, f"{who}-signal-rates")
        panel.screenshot(path=str(ARTIFACTS / f"{who}-rates-panel.png"))
        page.context.close()
    # Another MAH (with a monitored product of its own): not the page, not the rates.
    page = sign_in(browser, server.base, demo.keys["pilot_other"])
    answer = page.goto(path)
    assert answer.status == 404
    assert page.locator('[data-testid="rates-panel"]').count() == 0
    page.goto(
        "/ui/signal?" + urlencode({"scope": SCOPE, "product_id": "LC-P02", "pt": "Hepatotoxicity"})
    )
    assert page.locator('[data-testid="maxsprt"]').get_attribute("data-signalled") == "false"
    assert product_id not in page.content()
    page.context.close()
