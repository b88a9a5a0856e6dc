"""A long record's item page in real Chromium (issue 10): sections at full height that fold
from the keyboard, a jump bar that unfolds what it jumps to, and a cut field whose whole text is
fetched in place, escaped. (The page's load time is measured by hand, never asserted here.)"""

import pytest
from playwright.sync_api import expect

from tests.factories import import_records, make_misbehavior

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

THINKING = "<u>why</u> " * 240_000  # 2.6 MB, hostile


@pytest.fixture
def long_item(auditor, tmp_path):
    [t] = import_records(
        [
            make_misbehavior(
                decision="APPROVE",
                cot_analysis={"thinking_text": THINKING},
                debate_result={"final_decision": "BLOCK", "final_reasoning": "loops"},
                proposal={"worker_reasoning": "retry " * 3000},
            )
        ],
        tmp_path,
    )
    return t


def test_sections_are_full_height_fold_and_the_full_text_comes_in_place(
    long_item, browser_login, live_server, artifacts_dir
):
    page = browser_login("alice")
    page.set_viewport_size({"width": 1440, "height": 900})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{live_server.url}/t/{long_item.pk}/?q=retry")
    thinking = page.locator("#thinking-text")
    expect(thinking).to_be_visible()
    # Full height: no inner scroll box (the 330 px boxes of before).
    assert thinking.evaluate("el => el.scrollHeight <= el.clientHeight + 1")
    assert thinking.evaluate("el => el.clientHeight") > 1000
    expect(page.locator("#worker-reasoning mark").first).to_have_text("retry")
    page.screenshot(path=str(artifacts_dir / "item-long.png"))

    # Fold CoT from the keyboard; the jump bar unfolds it again.
    toggle = page.locator("#cot-title button.fold-toggle")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#cot-body")).to_be_hidden()
    page.locator("#jumpbar a[href='#cot']").click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#cot-body")).to_be_visible()

    page.locator("#collapse-all").click()
    for body in ("#proposal-body", "#decision-body", "#cot-body", "#context-body"):
        expect(page.locator(body)).to_be_hidden()
    page.locator("#expand-all").click()
    expect(page.locator("#proposal-body")).to_be_visible()

    # The whole thinking text, fetched for that one field, replaces the cut copy.
    note = page.locator("#field-thinking_text .cut")
    expect(note).to_contain_text("Showing 20 KB of 2.6 MB")
    page.locator("#field-thinking_text a.show-full").click()
    expect(page.locator("#field-thinking_text .cut")).to_have_text("The full text: 2.6 MB.")
    length = page.locator("#field-thinking_text pre").evaluate("el => el.textContent.length")
    assert length == len(THINKING)
    assert page.locator("#field-thinking_text u").count() == 0  # shown as text, never as HTML
    assert page.url.split("#")[0].endswith(f"/t/{long_item.pk}/?q=retry")  # URL unchanged
    assert dialogs == []
