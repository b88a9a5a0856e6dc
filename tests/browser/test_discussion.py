"""Discussion in Chromium (issue 11): a comment is hidden from a blind co-reviewer (K = 2) until
their own verdict, and seen after it; the thread works through htmx, its hostile text never
runs, and the page's CSP holds. Screenshots go to test-artifacts/."""

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from audit.models import Comment, Transcript
from audit.review.workflow import set_required_reviews
from tests.conftest import PASSWORD
from tests.factories import fresh, import_records, make_misbehavior

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1400, "height": 950}
SECRET = "alice-thinks-step-3-is-the-real-problem"
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@pytest.fixture
def item(auditor, auditor2, tmp_path) -> Transcript:
    [t] = import_records([make_misbehavior(mb_type="reward_hacking", decision="APPROVE")], tmp_path)
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    return fresh(t)


@pytest.fixture
def open_as(browser, live_server) -> Iterator[Callable[[str], tuple[Page, list[str]]]]:
    """``open_as(username)``: a logged-in page in its own browser context, and the list its
    console errors and CSP violations collect in."""
    contexts = []

    def open_page(username: str) -> tuple[Page, list[str]]:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        problems: list[str] = []
        # Console errors (CSP violations among them) and failed responses (the browser's own
        # favicon request aside, which the app does not serve).
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on(
            "response",
            lambda r: (
                problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and not r.url.endswith("/favicon.ico")
                else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(live_server.url + "/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        with page.expect_navigation():
            page.press("#id_password", "Enter")
        return page, problems

    yield open_page
    for context in contexts:
        context.close()


def test_a_comment_is_hidden_from_a_blind_co_reviewer_until_their_verdict(
    item, open_as, live_server, artifacts_dir
):
    url = f"{live_server.url}/t/{item.pk}/"
    alice, alice_problems = open_as("alice")
    alice.goto(url)
    thread = alice.locator("#discussion")
    # alice comments through htmx: only the region is swapped, the page stays.
    alice.evaluate("document.body.dataset.stayed = 'yes'")
    thread.locator("#comment-text").fill(f"{SECRET}\n{HOSTILE}")
    thread.locator("#btn-comment").click()
    expect(alice.locator("#discussion-notice")).to_have_text("Comment added.")
    expect(alice.locator("#comment-list .comment-text").first).to_contain_text(SECRET)
    expect(alice.locator("#comment-list")).to_contain_text("<script>window.__pwned=2</script>")
    assert alice.evaluate("document.body.dataset.stayed") == "yes"
    assert alice.evaluate("window.__pwned") is None
    # And marks it.
    alice.locator("#btn-mark").click()
    expect(alice.locator("#needs-discussion")).to_be_visible()
    assert Comment.objects.filter(transcript=item).count() == 1

    bob, bob_problems = open_as("bob")
    bob.goto(url)
    region = bob.locator("#discussion")
    expect(region.locator("#discussion-hidden")).to_have_text(
        "Other auditors' comments are shown once you have given your verdict."
    )
    expect(region).not_to_contain_text(SECRET)
    expect(region).not_to_contain_text("alice")
    expect(region.locator("#needs-discussion")).to_be_visible()
    expect(region.locator("#mark-note")).not_to_contain_text("alice")
    bob.screenshot(path=str(artifacts_dir / "discussion-blind.png"), full_page=True)

    # bob gives his verdict (confirm), then comes back to the item.
    bob.locator("#btn-confirm").click()
    expect(bob.locator(".msg-success").first).to_contain_text("Saved your confirm")
    bob.goto(url)
    region = bob.locator("#discussion")
    expect(region.locator("#discussion-hidden")).to_have_count(0)
    expect(region).to_contain_text(SECRET)
    expect(region.locator(".comment-author").first).to_have_text("alice")
    assert bob.evaluate("window.__pwned") is None
    bob.screenshot(path=str(artifacts_dir / "discussion-after-verdict.png"), full_page=True)

    # alice edits hers; bob sees "edited" and the earlier text in the history.
    alice.locator("#comment-list .comment-edit summary").click()
    alice.locator("#comment-list .comment-edit textarea").fill("step 3 after all")
    alice.locator("#comment-list .comment-edit button").click()
    expect(alice.locator("#discussion-notice")).to_contain_text("Comment edited")
    bob.reload()
    expect(bob.locator(".comment-edited")).to_be_visible()
    bob.locator(".comment-history summary").click()
    expect(bob.locator(".comment-revisions")).to_contain_text(SECRET)

    csp = [p for p in alice_problems + bob_problems if "Content Security Policy" in p]
    assert not csp, csp
    assert not alice_problems and not bob_problems, alice_problems + bob_problems
