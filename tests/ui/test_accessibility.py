"""axe-core (vendored for the tests) on every page, in both languages: no serious or critical
violation. And the screen works from the keyboard: skip link, labelled controls, focus."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import pytest

from pvsignal.simulate.exposures import SCOPE
from tests.support.server import Server
from tests.ui.conftest import Demo, shoot, sign_in

AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"


def _pages(demo: Demo) -> dict[str, list[str]]:
    product_id, pt = demo.planted[0]
    detail = "/ui/signal?" + urlencode({"product_id": product_id, "pt": pt})
    monitored = "/ui/signal?" + urlencode(
        {"scope": SCOPE, "product_id": demo.monitored[0], "pt": demo.monitored[1]}
    )
    return {
        "regulator": [
            "/ui/overview",
            "/ui/signals",
            detail,
            monitored,  # with the rates panel
            "/ui/products",
            "/ui/alerts",
            "/ui/signal?product_id=NOPE&pt=none",  # the error page
        ],
        "mah_a": ["/ui/overview", "/ui/signals?status=open", "/ui/subscriptions", "/ui/upload"],
        "hospital": ["/ui/upload", "/ui/cases"],
        "admin": ["/ui/keys"],
    }


def _violations(page: object) -> list[dict]:
    page.add_script_tag(path=str(AXE))  # type: ignore[attr-defined]
    found = page.evaluate("async () => (await axe.run(document)).violations")  # type: ignore[attr-defined]
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:3]]}
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_no_serious_or_critical_axe_violation_on_any_page(
    browser, server: Server, demo: Demo, language: str
):
    login = browser.new_context(base_url=server.base, bypass_csp=True, locale=language)  # type: ignore[attr-defined]
    page = login.new_page()
    page.goto(f"/ui/lang?to={language}&next=/ui/login")
    assert page.locator("html").get_attribute("lang") == language
    assert _violations(page) == [], "/ui/login"
    login.close()
    for role, paths in _pages(demo).items():
        page = sign_in(browser, server.base, demo.keys[role], bypass_csp=True)
        page.goto(f"/ui/lang?to={language}&next={paths[0]}")
        for path in paths:
            page.goto(path)
            assert page.locator("html").get_attribute("lang") == language
            assert _violations(page) == [], (role, path)
            name = re.sub(r"[^a-z0-9]+", "-", path.split("?")[0].lower()).strip("-")
            name += "-monitored" if f"scope={SCOPE}" in path else ""
            shoot(page, f"{language}-{role}-{name}")
        page.context.close()


def test_the_signals_screen_works_from_the_keyboard(browser, server: Server, demo: Demo):
    page = sign_in(browser, server.base, demo.keys["regulator"])
    page.goto("/ui/signals")
    page.keyboard.press("Tab")
    skip = page.locator(":focus")
    assert skip.inner_text() == "Skip to content"
    page.keyboard.press("Enter")
    # Every control of the filter form has a label, and Tab reaches each in order.
    controls = page.locator("form.filters select, form.filters input:not([type=hidden])")
    for i in range(controls.count()):
        control = controls.nth(i)
        assert control.evaluate("c => c.labels.length") == 1, control.get_attribute("name")
    page.get_by_label("Status", exact=True).focus()
    page.keyboard.press("ArrowDown")  # a select moves with the keyboard: 'new'
    page.get_by_label("Rows").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Apply"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile("status=new"))
    rows = page.locator('[data-testid="signal-row"]')
    assert rows.count() >= 1
    first_link = rows.first.get_by_role("link")
    first_link.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/signal\?"))
    assert page.locator('[data-testid="trend-chart"]').count() == 1
    page.context.close()
