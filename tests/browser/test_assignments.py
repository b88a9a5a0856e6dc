"""Assignments in real Chromium (issue 11): staff assign an item, "Next" serves it to its auditor
before higher-priority work, and after the verdict its progress shows on my-work and on the
assignments page."""

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from audit.models import AssignmentTask, Transcript
from tests.conftest import PASSWORD
from tests.factories import import_records, make_misbehavior
from tests.team.test_assignments import over_block

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page: Page, url: str, username: str) -> Page:
    page.goto(url + "/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.press("#id_password", "Enter")
    return page


def csp_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    return errors


def test_an_assignment_is_served_first_and_its_progress_shown(
    auditor, staff_user, browser: Browser, live_server, tmp_path
):
    rows = import_records(
        [
            *(make_misbehavior(decision="APPROVE", session_id="mm", step_number=i) for i in (1, 2)),
            over_block(1),
        ],
        tmp_path,
    )
    low = rows[2]
    assert low.in_queue and low.priority < min(t.priority for t in rows[:2])

    # Staff assign the low-priority item to alice on the assignments page.
    staff = login(browser.new_context().new_page(), live_server.url, "sam")
    staff_csp = csp_errors(staff)
    staff.goto(live_server.url + "/assignments/")
    staff.fill("#id_name", "Over-blocks for alice")
    staff.fill("#id_session", "ob")
    staff.select_option("#id_status", "open")
    staff.fill("#id_k", "1")
    staff.get_by_label("alice").check()
    with staff.expect_navigation():
        staff.get_by_role("button", name="Assign").click()
    expect(staff.locator("h1")).to_contain_text("Over-blocks for alice")
    assert AssignmentTask.objects.get().transcript_id == low.pk

    # Alice starts Next from my-work: the assigned item comes first.
    alice = login(browser.new_context().new_page(), live_server.url, "alice")
    alice_csp = csp_errors(alice)
    alice.goto(live_server.url + "/my-work/")
    expect(alice.locator("#waiting")).to_contain_text("1 assigned item waiting for you")
    row = alice.locator("#my-assignments tr[data-assignment]")
    expect(row.locator("[data-done]")).to_have_text("0")
    expect(row.locator("[data-total]")).to_have_text("1")
    alice.get_by_role("button", name="Start Next on my assignments").click()
    expect(alice.locator("#review-main")).to_have_attribute("data-item", str(low.pk))
    alice.keyboard.press("c")  # confirm: saved, and Next moves on to the queue
    expect(alice.locator("#review-main")).not_to_have_attribute("data-item", str(low.pk))
    assert Transcript.objects.get(pk=low.pk).review_count == 1

    alice.goto(live_server.url + "/my-work/")
    row = alice.locator("#my-assignments tr[data-assignment]")
    expect(row.locator("[data-done]")).to_have_text("1")
    expect(row.locator("[data-open]")).to_have_text("0")
    expect(alice.locator("#waiting")).to_contain_text("0 assigned items waiting")

    staff.goto(live_server.url + "/assignments/")
    line = staff.locator('.assignment-progress tr[data-auditor="alice"]')
    expect(line.locator("[data-done]")).to_have_text("1")
    expect(line.locator("[data-total]")).to_have_text("1")
    expect(staff.locator("[data-tasks-done]").first).to_have_text(re.compile(r"1 of 1 tasks"))
    assert staff_csp == [] and alice_csp == []
