"""The guidelines in real Chromium: the definition beside the verdict selects follows the
select; a hostile rubric on the page runs nothing (and needs no CSP violation to be stopped);
a guideline edit makes a version that the next review records and the export carries."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from audit.models import Review, Status, Transcript
from audit.publish import export as exporters
from audit.review.workflow import set_required_reviews
from audit.team import guidelines
from tests.factories import confirm, fresh, import_records, make_misbehavior, make_record, relabel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Set up before any page script: what the page's scripts and the CSP did.
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || ""));
});
"""

HOSTILE_ENTRY = """
## Misbehavior types

### `hallucination`

<script>window.__pwned = "script"</script>
<img src="x" onerror="window.__pwned = 'img'">
[click me](javascript:window.__pwned='link') <a href="javascript:window.__pwned='raw'">raw link</a>
[encoded](&#106;avascript:window.__pwned='entity')
<div style="width:100px;height:100px" onmouseover="window.__pwned='hover'">hover me</div>
<svg onload="window.__pwned='svg'"></svg> <iframe src="javascript:window.__pwned='frame'"></iframe>
"""


@pytest.fixture
def item(tmp_path, auditor):
    [t] = import_records(
        [make_misbehavior(mb_type="loop_exploitation", decision="APPROVE")], tmp_path
    )
    return t


def test_the_rubric_beside_the_selects_follows_the_select(item, browser_login, live_server):
    page = browser_login("alice")
    page.goto(f"{live_server.url}/t/{item.pk}/")
    page.keyboard.press("r")
    expect(page.locator("#relabel-fields")).to_be_visible()
    chosen_type = page.locator("#rubric-chosen-misbehavior_type")
    chosen_decision = page.locator("#rubric-chosen-correct_decision")
    expect(chosen_type).to_contain_text("Repeating an action already taken")
    expect(chosen_decision).to_contain_text("Stop the action and tell the worker why")
    expect(page.locator(".rubric-all").first).not_to_have_attribute("open", "")

    page.select_option("#id_misbehavior_type", "prompt_injection")
    expect(chosen_type).to_contain_text("instructions addressed to the overseer")
    expect(chosen_type).not_to_contain_text("Repeating an action already taken")
    page.select_option("#id_correct_decision", "REASSIGN")
    expect(chosen_decision).to_contain_text("hand it to the worker whose domain it is")

    # "No misbehavior" empties and disables the type: no definition, a prompt instead.
    page.select_option("#id_is_misbehavior", "no")
    expect(chosen_type).to_contain_text("Choose a misbehavior type to see its definition.")

    # The keyboard path through the form is unchanged: select to select, then the rationale.
    page.focus("#id_is_misbehavior")
    page.keyboard.press("Tab")
    expect(page.locator("#id_correct_decision")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#id_rationale")).to_be_focused()


def test_the_adjudication_rubric_follows_use_these_values(
    tmp_path, auditor, auditor2, adjudicator, browser_login, live_server
):
    [t] = import_records([make_record()], tmp_path, name="k2.jsonl")
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    confirm(t, auditor)
    relabel(t, auditor2, misbehavior_type="escalation_bombing")
    assert fresh(t).status == Status.DISPUTED
    page = browser_login("carol")
    page.goto(f"{live_server.url}/adjudicate/{t.pk}/")
    chosen_type = page.locator("#rubric-chosen-misbehavior_type")
    expect(chosen_type).to_contain_text("Choose a misbehavior type")
    page.keyboard.press("2")  # bob's values: escalation_bombing, BLOCK
    expect(chosen_type).to_contain_text("Paging many teams at once")
    expect(page.locator("#rubric-chosen-correct_decision")).to_contain_text("Stop the action")


def test_a_hostile_rubric_on_the_page_runs_nothing(
    item, staff_user, browser_login, live_server, page, artifacts_dir
):
    text = guidelines.default_text().replace("### `hallucination`", "### `was-hallucination`")
    guidelines.save_version(text + HOSTILE_ENTRY, by=staff_user, based_on=1, accept_gaps=True)
    page.add_init_script(WATCH)
    browser_login("alice")
    headers: dict[str, str] = {}
    page.on(
        "response",
        lambda response: headers.setdefault(
            response.url, response.headers.get("content-security-policy", "")
        ),
    )
    page.goto(f"{live_server.url}/t/{item.pk}/")
    page.keyboard.press("r")
    page.select_option("#id_misbehavior_type", "hallucination")
    chosen = page.locator("#rubric-chosen-misbehavior_type")
    expect(chosen).to_contain_text("window.__pwned")  # shown as text
    chosen.get_by_text("hover me", exact=False).hover()
    chosen.get_by_text("click me", exact=False).click()
    page.locator(".rubric-all summary").first.click()  # open every definition
    page.screenshot(path=str(artifacts_dir / "guidelines-hostile.png"), full_page=False)
    page.goto(f"{live_server.url}/guidelines/")
    expect(page.locator("#rubric-page")).to_contain_text("window.__pwned")
    page.get_by_text("hover me", exact=False).first.hover()
    page.goto(f"{live_server.url}/guidelines/diff/")
    expect(page.locator("#guideline-diff")).to_contain_text("window.__pwned")
    for path in ("/guidelines/", "/guidelines/diff/"):
        page.goto(live_server.url + path)
        assert page.evaluate("typeof window.__pwned") == "undefined", path
        assert page.evaluate("window.__violations") == [], path
    assert page.locator("a[href^='javascript']").count() == 0
    # The CSP the pages send is the app's, unchanged by the rubric (nonces aside).
    nonce = re.compile(r"'nonce-[^']+'")
    item_csp = nonce.sub("", headers[f"{live_server.url}/t/{item.pk}/"])
    guide_csp = nonce.sub("", headers[f"{live_server.url}/guidelines/"])
    assert item_csp == guide_csp and "script-src 'self'" in item_csp
    assert "unsafe-inline" not in item_csp


def test_a_guideline_edit_makes_a_version_that_reviews_and_exports_record(
    item, staff_user, browser_login, live_server, artifacts_dir
):
    guidelines.current_version()
    page = browser_login("sam")
    page.goto(f"{live_server.url}/guidelines/")
    expect(page.locator("h1")).to_contain_text("v1")
    page.click("#guideline-edit-link")
    editor = page.locator("#id_text")
    expect(editor).to_have_value(re.compile(r"### `hallucination`"))
    editor.fill(editor.input_value() + "\nLoops: compare with the last three steps.\n")
    page.fill("#id_note", "loops: how far back to look")
    page.screenshot(path=str(artifacts_dir / "guidelines-edit.png"), full_page=False)
    with page.expect_navigation():
        page.click("#guideline-save")
    expect(page.locator("h1")).to_contain_text("v2")
    expect(page.locator("#rubric-page")).to_contain_text("compare with the last three steps")
    expect(page.locator(".messages").first).to_contain_text("Saved guidelines version 2")

    page.goto(f"{live_server.url}/guidelines/history/")
    expect(page.locator('tr[data-version="2"]')).to_contain_text("loops: how far back to look")

    page.goto(f"{live_server.url}/t/{item.pk}/")
    page.keyboard.press("?")
    expect(page.locator("#help-guidelines")).to_contain_text("Guidelines v2")
    page.keyboard.press("Escape")
    page.keyboard.press("c")
    expect(page).not_to_have_url(re.compile(rf"/t/{item.pk}/$"))  # saved, moved on
    review = Review.objects.get(transcript=item)
    assert review.auditor == get_user_model().objects.get(username="sam")
    assert review.guideline_version_id == 2
    [record] = exporters.iter_records(Transcript.objects.filter(pk=item.pk))
    assert [entry["guideline_version"] for entry in record["review"]["reviews"]] == [2]
    summary = exporters.build_summary(
        Transcript.objects.all(), files={"all.jsonl": Transcript.objects.all()}
    )
    assert summary["guideline_versions"]["versions"] == [{"version": 2, "reviews": 1}]


def test_the_guidelines_pages_have_no_serious_axe_finding(
    item, staff_user, browser_login, live_server, page
):
    from tests.browser.test_accessibility import serious

    guidelines.current_version()
    guidelines.save_version(
        guidelines.default_text() + "\nA second version.\n", by=staff_user, based_on=1
    )
    browser_login("sam")
    found: list[str] = []
    for path in (
        "/guidelines/",
        "/guidelines/history/",
        "/guidelines/v/1/",
        "/guidelines/diff/",
        "/guidelines/edit/",
    ):
        page.goto(live_server.url + path)
        found += serious(page, path)
    page.goto(f"{live_server.url}/t/{item.pk}/")
    page.keyboard.press("r")
    page.locator(".rubric-all summary").first.click()
    found += serious(page, "item page, relabel, definitions open")
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    found += serious(page, "item page, help")
    page.set_viewport_size({"width": 390, "height": 800})
    for path in ("/guidelines/", "/guidelines/diff/", "/guidelines/edit/"):
        page.goto(live_server.url + path)
        wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
        assert not wide, f"{path} scrolls sideways at 390 px"
    assert found == []
