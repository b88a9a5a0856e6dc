"""The dashboard's monitor evaluation in real Chromium: an adjudicator sees the ROC plot as an
image named by its title, with every curve's AUROC and n written out as text, and the table
beside it equal to ``manage.py evaluate_monitors --json``; a plain auditor sees none of it."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from audit.ingest.importer import import_file
from audit.models import Transcript
from audit.review.workflow import submit_review
from tests.factories import confirmable

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def reviewed(tmp_path, settings, auditor, adjudicator):
    from audit.demo.generator import write_jsonl

    settings.AUDIT_SPOT_CHECK_RATE = 0.3
    path = tmp_path / "demo.jsonl"
    write_jsonl(path, count=240, seed=21)
    result = import_file(path)
    assert not result.failed
    batch = Transcript.objects.filter(batch_id=result.batch_id)
    flagged = confirmable(batch.filter(in_queue=True, flag_spot_check=False), 30)
    spot = confirmable(batch.filter(flag_spot_check=True), 15)
    assert len(spot) >= 5
    for item in flagged + spot:
        item.refresh_from_db()
        submit_review(
            item,
            auditor=auditor,
            verdict="confirm",
            seconds_spent=30,
            based_on_version=item.version,
        )


def _expected():
    out = StringIO()
    call_command("evaluate_monitors", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_the_roc_plot_and_table_show_the_command_s_figures_as_text(
    reviewed, browser_login, live_server, artifacts_dir
):
    expected = _expected()
    assert expected["weighted"]["estimable"]
    page = browser_login("carol")
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(live_server.url + "/dashboard/")
    # The section comes after the rest of the dashboard (htmx, on load).
    page.locator("#monitors-naive-warning").wait_for()
    title = f"ROC curves, weighted: estimated for all {expected['population']['records']} records"
    plot = page.get_by_role("img", name=title, exact=True)
    assert plot.count() == 1
    legend = plot.locator("text").all_text_contents()
    for signal in expected["signals"]:
        figure = signal["overall"]["weighted"]
        if signal["kind"] != "score" or "auroc" not in figure:
            continue
        line = (
            f"{signal['label']}: AUROC {figure['auroc']:.3f}, "
            f"n={figure['n_positive']}+/{figure['n_negative']}-"
        )
        assert line in legend, line
        for basis in ("naive", "weighted"):
            cell = page.get_by_test_id(f"monitor-{signal['name']}-{basis}")
            assert cell.inner_text() == f"{signal['overall'][basis]['auroc']:.3f}"
    assert page.locator("#monitors-naive-warning").is_visible()
    page.locator("#monitors").screenshot(path=str(artifacts_dir / "dashboard-monitors.png"))


def test_a_plain_auditor_sees_no_monitor_section(reviewed, browser_login, live_server):
    page = browser_login("alice")
    page.goto(live_server.url + "/dashboard/")
    assert page.get_by_test_id("progress-total").inner_text() == "240"
    assert page.locator("#monitors").count() == 0
    assert page.get_by_role("img", name="ROC curves", exact=False).count() == 0
