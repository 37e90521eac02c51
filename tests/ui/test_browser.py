"""End to end, in Chromium against `pvsignal serve`: what each role does on the dashboard."""

from __future__ import annotations

import re

from tests.ui.conftest import Demo, Server, shoot, sign_in

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
