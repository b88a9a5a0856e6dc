"""Saved views in real Chromium (issue 11): filter the queue, save the view from its "Saved
views" menu, then open it from the list (the menu and the Saved views page), one click each."""

import re

import pytest
from playwright.sync_api import expect

from audit.models import SavedView, Transcript
from tests.browser.test_accessibility import serious
from tests.factories import import_fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_saved_view_opened_from_the_list(auditor, browser_login, live_server, artifacts_dir):
    import_fixture("noisy_s1")
    session = Transcript.objects.filter(in_queue=True).order_by("pk").first().session_id
    page = browser_login("alice")
    page.goto(live_server.url + "/")
    # Filter the queue (htmx swaps the results and pushes the URL).
    page.fill("#filter-session", session)
    page.press("#filter-session", "Enter")
    expect(page).to_have_url(re.compile(rf"session={session}"))
    expect(page.locator("tr[data-row]").first).to_be_visible()
    shown = page.locator("tr[data-row]").count()

    page.click("#saved-views-toggle")
    expect(page.locator("#saved-views-none")).to_be_visible()  # the list, fetched on opening
    page.fill("#save-view-name", "My session")
    page.check("#save-view-shared")
    with page.expect_navigation():
        page.click("#save-view")
    expect(page.locator(".messages")).to_contain_text("Saved the view 'My session'")
    view = SavedView.objects.get()
    assert (view.query, view.shared) == (f"session={session}", True)

    # Back to the whole queue, then open the view from the menu's list.
    page.goto(live_server.url + "/")
    expect(page.locator("#filter-session")).to_have_value("")
    page.click("#saved-views-toggle")
    link = page.locator("#saved-views-items a.saved-view-link", has_text="My session")
    expect(link).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "saved-views-menu.png"))
    assert serious(page, "queue with the saved views menu open") == []
    link.click()
    expect(page).to_have_url(re.compile(rf"/\?session={session}$"))
    expect(page.locator("#filter-session")).to_have_value(session)
    expect(page.locator("tr[data-row]")).to_have_count(shown)

    # And from the Saved views page.
    page.goto(live_server.url + "/views/")
    page.screenshot(path=str(artifacts_dir / "saved-views-page.png"))
    assert serious(page, "saved views page") == []
    page.click(f"#open-view-{view.pk}")
    expect(page).to_have_url(re.compile(rf"/\?session={session}$"))
    expect(page.locator("#filter-session")).to_have_value(session)


def test_a_dashboard_view_saved_and_opened(auditor, browser_login, live_server, artifacts_dir):
    import_fixture("noisy_s1")
    session = Transcript.objects.order_by("pk").first().session_id
    page = browser_login("alice")
    page.goto(live_server.url + f"/dashboard/?session={session}")
    page.click("#saved-views-toggle")
    expect(page.locator("#saved-views-none")).to_be_visible()
    page.fill("#save-view-name", "One session")
    page.screenshot(path=str(artifacts_dir / "saved-views-dashboard.png"))
    with page.expect_navigation():
        page.click("#save-view")
    expect(page).to_have_url(re.compile(rf"/dashboard/\?session={session}$"))
    assert SavedView.objects.get(screen="dashboard").query == f"session={session}"
    page.goto(live_server.url + "/dashboard/")
    page.click("#saved-views-toggle")
    page.locator("#saved-views-items a.saved-view-link", has_text="One session").click()
    expect(page.locator("#id_session")).to_have_value(session)
