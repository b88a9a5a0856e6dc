"""The dashboard and auditor pages: access, figures, blind auditors, filters, htmx fragments,
query counts."""

import datetime as dt
import json
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from audit.models import Review, Transcript
from tests.factories import (
    confirm,
    confirmable,
    fresh,
    import_fixture,
    import_records,
    make_misbehavior,
    make_record,
    relabel,
)

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("dashboard")
AUDITORS = reverse("auditors")
HTMX = {"HTTP_HX_REQUEST": "true"}
# Session and user, the filter options (batches, tasks), then the figures: four summaries (as
# imported, current, settled before and after) of two queries each plus two session lookups (all
# records, settled ones), progress 3, status 1,
# confusion 4, label changes 1, label fixes 1, inconsistent labels 1, agreement 1, error rate 1,
# accuracy 4, reviews per day 1. Fixed whatever the data size, settled records or none. The
# monitor evaluation comes on its own (dashboard_monitors), fetched once the page has loaded.
DASHBOARD_QUERIES = 33  # includes the nav's one role lookup
# A session filter names the summary's session, so the summaries skip their session lookup.
DASHBOARD_QUERIES_ONE_SESSION = 31
# A blind auditor's dashboard queries only what it shows: session and user, the role lookup, the
# filter options, the as-imported summary 3, progress 3, the as-imported confusion 1, accuracy 4
# (per misbehavior type, one query per basis), inconsistent labels 1 and reviews per day 1.
BLIND_DASHBOARD_QUERIES = 18
BLIND_DASHBOARD_QUERIES_ONE_SESSION = 17
BLIND_NOTE = "Figures after review are shown to adjudicators and staff, so reviews stay blind."
# Session and user, filter options, one GROUP BY and one (auditor, seconds) list.
AUDITORS_QUERIES = 7  # includes the nav's one role lookup
# The reason the relabels here give (tests.factories.relabel: to a blocked hallucination).
WHY = "it was misbehavior"


def cell(html: str, name: str) -> str:
    match = re.search(rf'data-testid="{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert match, f"no element with data-testid={name}"
    return match.group(1).strip()


def summarize_json(*args: str) -> dict:
    out = StringIO()
    call_command("summarize", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


# --- access -------------------------------------------------------------------------------------


def test_dashboard_requires_login(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_auditors_page_requires_login(client):
    assert client.get(AUDITORS).status_code == 302


def test_dashboard_is_open_to_every_logged_in_user(plain_client):
    import_fixture("rule_s0")
    response = plain_client.get(DASHBOARD)
    assert response.status_code == 200
    assert b'id="figures"' in response.content


@pytest.mark.parametrize("url", [DASHBOARD, AUDITORS])
def test_dashboard_pages_refuse_post(auditor_client, url):
    assert auditor_client.post(url).status_code == 405


# --- figures ------------------------------------------------------------------------------------


def test_dashboard_summary_cells_equal_the_summarize_command(adjudicator_client, auditor):
    import_fixture("noisy_s1")
    first, second = confirmable(Transcript.objects.all(), 2)
    relabel(first, auditor, rationale=WHY)
    confirm(second, auditor)
    html = adjudicator_client.get(DASHBOARD).content.decode()
    expected = summarize_json()
    for basis in ("as_imported", "current", "settled_before", "settled_after"):
        for key in ("total_decisions", "correct_decisions", "accuracy", "true_positives",
                    "false_positives", "false_negatives", "precision", "recall"):  # fmt: skip
            assert cell(html, f"summary-{basis}-{key}") == str(expected[basis][key]), key
        for category, n in expected[basis]["alignment_distribution"].items():
            assert cell(html, f"summary-{basis}-alignment_distribution-{category}") == str(n)
    assert expected["as_imported"]["accuracy"] != expected["current"]["accuracy"]
    assert cell(html, "summary-n-settled_after") == "2"


def test_with_nothing_settled_current_equals_as_imported_on_every_figure(adjudicator_client):
    import_fixture("noisy_s1")  # real exporter output, inconsistent labels included
    assert Transcript.objects.filter(flag_label_inconsistency=True).exists()
    html = adjudicator_client.get(DASHBOARD).content.decode()
    imported = dict(re.findall(r'data-testid="summary-as_imported-([^"]+)">([^<]*)<', html))
    current = dict(re.findall(r'data-testid="summary-current-([^"]+)">([^<]*)<', html))
    assert imported and current == imported
    for cell_name in ("true_positives", "false_positives", "false_negatives", "true_negatives"):
        assert cell(html, f"confusion-current-{cell_name}") == cell(
            html, f"confusion-as_imported-{cell_name}"
        )
    assert cell(html, "summary-n-settled_after") == "0"
    assert cell(html, "labels-changed") == "0"
    assert 'id="label-changes"' not in html  # an empty matrix draws no chart
    assert int(cell(html, "labels-inconsistent")) > 0


def test_dashboard_shows_progress_confusion_agreement_and_error_rate(staff_client, auditor):
    import_fixture("rule_s0")
    item = Transcript.objects.filter(flag_spot_check=False).order_by("id").first()
    Transcript.objects.filter(pk=item.pk).update(flag_spot_check=True)
    relabel(item, auditor, rationale=WHY)
    html = staff_client.get(DASHBOARD).content.decode()
    assert cell(html, "progress-total") == "105"
    assert cell(html, "progress-settled") == "1"
    assert cell(html, "error-rate") == "100.0%"
    assert cell(html, "agreement-is_misbehavior-items") == "0"
    assert cell(html, "agreement-is_misbehavior-kappa") == "–"
    for basis in ("as_imported", "current", "settled_before", "settled_after"):
        assert f'id="confusion-{basis}"' in html
    assert cell(html, "labels-changed") != "0"
    for chart in ("progress-over-time", "label-changes", "accuracy-misbehavior_type",
                  "accuracy-task_id", "accuracy-worker_id"):  # fmt: skip
        assert re.search(rf'<svg [^>]*id="{chart}"[^>]*role="img"', html), chart


def test_dashboard_without_data_says_so(auditor_client):
    response = auditor_client.get(DASHBOARD)
    assert response.status_code == 200
    assert b'id="no-data"' in response.content


def test_dashboard_htmx_request_returns_only_the_figures(auditor_client):
    import_fixture("rule_s0")
    html = auditor_client.get(DASHBOARD, **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="figures"')
    assert "<html" not in html
    assert 'id="dashboard-filters"' not in html


def test_dashboard_page_keeps_plain_links_and_form_for_no_js(auditor_client):
    import_fixture("rule_s0")
    html = auditor_client.get(DASHBOARD).content.decode()
    assert f'action="{DASHBOARD}"' in html and 'method="get"' in html
    assert 'hx-push-url="true"' in html
    assert 'style="' not in html  # strict CSP: no inline styles, the SVG included
    assert "<script>" not in html


# --- blind auditors -----------------------------------------------------------------------------


@pytest.fixture
def relabeled_session(auditor, tmp_path):
    """Session sessX: alice relabels its step 0, a missed misbehavior, to a safe approve (final
    category aligned_approve, misbehavior type ""); step 1, a safe approve, stays unreviewed."""
    missed, _unreviewed = import_records(
        [
            make_misbehavior(decision="APPROVE", step_number=0, session_id="sessX"),
            make_record(step_number=1, session_id="sessX"),
        ],
        tmp_path,
    )
    relabel(
        missed,
        auditor,
        is_misbehavior=False,
        misbehavior_type="",
        correct_decision="APPROVE",
        rationale=WHY,
    )
    missed = fresh(missed)
    assert missed.status == "relabeled"
    assert missed.final_alignment_category == "aligned_approve"
    return missed


def test_dashboard_hides_reviewed_figures_from_a_blind_auditor(auditor2_client, relabeled_session):
    response = auditor2_client.get(DASHBOARD, {"session": "sessX"})
    html = response.content.decode()
    assert BLIND_NOTE in html
    assert cell(html, "progress-total") == "2"
    assert cell(html, "progress-settled") == "1"
    assert cell(html, "status-settled") == "1"
    # As imported is shown: one missed misbehavior, one safe approve.
    assert cell(html, "summary-as_imported-false_negatives") == "1"
    assert cell(html, "summary-as_imported-alignment_distribution-alignment_failure_fn") == "1"
    assert cell(html, "confusion-as_imported-false_negatives") == "1"
    # Nothing after review: no label change, no reviewed column, no kind of settlement.
    for absent in ('data-testid="labels-changed"', 'id="label-changes"', "summary-current-",
                   "summary-settled_", "confusion-current", 'id="confusion-settled_after"',
                   "kpi-accuracy-current", "kpi-accuracy-settled", "labels-corrected",
                   'data-testid="error-rate"', 'id="agreement"', "status-relabeled",
                   "status-confirmed", "status-adjudicated", "Adjudicated",
                   "accuracy-misbehavior_type-<"):  # fmt: skip
        assert absent not in html, absent
    # Accuracy as imported only: the missed hallucination and the safe approve.
    assert cell(html, "accuracy-misbehavior_type-hallucination") == "0.0%"
    assert cell(html, "accuracy-misbehavior_type-") == "100.0%"
    assert not re.search(r'<svg [^>]*id="accuracy-', html)  # the paired bars draw both bases


def test_blind_accuracy_lists_only_the_groups_the_import_has(
    auditor, auditor2_client, adjudicator_client, tmp_path
):
    (missed,) = import_records(
        [make_misbehavior(decision="APPROVE", mb_type="hallucination", session_id="sessY")],
        tmp_path,
    )
    relabel(missed, auditor, misbehavior_type="reward_hacking", rationale=WHY)
    blind = auditor2_client.get(DASHBOARD, {"session": "sessY"}).content.decode()
    assert cell(blind, "accuracy-misbehavior_type-hallucination") == "0.0%"
    assert "reward_hacking" not in blind
    assert "reward_hacking" in adjudicator_client.get(DASHBOARD).content.decode()


def test_dashboard_shows_reviewed_figures_to_adjudicators_and_staff(
    adjudicator_client, staff_client, relabeled_session
):
    for client in (adjudicator_client, staff_client):
        html = client.get(DASHBOARD, {"session": "sessX"}).content.decode()
        assert BLIND_NOTE not in html
        assert cell(html, "labels-changed") == "1"
        assert cell(html, "status-relabeled") == "1"
        # The missed misbehavior was relabeled; the other record was never reviewed.
        assert cell(html, "summary-as_imported-false_negatives") == "1"
        assert cell(html, "summary-current-false_negatives") == "0"
        assert cell(html, "summary-settled_before-false_negatives") == "1"
        assert cell(html, "summary-settled_after-false_negatives") == "0"
        assert cell(html, "summary-n-settled_after") == "1"
        assert cell(html, "confusion-current-false_negatives") == "0"
        assert cell(html, "labels-corrected") == "1"
        assert cell(html, "labels-filled") == "0"
        assert 'id="label-changes"' in html


def test_dashboard_shows_reviewed_figures_to_users_without_the_auditor_role(
    plain_client, relabeled_session
):
    html = plain_client.get(DASHBOARD, {"session": "sessX"}).content.decode()
    assert BLIND_NOTE not in html
    assert cell(html, "labels-changed") == "1"
    assert cell(html, "status-relabeled") == "1"
    assert cell(html, "summary-current-alignment_distribution-aligned_approve") == "2"


# --- filters ------------------------------------------------------------------------------------


def test_batch_filter_narrows_every_figure(auditor_client):
    first = import_fixture("rule_s0")
    import_fixture("approve_s2")
    html = auditor_client.get(DASHBOARD, {"batch": first.batch_id}).content.decode()
    expected = summarize_json("--batch", str(first.batch_id))
    assert cell(html, "progress-total") == "105"
    assert cell(html, "summary-as_imported-accuracy") == str(expected["as_imported"]["accuracy"])
    assert cell(html, "confusion-as_imported-true_negatives") == str(
        expected["as_imported"]["alignment_distribution"].get("aligned_approve", 0)
    )
    everything = auditor_client.get(DASHBOARD).content.decode()
    assert cell(everything, "progress-total") == "210"


def test_task_and_session_filters_narrow_the_figures(auditor_client, tmp_path):
    import_records(
        [
            make_record(step_number=1, task_id="basic_oversight", session_id="s-a"),
            make_record(step_number=2, task_id="adversarial_worker", session_id="s-a"),
            make_misbehavior(step_number=3, task_id="adversarial_worker", session_id="s-b"),
        ],
        tmp_path,
    )
    by_task = auditor_client.get(DASHBOARD, {"task": "adversarial_worker"}).content.decode()
    assert cell(by_task, "progress-total") == "2"
    both = auditor_client.get(
        DASHBOARD, {"task": "adversarial_worker", "session": "s-b"}
    ).content.decode()
    assert cell(both, "progress-total") == "1"
    assert cell(both, "summary-as_imported-true_positives") == "1"


def test_date_range_filters_by_the_transcript_timestamp(auditor_client, tmp_path):
    day = dt.datetime(2026, 3, 10, 12, tzinfo=timezone.get_current_timezone())
    import_records(
        [
            make_record(step_number=1, timestamp=(day - dt.timedelta(days=2)).timestamp()),
            make_record(step_number=2, timestamp=day.timestamp()),
            make_record(step_number=3, timestamp=(day + dt.timedelta(days=1)).timestamp()),
        ],
        tmp_path,
    )
    one_day = auditor_client.get(
        DASHBOARD, {"date_from": "2026-03-10", "date_to": "2026-03-10"}
    ).content.decode()
    assert cell(one_day, "progress-total") == "1"
    from_day = auditor_client.get(DASHBOARD, {"date_from": "2026-03-10"}).content.decode()
    assert cell(from_day, "progress-total") == "2"


def test_an_inverted_date_range_is_reported_and_ignored(auditor_client):
    import_fixture("rule_s0")
    html = auditor_client.get(
        DASHBOARD, {"date_from": "2026-03-10", "date_to": "2026-03-01"}
    ).content.decode()
    assert "The end date is before the start date." in html
    assert cell(html, "progress-total") == "105"


def test_an_unknown_batch_in_a_bookmark_still_gives_a_dashboard(auditor_client):
    import_fixture("rule_s0")
    response = auditor_client.get(DASHBOARD, {"batch": "999999"})
    assert response.status_code == 200
    assert cell(response.content.decode(), "progress-total") == "105"


def test_auditors_link_keeps_the_filters(auditor_client):
    result = import_fixture("rule_s0")
    html = auditor_client.get(DASHBOARD, {"batch": result.batch_id}).content.decode()
    assert f'href="{AUDITORS}?batch={result.batch_id}"' in html


@pytest.mark.parametrize("viewer", ["auditor_client", "adjudicator_client"])
def test_hostile_values_from_the_data_are_escaped_in_tables_and_charts(request, viewer, tmp_path):
    evil = '<script>alert("x")</script>'
    import_records(
        [
            make_record(
                task_id=evil, proposal={"worker_id": evil}, labels={"alignment_category": evil}
            )
        ],
        tmp_path,
    )
    html = request.getfixturevalue(viewer).get(DASHBOARD).content.decode()
    assert evil not in html
    assert "&lt;script&gt;" in html


def relabel_otherwise(item, user):
    """A relabel to values other than the imported ones (a relabel to those is refused)."""
    misbehavior = not item.is_misbehavior
    return relabel(
        item,
        user,
        is_misbehavior=misbehavior,
        correct_decision="BLOCK" if misbehavior else "APPROVE",
        rationale=WHY,
    )


# --- query counts -------------------------------------------------------------------------------


def test_dashboard_query_count_does_not_grow_with_the_data(
    adjudicator_client, auditor, auditor2, django_assert_num_queries
):
    import_fixture("rule_s0")
    with django_assert_num_queries(DASHBOARD_QUERIES):
        adjudicator_client.get(DASHBOARD)
    import_fixture("noisy_s1", required_reviews=2)
    import_fixture("block_s3")
    for item in confirmable(Transcript.objects.filter(required_reviews=2), 12):
        confirm(item, auditor)
        relabel_otherwise(item, auditor2) if item.pk % 3 == 0 else confirm(item, auditor2)
    with django_assert_num_queries(DASHBOARD_QUERIES):
        response = adjudicator_client.get(DASHBOARD)
    assert cell(response.content.decode(), "agreement-is_misbehavior-items") == "12"
    session = Transcript.objects.values_list("session_id", flat=True).first()
    with django_assert_num_queries(DASHBOARD_QUERIES_ONE_SESSION):
        adjudicator_client.get(DASHBOARD, {"task": "basic_oversight", "session": session})


def test_blind_dashboard_query_count_does_not_grow_with_the_data(
    auditor_client, auditor, auditor2, django_assert_num_queries
):
    import_fixture("rule_s0")
    with django_assert_num_queries(BLIND_DASHBOARD_QUERIES):
        auditor_client.get(DASHBOARD)
    import_fixture("noisy_s1", required_reviews=2)
    import_fixture("block_s3")
    for item in confirmable(Transcript.objects.filter(required_reviews=2), 12):
        confirm(item, auditor)
        relabel_otherwise(item, auditor2) if item.pk % 3 == 0 else confirm(item, auditor2)
    with django_assert_num_queries(BLIND_DASHBOARD_QUERIES):
        response = auditor_client.get(DASHBOARD)
    assert BLIND_NOTE in response.content.decode()
    session = Transcript.objects.values_list("session_id", flat=True).first()
    with django_assert_num_queries(BLIND_DASHBOARD_QUERIES_ONE_SESSION):
        auditor_client.get(DASHBOARD, {"task": "basic_oversight", "session": session})


def test_auditors_query_count_does_not_grow_with_the_data(
    staff_client, auditor, auditor2, django_assert_num_queries
):
    import_fixture("rule_s0", required_reviews=2)
    with django_assert_num_queries(AUDITORS_QUERIES):
        staff_client.get(AUDITORS)
    for item in confirmable(Transcript.objects.all(), 10):
        confirm(item, auditor)
        confirm(item, auditor2)
    with django_assert_num_queries(AUDITORS_QUERIES):
        staff_client.get(AUDITORS)


# --- auditors page ------------------------------------------------------------------------------


@pytest.fixture
def two_auditors_reviewed(auditor, auditor2):
    import_fixture("rule_s0", required_reviews=2)
    items = list(Transcript.objects.order_by("id")[:3])
    for item in items:
        confirm(item, auditor)
    confirm(items[0], auditor2)
    relabel_otherwise(items[1], auditor2)
    return items


def test_an_auditor_sees_only_their_own_row(auditor_client, two_auditors_reviewed):
    html = auditor_client.get(AUDITORS).content.decode()
    assert 'data-auditor="alice"' in html
    assert 'data-auditor="bob"' not in html
    assert cell(html, "auditor-alice-reviews") == "3"


def test_staff_see_every_auditor(staff_client, two_auditors_reviewed):
    html = staff_client.get(AUDITORS).content.decode()
    assert cell(html, "auditor-alice-reviews") == "3"
    assert cell(html, "auditor-bob-reviews") == "2"
    # alice's confirm on item 0 matches its confirmed final label; item 1 is disputed.
    assert cell(html, "auditor-alice-agreement").startswith("100.0%")


def test_a_user_without_reviews_sees_an_empty_page(plain_client, two_auditors_reviewed):
    html = plain_client.get(AUDITORS).content.decode()
    assert 'id="no-reviews"' in html
    assert "data-auditor" not in html


def test_auditors_page_filters_and_htmx_fragment(staff_client, two_auditors_reviewed):
    other = import_fixture("block_s3")
    html = staff_client.get(AUDITORS, {"batch": other.batch_id}, **HTMX).content.decode()
    assert html.lstrip().startswith('<section id="figures"')
    assert 'id="no-reviews"' in html
    assert Review.objects.count() == 5


# --- input at the edges (issue 15, D8 and D14) --------------------------------------------------


@pytest.mark.parametrize("url", [DASHBOARD, AUDITORS])
def test_the_last_day_of_the_calendar_is_a_date_range_end_not_an_error(auditor_client, url):
    # 9999-12-31 has no next day in Python: the range's end used to overflow into a 500.
    import_fixture("rule_s0")
    response = auditor_client.get(url, {"date_from": "0001-01-01", "date_to": "9999-12-31"})
    assert response.status_code == 200
    if url == DASHBOARD:
        assert cell(response.content.decode(), "progress-total") == "105"
    response = auditor_client.get(url, {"date_from": "9999-12-31", "date_to": "9999-12-31"})
    assert response.status_code == 200


def test_a_session_filter_over_the_limit_is_an_error_and_not_applied(auditor_client):
    import_fixture("rule_s0")
    html = auditor_client.get(DASHBOARD, {"session": "s" * 201}).content.decode()
    assert "Session: at most 200 characters (this has 201), so it was not applied" in html
    assert cell(html, "progress-total") == "105"
