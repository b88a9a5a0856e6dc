"""The queue at 1440x900 in real Chromium (issue 10): compact rows (many more than the nine of
before fit above the fold), and sorting by a column header, which says how it sorts."""

import re

import pytest
from playwright.sync_api import expect

from tests.factories import import_fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_compact_rows_fit_and_headers_sort(auditor, browser_login, live_server, artifacts_dir):
    import_fixture("noisy_s1")
    import_fixture("rule_s0")
    page = browser_login("alice")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live_server.url + "/")
    expect(page.locator("#queue-table")).to_be_visible()
    above_fold = page.evaluate(
        "Array.from(document.querySelectorAll('tr[data-row]'))"
        ".filter(r => r.getBoundingClientRect().bottom <= window.innerHeight).length"
    )
    page.screenshot(path=str(artifacts_dir / "queue-compact.png"))
    assert above_fold >= 15, above_fold
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")

    step = page.locator("#sort-step")
    step.click()
    expect(page).to_have_url(re.compile(r"sort=step"))
    expect(page.locator("th:has(#sort-step)")).to_have_attribute("aria-sort", "ascending")
    numbers = [int(n) for n in page.locator("tr[data-row] td:nth-child(2)").all_inner_texts()]
    assert numbers == sorted(numbers)
    page.locator("#sort-step").click()
    expect(page.locator("th:has(#sort-step)")).to_have_attribute("aria-sort", "descending")
    expect(page.locator("th:has(#sort-priority)")).to_have_attribute("aria-sort", "none")
