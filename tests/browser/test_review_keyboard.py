"""The review flow in real Chromium, keyboard only: filter the queue, review three items
(confirm, confirm, relabel with rationale), then adjudicate a disputed item. Screenshots of the
queue, item and adjudication pages are saved in test-artifacts/."""

import re

import pytest
from playwright.sync_api import expect

from audit.models import Lease, Review, Status, Transcript, Verdict
from audit.review.workflow import incomplete_label, set_required_reviews, submit_review
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

    # Confirm needs a complete imported label: the items Next hands out first must have one.
    incomplete = [t.pk for t in expected if incomplete_label(t)]
    Transcript.objects.filter(pk__in=incomplete).update(priority=0)
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
    item = next(
        t
        for t in data.filter(flag_missed_misbehavior=True).order_by("-priority", "pk")
        if not incomplete_label(t)
    )
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
    page.keyboard.press("a")  # then to the rationale, as the help says: no stray "a" typed
    expect(page.locator("#id_rationale")).to_be_focused()
    expect(page.locator("#id_rationale")).to_have_value("")
    page.keyboard.type("The same remediation retried; the imported label stands.")
    page.keyboard.press("Control+Enter")
    expect(page).to_have_url(re.compile(r"/adjudicate/$"))
    item.refresh_from_db()
    assert item.status == Status.ADJUDICATED
    assert item.final_is_misbehavior is True


def queue_ids(flag: str) -> list[str]:
    """The ids the default queue (open, queued, by priority) shows for one flag."""
    rows = (
        Transcript.objects.in_queue()
        .filter(**{f"flag_{flag}": True})
        .exclude(status__in=(Status.CONFIRMED, Status.RELABELED, Status.ADJUDICATED))
        .order_by("-priority", "id")  # the queue's default sort: ties oldest first, as Next
    )
    return [str(pk) for pk in rows.values_list("pk", flat=True)[:50]]


def test_back_button_restores_the_previous_queue_filters(data, browser_login, live_server):
    page = browser_login("alice")
    page.goto(live_server.url + "/")
    expect(page.locator("#queue-table")).to_be_visible()
    rows = page.locator("tr[data-row]")
    missed, over_block = queue_ids("missed_misbehavior"), queue_ids("over_block")
    assert missed and over_block and missed != over_block

    page.select_option("#filter-flag", "missed_misbehavior")
    expect(page).to_have_url(re.compile(r"\?flag=missed_misbehavior$"))
    expect(rows).to_have_count(len(missed))
    page.select_option("#filter-flag", "over_block")
    expect(page).to_have_url(re.compile(r"\?flag=over_block$"))
    expect(rows).to_have_count(len(over_block))
    assert [row.get_attribute("data-id") for row in rows.all()] == over_block

    page.go_back()
    expect(page).to_have_url(re.compile(r"\?flag=missed_misbehavior$"))
    expect(page.locator("#filter-flag")).to_have_value("missed_misbehavior")
    expect(rows).to_have_count(len(missed))
    assert [row.get_attribute("data-id") for row in rows.all()] == missed
    page.go_back()
    expect(page).to_have_url(live_server.url + "/")
    expect(page.locator("#filter-flag")).to_have_value("")


def test_j_and_k_move_along_the_timeline_and_s_skips(data, auditor, browser_login, live_server):
    # A queued step with a step before and after it in its episode.
    item = next(
        t
        for t in data.filter(status=Status.UNREVIEWED).order_by("-priority", "pk")
        if Transcript.objects.filter(
            session_id=t.session_id, task_id=t.task_id, step_number=t.step_number + 1
        ).exists()
        and t.step_number > 1
    )
    after = Transcript.objects.get(
        session_id=item.session_id, task_id=item.task_id, step_number=item.step_number + 1
    )
    page = browser_login("alice")
    page.goto(f"{live_server.url}/t/{item.pk}/")
    main = page.locator("#review-main")
    expect(main).to_have_attribute("data-item", str(item.pk))
    assert list(Lease.objects.filter(auditor=auditor).values_list("transcript_id", flat=True)) == [
        item.pk
    ]

    page.keyboard.press("j")
    expect(main).to_have_attribute("data-item", str(after.pk))
    expect(page).to_have_url(re.compile(rf"/t/{after.pk}/$"))
    expect(page.locator("#timeline-list li.current")).to_have_attribute(
        "data-step", str(after.step_number)
    )
    page.keyboard.press("k")
    expect(main).to_have_attribute("data-item", str(item.pk))
    expect(page).to_have_url(re.compile(rf"/t/{item.pk}/$"))
    # Browsing kept the lease on the item alice opened first.
    held = Lease.objects.filter(auditor=auditor).values_list("transcript_id", flat=True)
    assert list(held) == [item.pk]

    page.keyboard.press("s")
    expect(main).not_to_have_attribute("data-item", str(item.pk))
    skipped_to = int(main.get_attribute("data-item"))
    expect(page).to_have_url(re.compile(rf"/t/{skipped_to}/$"))
    held = Lease.objects.filter(auditor=auditor).values_list("transcript_id", flat=True)
    assert list(held) == [skipped_to]
    assert not Review.objects.exists()  # skipping records no verdict
