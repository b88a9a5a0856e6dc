"""Back after a verdict shows the item as it is now, never a copy from before the verdict
(issue 10): htmx keeps no history snapshots (historyCacheSize 0), so going back loads the page
from the server."""

import pytest
from playwright.sync_api import expect

from audit.models import Transcript
from audit.review.workflow import incomplete_label
from tests.factories import import_fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_back_after_a_verdict_shows_the_item_with_the_verdict(auditor, browser_login, live_server):
    import_fixture("noisy_s1")
    queued = Transcript.objects.in_queue().order_by("-priority", "pk")
    Transcript.objects.filter(pk__in=[t.pk for t in queued if incomplete_label(t)]).update(
        priority=0
    )
    page = browser_login("alice")
    page.goto(live_server.url + "/")
    page.keyboard.press("n")
    expect(page.locator("#verdict-panel")).to_be_visible()
    first = page.locator("#review-main").get_attribute("data-item")
    expect(page.locator("#own-review")).to_have_count(0)
    page.keyboard.press("c")
    expect(page.locator("#review-main")).not_to_have_attribute("data-item", first)
    page.go_back()
    expect(page.locator("#review-main")).to_have_attribute("data-item", first)
    expect(page.locator("#own-review")).to_contain_text("You said Confirm")
    expect(page.locator("#item-status")).not_to_have_text("Unreviewed")
