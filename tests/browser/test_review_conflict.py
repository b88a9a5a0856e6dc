"""Several people on one item, each in their own Chromium context: a stale verdict meets the
conflict view (and is not saved), blind double review ends in a dispute an adjudicator settles,
and the item's history shows every step. Screenshots go to test-artifacts/."""

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from audit.models import Review, Status, Transcript, Verdict
from audit.review.workflow import set_required_reviews
from tests.conftest import PASSWORD
from tests.factories import import_fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1500, "height": 950}


@pytest.fixture
def item(auditor, auditor2, adjudicator) -> Transcript:
    """A queued missed-misbehavior item (imported: misbehavior, APPROVE) that needs two reviews."""
    import_fixture("noisy_s1")
    chosen = (
        Transcript.objects.in_queue()
        .filter(flag_missed_misbehavior=True)
        .order_by("-priority", "pk")
        .first()
    )
    set_required_reviews(Transcript.objects.filter(pk=chosen.pk), 2)
    chosen.refresh_from_db()
    assert chosen.status == Status.UNREVIEWED and chosen.is_misbehavior is True
    return chosen


@pytest.fixture
def open_as(browser, live_server) -> Iterator[Callable[[str], Page]]:
    """``open_as(username)``: a page in a fresh browser context (own cookies), logged in."""
    contexts = []

    def open_page(username: str) -> Page:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.goto(live_server.url + "/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        with page.expect_navigation():
            page.press("#id_password", "Enter")
        return page

    yield open_page
    for context in contexts:
        context.close()


def item_url(live_server, transcript: Transcript) -> str:
    return f"{live_server.url}/t/{transcript.pk}/"


def relabel_as_no_misbehavior(page: Page, rationale: str) -> None:
    """Keyboard only: r, "No misbehavior", correct decision APPROVE, rationale."""
    page.keyboard.press("r")
    expect(page.locator("#id_is_misbehavior")).to_be_focused()
    page.keyboard.press("n")
    expect(page.locator("#id_is_misbehavior")).to_have_value("no")
    page.keyboard.press("Tab")
    expect(page.locator("#id_correct_decision")).to_be_focused()
    page.keyboard.press("A")
    page.keyboard.press("Tab")
    expect(page.locator("#id_rationale")).to_be_focused()
    page.keyboard.type(rationale)


def test_a_co_reviewer_who_saves_first_does_not_make_my_verdict_stale(
    item, page, browser_login, open_as, live_server
):
    """K = 2, both auditors reading the item: the second to save is not refused (issue 10)."""
    opened_at = item.version
    alice = browser_login("alice")
    alice.set_viewport_size(VIEWPORT)
    alice.goto(item_url(live_server, item))
    expect(alice.locator("#review-main")).to_have_attribute("data-version", str(opened_at))

    # Bob reviews the same item in his own browser while alice is still reading it.
    bob = open_as("bob")
    bob.goto(item_url(live_server, item))
    bob.keyboard.press("c")
    expect(bob.locator("#review-main")).not_to_have_attribute("data-item", str(item.pk))
    item.refresh_from_db()
    assert item.version > opened_at and item.status == Status.IN_PROGRESS

    # Alice relabels against the version she opened: saved, and she moves on.
    relabel_as_no_misbehavior(alice, "The worker retried with new parameters; not a loop.")
    alice.keyboard.press("Control+Enter")
    expect(alice.locator("#review-main")).not_to_have_attribute("data-item", str(item.pk))
    expect(alice.locator("#conflict")).to_have_count(0)
    item.refresh_from_db()
    rows = list(
        Review.objects.filter(transcript=item)
        .order_by("created_at", "id")
        .values_list("auditor__username", "verdict", "based_on_version")
    )
    assert rows == [("bob", Verdict.CONFIRM, opened_at), ("alice", Verdict.RELABEL, opened_at)]
    assert item.status == Status.DISPUTED and item.review_count == 2


def test_my_own_verdict_in_another_tab_shows_the_conflict_view_and_saves_nothing(
    item, page, browser_login, live_server, artifacts_dir
):
    opened_at = item.version
    alice = browser_login("alice")
    alice.set_viewport_size(VIEWPORT)
    alice.goto(item_url(live_server, item))
    expect(alice.locator("#review-main")).to_have_attribute("data-version", str(opened_at))

    # Alice confirms the same item in a second tab (same session) while this one stays open.
    other_tab = alice.context.new_page()
    other_tab.goto(item_url(live_server, item))
    other_tab.keyboard.press("c")
    expect(other_tab.locator("#review-main")).not_to_have_attribute("data-item", str(item.pk))
    item.refresh_from_db()
    after_tab = item.version
    assert after_tab > opened_at and item.status == Status.IN_PROGRESS

    # Back in the first tab she relabels: refused, shown in place, entries kept.
    relabel_as_no_misbehavior(alice, "The worker retried with new parameters; not a loop.")
    alice.keyboard.press("Control+Enter")
    conflict = alice.locator("#conflict")
    expect(conflict).to_be_visible()
    expect(alice).to_have_url(item_url(live_server, item))
    expect(conflict).to_contain_text("changed while you were looking at it")
    expect(conflict).to_contain_text(f"You opened version {opened_at}")
    expect(conflict).to_contain_text(f"now version {after_tab}")
    expect(conflict).to_contain_text("not saved")
    expect(conflict).to_contain_text(re.compile(r"you, in another tab \(confirm\) at \d\d:\d\d"))
    expect(conflict).not_to_contain_text("alice")
    expect(alice.locator("#review-main")).to_have_attribute("data-version", str(after_tab))
    expect(alice.locator("#relabel-fields")).to_be_visible()
    expect(alice.locator("#id_is_misbehavior")).to_have_value("no")
    expect(alice.locator("#id_rationale")).to_have_value(
        "The worker retried with new parameters; not a loop."
    )
    expect(alice.locator("#conflict-reload")).to_be_focused()
    alice.screenshot(path=str(artifacts_dir / "review-conflict.png"), full_page=False)
    assert list(Review.objects.filter(transcript=item).values_list("auditor__username")) == [
        ("alice",)
    ]

    # Enter follows the focused "Reload item": a fresh page of the current version, where she
    # revises her own verdict.
    with alice.expect_navigation():
        alice.keyboard.press("Enter")
    expect(alice.locator("#conflict")).to_have_count(0)
    expect(alice.locator("#review-main")).to_have_attribute("data-version", str(after_tab))
    relabel_as_no_misbehavior(alice, "On a second look, not a loop.")
    alice.keyboard.press("Control+Enter")
    expect(alice.locator("#review-main")).not_to_have_attribute("data-item", str(item.pk))

    item.refresh_from_db()
    rows = list(
        Review.objects.filter(transcript=item)
        .order_by("created_at", "id")
        .values_list("auditor__username", "verdict", "based_on_version", "superseded_by")
    )
    assert rows[0][:3] == ("alice", Verdict.CONFIRM, opened_at) and rows[0][3] is not None
    assert rows[1] == ("alice", Verdict.RELABEL, after_tab, None)
    assert item.version == after_tab + 1
    assert item.status == Status.IN_PROGRESS and item.review_count == 1


def test_blind_double_review_disputed_then_adjudicated_shows_every_step_in_history(
    item, page, browser_login, open_as, live_server, artifacts_dir
):
    url = item_url(live_server, item)
    alice_unsure = "ALICE-UNSURE: cannot tell whether step 3 counts as a retry."
    bob_note = "BOB-RELABEL: the same classification over and over; a loop, not a hack."
    alice_relabel = "ALICE-RELABEL: the parameters changed each time; normal follow-up."
    carol_note = "CAROL-ADJUDICATE: step 6 repeats steps 2 and 4; bob is right, a loop."

    alice = browser_login("alice")
    alice.set_viewport_size(VIEWPORT)
    bob = open_as("bob")
    alice.goto(url)
    bob.goto(url)

    # Alice is unsure first: an unsure verdict neither counts nor unlocks others' reviews.
    alice.keyboard.press("u")
    expect(alice.locator("#id_rationale")).to_be_focused()
    alice.keyboard.type(alice_unsure)
    alice.keyboard.press("Control+Enter")
    expect(alice.locator("#review-main")).not_to_have_attribute("data-item", str(item.pk))

    # Bob, blind: alice's words are not on his page, before or after a reload.
    expect(bob.locator("body")).not_to_contain_text("ALICE-")
    bob.reload()
    expect(bob.locator("#blind-note")).to_be_visible()
    expect(bob.locator("#final-hidden")).to_be_visible()
    expect(bob.locator("body")).not_to_contain_text("ALICE-")
    # He reads it as a different misbehavior: relabel, keyboard only.
    bob.keyboard.press("r")
    expect(bob.locator("#id_is_misbehavior")).to_be_focused()
    bob.keyboard.press("y")
    expect(bob.locator("#id_is_misbehavior")).to_have_value("yes")
    bob.keyboard.press("Tab")
    expect(bob.locator("#id_misbehavior_type")).to_be_focused()
    bob.keyboard.press("l")
    expect(bob.locator("#id_misbehavior_type")).to_have_value("loop_exploitation")
    bob.keyboard.press("Tab")
    bob.keyboard.press("B")
    expect(bob.locator("#id_correct_decision")).to_have_value("BLOCK")
    bob.keyboard.press("Tab")
    expect(bob.locator("#id_rationale")).to_be_focused()
    bob.keyboard.type(bob_note)
    bob.keyboard.press("Control+Enter")
    expect(bob.locator("#review-main")).not_to_have_attribute("data-item", str(item.pk))
    bob.goto(url)
    expect(bob.locator("#history")).to_contain_text(alice_unsure)  # his verdict is in

    # Alice comes back: bob's review exists but stays hidden until she decides for real.
    alice.goto(url)
    expect(alice.locator("#blind-note")).to_be_visible()
    expect(alice.locator("body")).not_to_contain_text("BOB-")
    relabel_as_no_misbehavior(alice, alice_relabel)
    alice.keyboard.press("Control+Enter")
    expect(alice.locator("#review-main")).not_to_have_attribute("data-item", str(item.pk))
    alice.goto(url)
    expect(alice.locator("#history")).to_contain_text(bob_note)
    expect(alice.locator("#item-status")).to_have_text("Disputed")

    # Carol settles it from the adjudication queue, taking bob's values.
    carol = open_as("carol")
    carol.goto(live_server.url + "/adjudicate/")
    expect(carol.locator(f'tr[data-id="{item.pk}"]')).to_be_visible()
    carol.keyboard.press("n")
    expect(carol.locator("#side-by-side .review-card")).to_have_count(2)
    cards = carol.locator("#side-by-side .review-card")
    bob_card = 1 if "bob" in cards.nth(0).inner_text() else 2
    carol.keyboard.press(str(bob_card))
    expect(carol.locator("#id_is_misbehavior")).to_have_value("yes")
    expect(carol.locator("#id_misbehavior_type")).to_have_value("loop_exploitation")
    carol.keyboard.press("a")  # then the rationale, as the help says
    expect(carol.locator("#id_rationale")).to_be_focused()
    expect(carol.locator("#id_rationale")).to_have_value("")
    carol.keyboard.type(carol_note)
    carol.keyboard.press("Control+Enter")
    expect(carol).to_have_url(re.compile(r"/adjudicate/$"))

    # Every step on the item page, oldest first, the unsure marked as superseded.
    alice.goto(url)
    expect(alice.locator("#item-status")).to_have_text("Adjudicated")
    history = alice.locator("#history-list .history-row")
    expect(history).to_have_count(4)
    expected = [
        ("unsure", "alice", alice_unsure),
        ("relabel", "bob", bob_note),
        ("relabel", "alice", alice_relabel),
        ("adjudicate", "carol", carol_note),
    ]
    for row, (verdict, who, text) in zip(history.all(), expected, strict=True):
        expect(row).to_have_attribute("data-verdict", verdict)
        expect(row.locator(".history-who")).to_have_text(who)
        expect(row.locator(".history-rationale")).to_have_text(text)
    expect(history.nth(0)).to_have_class(re.compile(r"\bsuperseded\b"))
    expect(history.nth(0).locator(".superseded-marker")).to_be_visible()
    alice.locator("#history").scroll_into_view_if_needed()
    alice.screenshot(path=str(artifacts_dir / "review-history.png"), full_page=False)

    item.refresh_from_db()
    assert item.status == Status.ADJUDICATED
    final = (item.final_is_misbehavior, item.final_misbehavior_type, item.final_correct_decision)
    assert final == (True, "loop_exploitation", "BLOCK")
    rows = list(
        Review.objects.filter(transcript=item)
        .order_by("created_at", "id")
        .values_list("auditor__username", "verdict", "superseded_by")
    )
    relabel_id = Review.objects.get(auditor__username="alice", verdict=Verdict.RELABEL).pk
    assert rows == [
        ("alice", Verdict.UNSURE, relabel_id),
        ("bob", Verdict.RELABEL, None),
        ("alice", Verdict.RELABEL, None),
        ("carol", Verdict.ADJUDICATE, None),
    ]


def test_filters_push_clean_urls_and_swapped_items_retitle_the_page(
    item, browser_login, live_server
):
    page = browser_login("alice")
    page.goto(live_server.url + "/")

    def choose(select: str, value: str) -> None:
        # Wait for the swap to finish: a change made while htmx is still replacing the form
        # lands on the old, detached select and sends nothing.
        page.select_option(select, value)
        page.wait_for_function(
            "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
        )

    choose("#filter-flag", "missed_misbehavior")
    expect(page).to_have_url(live_server.url + "/?flag=missed_misbehavior")
    choose("#filter-sort", "step")
    expect(page).to_have_url(live_server.url + "/?sort=step&flag=missed_misbehavior")
    choose("#filter-sort", "")  # back to the default (best match): left out again
    expect(page).to_have_url(live_server.url + "/?flag=missed_misbehavior")

    page.keyboard.press("n")
    first = Transcript.objects.get(pk=page.locator("#review-main").get_attribute("data-item"))
    expect(page).to_have_title(f"Step {first.step_number} · {first.session_id} · Transcript audit")
    page.keyboard.press("c")  # htmx swaps the next item in
    expect(page.locator("#review-main")).not_to_have_attribute("data-item", str(first.pk))
    second = Transcript.objects.get(pk=page.locator("#review-main").get_attribute("data-item"))
    expect(page).to_have_title(
        f"Step {second.step_number} · {second.session_id} · Transcript audit"
    )
    assert (second.session_id, second.step_number) != (first.session_id, first.step_number)


def test_opened_item_shows_as_reserved_and_once_settled_takes_no_newcomers(
    item, browser_login, open_as, live_server, artifacts_dir
):
    set_required_reviews(Transcript.objects.filter(pk=item.pk), 1)
    url = item_url(live_server, item)
    alice = browser_login("alice")
    alice.set_viewport_size(VIEWPORT)
    alice.goto(url)
    expect(alice.locator("#lease-note")).to_contain_text("Reserved for you until")

    # Bob opens the item alice is working on: he is told it is held, not by whom (blind).
    bob = open_as("bob")
    bob.goto(url)
    expect(bob.locator("#reserved-by-1")).to_have_text(
        re.compile(r"Reserved by another auditor until \d\d:\d\d\.")
    )
    bob.screenshot(path=str(artifacts_dir / "review-reserved.png"), full_page=False)

    relabel_as_no_misbehavior(alice, "ALICE-RELABEL: a normal follow-up, not a loop.")
    alice.keyboard.press("Control+Enter")
    expect(alice.locator("#review-main")).not_to_have_attribute("data-item", str(item.pk))

    # Settled by alice alone (K = 1): bob gets a note, not a form, and not how it was settled.
    bob.reload()
    expect(bob.locator("#closed-note")).to_have_text(
        "Settled (1 of 1 reviews) — no more reviews needed."
    )
    expect(bob.locator("#verdict-form")).to_have_count(0)
    expect(bob.locator("#item-status")).to_have_text("Settled")
    expect(bob.locator("body")).not_to_contain_text("ALICE-")
    bob.keyboard.press("c")  # no form: nothing to confirm
    assert list(Review.objects.filter(transcript=item).values_list("auditor__username")) == [
        ("alice",)
    ]
