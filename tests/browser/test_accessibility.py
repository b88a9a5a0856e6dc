"""axe-core on every auditor screen and state, in real Chromium (issue 10): no serious or critical
violation on the login page, the queue (plain and searching), the item page (idle, relabel,
unsure, a conflict), the adjudication list and page, the dashboard, the auditors page and the
imports; and at 390 px wide no page scrolls sideways and Log out is on screen."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from audit.models import Status, Transcript
from audit.review.workflow import incomplete_label, set_required_reviews
from tests.factories import confirm, fresh, import_fixture, relabel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Axe()
SERIOUS = ("serious", "critical")


def serious(page: Page, state: str) -> list[str]:
    """axe's serious and critical findings on the page as it is, one line each."""
    results = AXE.run(page)
    return [
        f"{state}: {v['id']} ({v['impact']}) at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in SERIOUS
    ]


@pytest.fixture
def data(staff_user, auditor, auditor2):
    """The noisy fixture; one item disputed between alice and bob (so there is something to
    adjudicate); the confirmable items first in Next's order."""
    import_fixture("noisy_s1")
    queued = Transcript.objects.in_queue()
    incomplete = [t.pk for t in queued if incomplete_label(t)]
    Transcript.objects.filter(pk__in=incomplete).update(priority=0)
    item = queued.exclude(pk__in=incomplete).order_by("priority", "pk").first()
    set_required_reviews(Transcript.objects.filter(pk=item.pk), 2)
    confirm(item, auditor)
    relabel(fresh(item), auditor2, is_misbehavior=not item.is_misbehavior, correct_decision="BLOCK")
    assert fresh(item).status == Status.DISPUTED
    return {"disputed": item}


def test_every_auditor_screen_has_no_serious_axe_finding(
    data, browser_login, live_server, page: Page
):
    found: list[str] = []
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live_server.url + "/login/")
    found += serious(page, "login")

    browser_login("sam")  # staff: auditor and adjudicator too
    base = live_server.url
    page.goto(base + "/")
    expect(page.locator("#queue-table")).to_be_visible()
    found += serious(page, "queue")
    page.goto(base + "/?q=retry&scope=all")
    found += serious(page, "queue search")

    page.goto(base + "/")
    page.keyboard.press("n")
    expect(page.locator("#verdict-panel")).to_be_visible()
    found += serious(page, "item idle")
    page.keyboard.press("?")
    expect(page.locator("#help-overlay")).to_be_visible()
    found += serious(page, "item help")
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    expect(page.locator("#relabel-fields")).to_be_visible()
    found += serious(page, "item relabel")
    page.keyboard.press("Escape")
    page.keyboard.press("u")
    expect(page.locator("#id_rationale")).to_be_focused()
    found += serious(page, "item unsure")
    page.keyboard.press("Escape")
    # A conflict: my own verdict from "another tab", then this tab's.
    pk = int(page.locator("#review-main").get_attribute("data-item"))
    from django.contrib.auth.models import User

    confirm(Transcript.objects.get(pk=pk), User.objects.get(username="sam"))
    page.keyboard.press("c")
    expect(page.locator("#conflict")).to_be_visible()
    found += serious(page, "item conflict")

    page.goto(base + f"/t/{data['disputed'].pk}/")  # disputed, as a reviewer sees it
    found += serious(page, "item disputed")
    page.goto(base + "/adjudicate/")
    found += serious(page, "adjudication list")
    page.goto(base + f"/adjudicate/{data['disputed'].pk}/")
    expect(page.locator("#adjudication-form")).to_be_visible()
    found += serious(page, "adjudication page")
    for path in ("/dashboard/", "/dashboard/auditors/", "/imports/", "/imports/upload/"):
        page.goto(base + path)
        found += serious(page, path)
    assert found == [], "\n".join(found)


PHONE_PAGES = (
    "/",
    "/?q=retry&scope=all",
    "ITEM",
    "/adjudicate/",
    "ADJUDICATE",
    "/dashboard/",
    "/dashboard/auditors/",
    "/imports/",
)


def test_at_390_px_no_page_scrolls_sideways_and_log_out_is_reachable(
    data, browser_login, live_server, page: Page
):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server.url + "/login/")
    wide: list[str] = []

    def check(name: str) -> None:
        width = page.evaluate("document.scrollingElement.scrollWidth")
        inner = page.evaluate("window.innerWidth")
        if width > inner:
            wide.append(f"{name}: {width} px wide in {inner}")

    check("login")
    browser_login("sam")
    pk = data["disputed"].pk
    for path in PHONE_PAGES:
        url = {"ITEM": f"/t/{pk}/", "ADJUDICATE": f"/adjudicate/{pk}/"}.get(path, path)
        page.goto(live_server.url + url)
        check(url)
        logout = page.get_by_role("button", name="Log out")
        expect(logout).to_be_visible()
        box = logout.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (url, box)
    assert wide == [], "\n".join(wide)
