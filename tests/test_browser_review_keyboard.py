"""The review flow in real Chromium, keyboard only: filter the queue, review three items
(confirm, confirm, relabel with rationale), then adjudicate a disputed item. Screenshots of the
queue, item and adjudication pages are saved in test-artifacts/."""

import re

import pytest
from playwright.sync_api import expect

from audit.models import Review, Status, Transcript, Verdict
from audit.reviews import set_required_reviews, submit_review
from tests.factories import import_fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def data(auditor):
    import_fixture("noisy_s1")
    import_fixture("rule_s0")
    return Transcript.objects.in_queue()


def test_auditor_reviews_three_items_with_the_keyboard(
    data, browser_login, live_server, artifacts_dir
):
    page = browser_login("alice")
    page.set_viewport_size({"width": 1500, "height": 950})
    page.goto(live_server.url + "/")
    expect(page.locator("#queue-table")).to_be_visible()
    page.select_option("#filter-flag", "missed_misbehavior")
    expect(page).to_have_url(re.compile(r"flag=missed_misbehavior"))
    expect(page.locator("#filter-flag")).to_have_value("missed_misbehavior")
    rows = page.locator("tr[data-row]")
    expected = (
        Transcript.objects.in_queue()
        .filter(flag_missed_misbehavior=True)
        .exclude(status__in=(Status.CONFIRMED, Status.RELABELED, Status.ADJUDICATED))
    )
    expect(rows).to_have_count(min(expected.count(), 50))
    page.screenshot(path=str(artifacts_dir / "review-queue.png"), full_page=False)

    page.keyboard.press("n")  # start reviewing these
    expect(page.locator("#verdict-panel")).to_be_visible()
    first = page.locator("#review-main").get_attribute("data-item")
    page.screenshot(path=str(artifacts_dir / "review-item.png"), full_page=False)

    page.keyboard.press("?")
    expect(page.locator("#help-overlay")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "review-help.png"))
    page.keyboard.press("Escape")
    expect(page.locator("#help-overlay")).to_be_hidden()

    page.keyboard.press("c")
    expect(page.locator("#review-main")).not_to_have_attribute("data-item", first)
    second = page.locator("#review-main").get_attribute("data-item")
    expect(page).to_have_url(re.compile(rf"/t/{second}/$"))
    page.keyboard.press("c")
    expect(page.locator("#review-main")).not_to_have_attribute("data-item", second)
    third = page.locator("#review-main").get_attribute("data-item")

    page.keyboard.press("r")
    expect(page.locator("#relabel-fields")).to_be_visible()
    expect(page.locator("#id_is_misbehavior")).to_be_focused()
    page.keyboard.press("n")  # type-ahead: "No misbehavior"
    expect(page.locator("#id_is_misbehavior")).to_have_value("no")
    page.keyboard.press("Tab")  # the type is disabled for "no"; on to the correct decision
    expect(page.locator("#id_correct_decision")).to_be_focused()
    page.keyboard.press("A")
    page.keyboard.press("Tab")
    expect(page.locator("#id_rationale")).to_be_focused()
    page.keyboard.type("The worker retried with a new parameter; that is not a loop.")
    page.screenshot(path=str(artifacts_dir / "review-relabel.png"), full_page=False)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#review-main")).not_to_have_attribute("data-item", third)

    mine = Review.objects.filter(auditor__username="alice").order_by("created_at")
    assert [(r.transcript_id, r.verdict) for r in mine] == [
        (int(first), Verdict.CONFIRM),
        (int(second), Verdict.CONFIRM),
        (int(third), Verdict.RELABEL),
    ]
    relabeled = Transcript.objects.get(pk=third)
    assert relabeled.status == Status.RELABELED
    assert relabeled.final_is_misbehavior is False
    assert relabeled.final_correct_decision == "APPROVE"


def test_adjudicator_settles_a_disputed_item(
    data, auditor, auditor2, adjudicator, browser_login, live_server, artifacts_dir
):
    item = data.filter(flag_missed_misbehavior=True).order_by("-priority", "pk").first()
    set_required_reviews(Transcript.objects.filter(pk=item.pk), 2)
    item.refresh_from_db()
    submit_review(
        item, auditor=auditor, verdict="confirm", based_on_version=item.version, seconds_spent=35
    )
    item.refresh_from_db()
    submit_review(
        item,
        auditor=auditor2,
        verdict="relabel",
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="Reading the earlier steps, this is a normal follow-up.",
        based_on_version=item.version,
        seconds_spent=80,
    )
    page = browser_login("carol")
    page.set_viewport_size({"width": 1500, "height": 950})
    page.goto(live_server.url + "/adjudicate/")
    expect(page.locator(f'tr[data-id="{item.pk}"]')).to_be_visible()
    page.keyboard.press("n")
    expect(page.locator("#side-by-side .review-card")).to_have_count(2)
    page.screenshot(path=str(artifacts_dir / "review-adjudication.png"), full_page=False)
    page.keyboard.press("1")  # take alice's values
    expect(page.locator("#id_is_misbehavior")).to_have_value("yes")
    expect(page.locator("#id_rationale")).to_be_focused()
    page.keyboard.type("The same remediation retried; the imported label stands.")
    page.keyboard.press("Control+Enter")
    expect(page).to_have_url(re.compile(r"/adjudicate/$"))
    item.refresh_from_db()
    assert item.status == Status.ADJUDICATED
    assert item.final_is_misbehavior is True
