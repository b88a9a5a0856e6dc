"""The dashboard in real Chromium: demo-like data, a screenshot, and the figures on the page
equal to ``manage.py summarize --json``; filtering swaps the figures and keeps the URL. The
research lead's view (an adjudicator) has every figure; a blind auditor's, only the as-imported
ones and a note saying why."""

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.ingest.importer import import_file
from audit.metrics.summaries import VIEWS
from audit.models import Review, Transcript
from audit.review.workflow import adjudicate, submit_review
from tests.factories import confirmable

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MB = {"is_misbehavior": True, "misbehavior_type": "reward_hacking", "correct_decision": "BLOCK"}
SAFE = {"is_misbehavior": False, "misbehavior_type": "", "correct_decision": "APPROVE"}


def _generated(tmp_path, *, count, seed, name):
    from audit.demo.generator import write_jsonl

    path = tmp_path / name
    write_jsonl(path, count=count, seed=seed)
    return path


def _verdict(item, user, verdict, labels=None):
    item.refresh_from_db()
    labels = labels or {}
    return submit_review(
        item,
        auditor=user,
        verdict=verdict,
        rationale="" if verdict == "confirm" else "checked the earlier steps",
        seconds_spent=40 + item.pk % 90,
        based_on_version=item.version,
        **labels,
    )


@pytest.fixture
def demo_data(tmp_path, auditor, auditor2, adjudicator):
    """Generated transcripts in two batches, one with K=2, and a few days of reviews."""
    first = import_file(_generated(tmp_path, count=300, seed=11, name="demo-a.jsonl"))
    second = import_file(
        _generated(tmp_path, count=200, seed=12, name="demo-b.jsonl"), required_reviews=2
    )
    assert not first.failed and not second.failed
    # Only items whose imported label is complete can be confirmed (reviews.incomplete_label).
    queued = confirmable(Transcript.objects.filter(batch_id=first.batch_id, in_queue=True), 40)
    for i, item in enumerate(queued):
        labels = MB if i % 4 == 0 else None
        _verdict(item, auditor, "relabel" if labels else "confirm", labels)
    pairs = confirmable(Transcript.objects.filter(batch_id=second.batch_id, in_queue=True), 24)
    for i, item in enumerate(pairs):
        _verdict(item, auditor, "confirm")
        if i % 5 == 0:
            _verdict(item, auditor2, "relabel", MB if not item.is_misbehavior else SAFE)
        else:
            _verdict(item, auditor2, "confirm")
    for item in Transcript.objects.filter(status="disputed")[:3]:
        item.refresh_from_db()
        adjudicate(
            item,
            adjudicator=adjudicator,
            rationale="the debate transcript settles it",
            based_on_version=item.version,
            **MB,
        )
    # Spread the reviews over the last few days for the progress-over-time picture.
    now = timezone.now()
    for offset, review_ids in enumerate(_chunks(list(Review.objects.values_list("id", flat=True)))):
        Review.objects.filter(id__in=review_ids).update(
            created_at=now - dt.timedelta(days=4 - offset)
        )
    return first, second


def _chunks(ids, parts=5):
    size = max(1, -(-len(ids) // parts))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _summary(*args):
    out = StringIO()
    call_command("summarize", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


# Every scalar of export_summary(); ``summarize --json`` must give exactly these, so a key added
# there without a dashboard cell (or dropped from it) fails here instead of going unchecked.
SCALAR_KEYS = {
    "total_decisions",
    "correct_decisions",
    "accuracy",
    "true_positives",
    "false_positives",
    "false_negatives",
    "total_misbehaviors",
    "precision",
    "recall",
}
DISTRIBUTION = "alignment_distribution"
# Not a figure: the selection's session (the session filter), echoed as the exporter did.
NOT_FIGURES = {"session_id"}


def _scalars(summary):
    scalars = {
        key: value
        for key, value in summary.items()
        if key not in NOT_FIGURES and not isinstance(value, dict | list)
    }
    assert set(scalars) == SCALAR_KEYS, sorted(scalars)
    return scalars


def _as_shown(values):
    """How the summary table prints a value: as is, or a dash for None."""
    return {key: "–" if value is None else str(value) for key, value in values.items()}


def _scalars_on_page(page, basis):
    shown = {}
    for key in SCALAR_KEYS:
        cell = page.get_by_test_id(f"summary-{basis}-{key}")
        assert cell.count() == 1, f"no summary cell for {basis} {key}"
        shown[key] = cell.inner_text()
    return shown


def _distribution_on_page(page, basis, summary):
    """{category: n} from the summary table's category rows for ``basis``. The table lists the
    union of both bases' categories, so a category only the other basis has shows 0 here; it is
    left out unless ``summary`` itself lists it (with 0)."""
    prefix = f"summary-{basis}-{DISTRIBUTION}-"
    cells = page.locator(f'[data-testid^="{prefix}"]')
    shown = {}
    for i in range(cells.count()):
        cell = cells.nth(i)
        category = cell.get_attribute("data-testid").removeprefix(prefix)
        shown[category] = int(cell.inner_text())
    missing = set(summary[DISTRIBUTION]) - set(shown)
    assert not missing, f"no {DISTRIBUTION} cell for {basis}: {sorted(missing)}"
    return {c: n for c, n in shown.items() if n or c in summary[DISTRIBUTION]}


def test_dashboard_figures_match_summarize_and_are_saved_as_a_screenshot(
    demo_data, browser_login, live_server, artifacts_dir
):
    page = browser_login("carol")
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(live_server.url + "/dashboard/")
    expected = _summary()
    for basis in VIEWS:
        assert _scalars_on_page(page, basis) == _as_shown(_scalars(expected[basis])), basis
        assert (
            _distribution_on_page(page, basis, expected[basis])
            == (expected[basis]["alignment_distribution"])
        ), basis
    assert expected["as_imported"]["accuracy"] != expected["current"]["accuracy"]
    assert (
        expected["settled_before"]["alignment_distribution"]
        != expected["settled_after"]["alignment_distribution"]
    )
    assert page.get_by_test_id("progress-total").inner_text() == "500"
    # Every picture is an image whose accessible name is its title.
    for name in ("Reviews per day", "Confusion matrix, as imported", "Confusion matrix, current",
                 "Confusion matrix, settled, before review",
                 "Confusion matrix, settled, after review",
                 "Label changes on settled records, imported category to settled category",
                 "Overseer accuracy per misbehavior type"):  # fmt: skip
        assert page.get_by_role("img", name=name, exact=True).count() == 1, name
    page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)


def test_filtering_swaps_the_figures_and_puts_the_filter_in_the_url(
    demo_data, browser_login, live_server, artifacts_dir
):
    first, _second = demo_data
    page = browser_login("carol")
    page.goto(live_server.url + "/dashboard/")
    with page.expect_response(lambda r: "/dashboard/?" in r.url):
        page.select_option("#id_batch", str(first.batch_id))
    page.wait_for_url(f"**/dashboard/?*batch={first.batch_id}*")
    page.get_by_test_id("progress-total").filter(has_text="300").wait_for()
    expected = _summary("--batch", str(first.batch_id))
    for basis in VIEWS:
        assert _scalars_on_page(page, basis) == _as_shown(_scalars(expected[basis])), basis
        assert (
            _distribution_on_page(page, basis, expected[basis]) == (expected[basis][DISTRIBUTION])
        ), basis
    # The URL is the state: reloading it gives the same figures.
    page.reload()
    assert page.get_by_test_id("progress-total").inner_text() == "300"
    assert page.locator("#id_batch").input_value() == str(first.batch_id)


def test_a_blind_auditor_sees_the_as_imported_figures_and_a_note(
    demo_data, browser_login, live_server
):
    page = browser_login("alice")
    page.goto(live_server.url + "/dashboard/")
    note = page.locator("#blind-note")
    assert "so reviews stay blind" in note.inner_text()
    expected = _summary()
    assert _scalars_on_page(page, "as_imported") == _as_shown(_scalars(expected["as_imported"]))
    for view in ("current", "settled_before", "settled_after"):
        assert page.locator(f'[data-testid^="summary-{view}-"]').count() == 0
    assert page.get_by_role("img", name="Confusion matrix, current", exact=True).count() == 0
    assert page.get_by_test_id("labels-changed").count() == 0
    assert page.get_by_test_id("status-relabeled").count() == 0
    assert page.get_by_test_id("progress-settled").inner_text() == str(
        Transcript.objects.filter(status__in=["confirmed", "relabeled", "adjudicated"]).count()
    )
