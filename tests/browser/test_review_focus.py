"""Focus and the keys the help names (issue 10), in real Chromium: after a verdict focus is on
the new item's heading (so Enter does not leave for the queue), after a refused save on the
field in error; the help dialog keeps Tab inside and gives focus back; n on an item one holds
moves on."""

import pytest
from playwright.sync_api import Page, expect

from audit.models import Transcript
from audit.review.workflow import incomplete_label
from tests.factories import import_fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page_on_an_item(auditor, browser_login, live_server) -> Page:
    import_fixture("noisy_s1")
    queued = Transcript.objects.in_queue()
    incomplete = [t.pk for t in queued if incomplete_label(t)]
    Transcript.objects.filter(pk__in=incomplete).update(priority=0)
    page = browser_login("alice")
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(live_server.url + "/")
    page.keyboard.press("n")
    expect(page.locator("#verdict-panel")).to_be_visible()
    return page


def active_id(page: Page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.tagName")


def test_after_a_verdict_focus_is_on_the_new_items_heading(page_on_an_item):
    page = page_on_an_item
    first = page.locator("#review-main").get_attribute("data-item")
    page.keyboard.press("c")
    expect(page.locator("#review-main")).not_to_have_attribute("data-item", first)
    second = page.locator("#review-main").get_attribute("data-item")
    heading = page.locator("#review-main h1")
    expect(heading).to_be_focused()
    url = page.url
    page.keyboard.press("Enter")  # nothing to follow: it stays on the new item
    page.wait_for_timeout(300)
    assert page.url == url
    expect(page.locator("#review-main")).to_have_attribute("data-item", second)


def test_after_a_refused_save_focus_is_on_the_field_in_error(page_on_an_item):
    page = page_on_an_item
    page.keyboard.press("u")
    expect(page.locator("#id_rationale")).to_be_focused()
    page.keyboard.press("Control+Enter")  # no reason given: refused
    expect(page.locator("#error-rationale")).to_be_visible()
    expect(page.locator("#id_rationale")).to_be_focused()


def test_the_help_keeps_focus_inside_and_gives_it_back(page_on_an_item):
    page = page_on_an_item
    page.locator("#btn-skip").focus()
    page.keyboard.press("?")
    overlay = page.locator("#help-overlay")
    expect(overlay).to_be_visible()
    expect(page.locator("#help-close")).to_be_focused()
    for key in ("Tab", "Tab", "Shift+Tab", "Shift+Tab", "Shift+Tab"):
        page.keyboard.press(key)
        assert page.evaluate(
            "document.getElementById('help-overlay').contains(document.activeElement)"
        )
    page.keyboard.press("Escape")
    expect(overlay).to_be_hidden()
    assert active_id(page) == "btn-skip"


def test_n_on_an_item_one_holds_moves_on(page_on_an_item):
    page = page_on_an_item
    held = page.locator("#review-main").get_attribute("data-item")
    page.keyboard.press("n")
    expect(page.locator("#review-main")).not_to_have_attribute("data-item", held)
