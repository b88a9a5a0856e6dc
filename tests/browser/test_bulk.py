"""Bulk actions in real Chromium (issue 11): an adjudicator sets K on all the rows matching the
queue's filters, through the confirmation that says how many, and K changes in the database
for exactly those rows."""

import re

import pytest
from playwright.sync_api import expect

from audit.models import Transcript
from tests.browser.test_accessibility import serious
from tests.factories import import_fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_bulk_set_k_on_all_matching_rows(adjudicator, browser_login, live_server, artifacts_dir):
    for name in ("noisy_s1", "rule_s0", "approve_s2", "block_s3"):
        import_fixture(name)
    flag = "over_block"
    matching = Transcript.objects.filter(in_queue=True, flag_over_block=True)
    expected = sorted(matching.values_list("pk", flat=True))
    assert len(expected) > 50  # more than one page: "all matching" is not "this page"
    others = list(Transcript.objects.exclude(pk__in=expected).values_list("pk", flat=True))

    page = browser_login("carol")
    page.goto(live_server.url + "/")
    page.select_option("#filter-flag", flag)
    expect(page).to_have_url(re.compile(rf"flag={flag}"))
    expect(page.locator("#bulk-all")).to_contain_text(f"Apply to all {len(expected)} matching")

    # Ticking every row of the page ticks each row's box (review.js).
    page.check("#bulk-pick-page")
    expect(page.locator("input.bulk-pick:checked")).to_have_count(50)
    page.screenshot(path=str(artifacts_dir / "bulk-queue.png"))
    assert serious(page, "queue with rows ticked") == []

    page.select_option("#bulk-action", "set_k")
    page.fill("#bulk-k", "3")
    with page.expect_navigation():
        page.click("#bulk-all")
    expect(page.locator("#bulk-count")).to_have_text(str(len(expected)))
    page.screenshot(path=str(artifacts_dir / "bulk-confirm.png"))
    assert serious(page, "bulk confirmation") == []
    assert set(Transcript.objects.values_list("required_reviews", flat=True)) == {1}

    with page.expect_navigation():
        page.click("#bulk-confirm-button")
    expect(page).to_have_url(re.compile(rf"/\?flag={flag}$"))
    expect(page.locator(".messages")).to_contain_text(
        f"K set to 3 on {len(expected)} of {len(expected)} item(s)."
    )
    assert set(
        Transcript.objects.filter(pk__in=expected).values_list("required_reviews", flat=True)
    ) == {3}
    assert set(
        Transcript.objects.filter(pk__in=others).values_list("required_reviews", flat=True)
    ) == {1}
