"""Bulk actions in the queue (issue 11), for adjudicators and staff: on the rows chosen (those
ids, matching or not), or on all matching (the filters evaluated again on the server, after a
confirmation with the count); set K, assign, release leases, mark/clear "needs discussion"."""

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import MAX_ID, Assignment, DiscussionMark, Lease, Transcript
from audit.review import queue as queues
from audit.review.leases import release_leases
from audit.team import bulk
from audit.team.discussion import mark_needs_discussion
from tests.factories import import_records
from tests.review.pages import episode
from tests.review.test_queue_queries import BY_STATUS, PAGE

pytestmark = pytest.mark.django_db

URL = "/queue/bulk/"


@pytest.fixture
def steps(tmp_path):
    """Twelve steps of session "bulk" (the odd ones queued) and four of session "other"."""
    return import_records(episode(12, session="bulk") + episode(4, session="other"), tmp_path)


def queued(session: str = "bulk") -> list[Transcript]:
    return list(Transcript.objects.filter(in_queue=True, session_id=session).order_by("pk"))


def ks(rows) -> list[int]:
    return [Transcript.objects.get(pk=t.pk).required_reviews for t in rows]


def post(client: Client, **data):
    return client.post(URL, data)


# --- who may --------------------------------------------------------------------------------------


def test_bulk_needs_login(steps):
    response = Client().post(URL, {"action": "set_k", "target": "all", "k": 2})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("who", ["auditor_client", "plain_client"])
def test_plain_auditors_and_users_without_a_role_are_refused(request, who, steps):
    client = request.getfixturevalue(who)
    ids = [t.pk for t in queued()]
    response = post(client, action="set_k", target="chosen", k=3, ids=ids)
    assert response.status_code == 403
    assert set(ks(queued())) == {1}


def test_bulk_is_post_only(adjudicator_client):
    assert adjudicator_client.get(URL).status_code == 405
    assert adjudicator_client.put(URL).status_code == 405


def test_plain_auditors_see_no_checkboxes(auditor_client, steps):
    html = auditor_client.get(reverse("queue")).content.decode()
    assert 'id="bulk-form"' not in html and 'name="ids"' not in html


def test_adjudicators_see_a_checkbox_per_row_and_the_actions(adjudicator_client, steps):
    html = adjudicator_client.get(reverse("queue"), {"session": "bulk"}).content.decode()
    assert 'id="bulk-form"' in html
    boxes = re.findall(r'name="ids" value="(\d+)" form="bulk-form"', html)
    assert sorted(map(int, boxes)) == [t.pk for t in queued()]
    assert 'value="set_k"' in html and 'value="release"' in html and 'value="mark"' in html
    # Assigning work to named people is staff's.
    assert 'value="assign"' not in html and 'id="bulk-auditors"' not in html
    assert "Apply to all 6 matching" in html
    assert 'name="filters" value="session=bulk"' in html


def test_staff_get_assign_with_the_auditors_to_choose(staff_client, auditor, steps):
    html = staff_client.get(reverse("queue")).content.decode()
    assert 'value="assign"' in html
    assert f'<option value="{auditor.pk}">alice</option>' in html


def test_an_adjudicator_cannot_assign(adjudicator_client, auditor, steps):
    ids = [t.pk for t in queued()]
    response = post(
        adjudicator_client, action="assign", target="chosen", k=1, ids=ids, auditors=[auditor.pk]
    )
    assert response.status_code == 403
    assert not Assignment.objects.exists()


# --- set K ----------------------------------------------------------------------------------------


def test_set_k_on_the_rows_chosen(adjudicator_client, steps):
    rows = queued()
    response = post(
        adjudicator_client, action="set_k", target="chosen", k=3, ids=[rows[0].pk, rows[1].pk]
    )
    assert response.status_code == 302
    assert ks(rows) == [3, 3, 1, 1, 1, 1]
    page = adjudicator_client.get(response["Location"]).content.decode()
    assert "K set to 3 on 2 of 2 item(s)." in page


def test_set_k_on_all_matching_asks_first_then_acts(adjudicator_client, steps):
    first = post(adjudicator_client, action="set_k", target="all", k=2, filters="session=bulk")
    assert first.status_code == 200
    html = first.content.decode()
    assert 'id="bulk-count" data-count="6"' in html
    assert "Session: bulk" in html
    assert set(ks(queued())) == {1}  # nothing yet
    assert 'name="confirm" value="on"' in html and 'name="expected" value="6"' in html
    # The confirmation posts the same action again.
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    assert hidden["action"] == "set_k" and hidden["k"] == "2" and hidden["target"] == "all"
    second = adjudicator_client.post(
        URL, {k: v for k, v in hidden.items() if k != "csrfmiddlewaretoken"}
    )
    assert second.status_code == 302
    assert second["Location"] == "/?session=bulk"
    assert set(ks(queued())) == {2}
    assert set(ks(queued("other"))) == {1}
    message = adjudicator_client.get(second["Location"]).content.decode()
    assert "K set to 2 on 6 of 6 item(s)." in message


def test_all_matching_is_evaluated_on_the_server_never_from_posted_ids(adjudicator_client, steps):
    other = queued("other")
    response = post(
        adjudicator_client,
        action="set_k",
        target="all",
        k=4,
        filters="session=bulk",
        confirm="on",
        ids=[t.pk for t in other],
    )
    assert response.status_code == 302
    assert set(ks(queued())) == {4}
    assert set(ks(other)) == {1}


def test_the_message_says_when_the_count_changed_since_the_confirmation(adjudicator_client, steps):
    response = post(
        adjudicator_client,
        action="set_k",
        target="all",
        k=2,
        filters="session=bulk",
        confirm="on",
        expected=9,
    )
    page = adjudicator_client.get(response["Location"]).content.decode()
    assert "9 items matched when you confirmed; 6 matched when it ran" in page


def test_all_matching_uses_the_viewers_own_filter_form(adjudicator_client, steps):
    # An unknown parameter or a bad value is no filter: the default queue, as the queue shows.
    response = post(
        adjudicator_client, action="set_k", target="all", k=2, filters="session=bulk&flag=bad"
    )
    assert 'data-count="6"' in response.content.decode()


def test_nothing_matching_offers_nothing_to_confirm(adjudicator_client, steps):
    response = post(adjudicator_client, action="set_k", target="all", k=2, filters="session=none")
    html = response.content.decode()
    assert "No item matches" in html and 'id="bulk-confirm-button"' not in html


def test_chosen_rows_that_no_longer_match_are_still_acted_on(adjudicator_client, steps):
    # Chosen explicitly: the ids as they are, whatever the filters say now.
    row = queued()[0]
    Transcript.objects.filter(pk=row.pk).update(session_id="moved")
    response = post(
        adjudicator_client,
        action="set_k",
        target="chosen",
        k=2,
        ids=[row.pk],
        filters="session=bulk",
    )
    assert response.status_code == 302
    assert ks([row]) == [2]


def test_unknown_ids_are_ignored_and_counted(adjudicator_client, steps):
    row = queued()[0]
    response = post(
        adjudicator_client, action="set_k", target="chosen", k=2, ids=[row.pk, MAX_ID, row.pk]
    )
    assert ks([row]) == [2]
    page = adjudicator_client.get(response["Location"]).content.decode()
    assert "1 chosen id(s) are no item and were ignored." in page


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"ids": ["abc"]}, "&#x27;abc&#x27; is not an item id"),
        ({"ids": ["0"]}, "&#x27;0&#x27; is not an item id"),
        ({"ids": [str(MAX_ID + 1)]}, "is not an item id"),
        ({"ids": ["-3"]}, "is not an item id"),
        ({"ids": [str(n) for n in range(1, bulk.MAX_CHOSEN + 2)]}, "At most 500 rows"),
        ({}, "Tick at least one row"),
        ({"k": ""}, "Set K (reviews needed) needs K, a whole number from 1 to 10."),
        ({"k": "0"}, "K: Ensure this value is greater than or equal to 1."),
        ({"k": "11"}, "K: Ensure this value is less than or equal to 10."),
        ({"k": "two"}, "K must be a whole number from 1 to 10."),
        ({"action": "explode"}, "Choose an action."),
        ({"action": ""}, "Choose an action."),
        ({"target": "some"}, "Say what to act on"),
    ],
)
def test_bad_input_is_refused_with_a_reason_and_changes_nothing(
    adjudicator_client, steps, data, problem
):
    payload = {"action": "set_k", "target": "chosen", "k": "2", **data}
    response = adjudicator_client.post(URL, payload)
    assert response.status_code == 400
    assert problem in response.content.decode()
    assert 'id="bulk-back"' in response.content.decode()
    assert {t.required_reviews for t in Transcript.objects.all()} == {1}


# --- release leases -------------------------------------------------------------------------------


def _lease(transcript, user, *, expired=False):
    delta = dt.timedelta(minutes=-5 if expired else 30)
    return Lease.objects.create(
        transcript=transcript, auditor=user, expires_at=timezone.now() + delta
    )


def test_release_leases_drops_the_live_leases_of_the_items_only(auditor, auditor2, steps):
    rows = queued()
    _lease(rows[0], auditor)
    _lease(rows[0], auditor2)
    _lease(rows[1], auditor, expired=True)
    kept = _lease(queued("other")[0], auditor)
    assert release_leases(Transcript.objects.filter(session_id="bulk")) == 2
    assert list(Lease.objects.values_list("pk", flat=True).order_by("pk")) == sorted(
        [kept.pk, Lease.objects.get(transcript=rows[1]).pk]
    )


def test_bulk_release_on_the_rows_chosen(adjudicator_client, auditor, steps):
    rows = queued()
    _lease(rows[0], auditor)
    _lease(rows[2], auditor)
    response = post(adjudicator_client, action="release", target="chosen", ids=[rows[0].pk])
    assert not Lease.objects.filter(transcript=rows[0]).exists()
    assert Lease.objects.filter(transcript=rows[2]).exists()
    page = adjudicator_client.get(response["Location"]).content.decode()
    assert "Released 1 live lease(s) on 1 item(s)." in page


# --- needs discussion -----------------------------------------------------------------------------


def test_mark_and_clear_needs_discussion_on_all_matching(adjudicator, adjudicator_client, steps):
    common = {"target": "all", "filters": "session=bulk", "confirm": "on"}
    post(adjudicator_client, action="mark", **common)
    marked = set(DiscussionMark.objects.open().values_list("transcript_id", flat=True))
    assert marked == {t.pk for t in queued()}
    assert set(DiscussionMark.objects.values_list("set_by", flat=True)) == {adjudicator.pk}
    again = post(adjudicator_client, action="mark", **common)
    page = adjudicator_client.get(again["Location"]).content.decode()
    assert "“Needs discussion” marked on 0 of 6 item(s); 6 were marked already." in page
    post(adjudicator_client, action="clear", **common)
    assert not DiscussionMark.objects.open().exists()


# --- assign ---------------------------------------------------------------------------------------


def test_staff_assign_the_rows_chosen(staff_client, staff_user, auditor, auditor2, steps):
    rows = queued()[:4]
    response = post(
        staff_client,
        action="assign",
        target="chosen",
        k=2,
        ids=[t.pk for t in rows],
        auditors=[auditor.pk, auditor2.pk],
        name="First four",
    )
    assert response.status_code == 302
    assignment = Assignment.objects.get()
    assert (assignment.name, assignment.k, assignment.created_by) == ("First four", 2, staff_user)
    assert assignment.selection == {"pks": [t.pk for t in rows]}
    assert ks(rows) == [2, 2, 2, 2]
    page = staff_client.get(response["Location"]).content.decode()
    assert f"Assignment #{assignment.pk} &#x27;First four&#x27;: 4 item(s), 8 task(s)" in page


def test_assigning_all_matching_records_the_filters_and_names_itself(staff_client, auditor, steps):
    post(
        staff_client,
        action="assign",
        target="all",
        k=1,
        filters="session=bulk",
        auditors=[auditor.pk],
        confirm="on",
    )
    assignment = Assignment.objects.get()
    assert assignment.name == "From the queue: Session: bulk"
    assert assignment.selection == {"queue": "session=bulk", "filter": {"session": ["bulk"]}}
    assert assignment.items == 6


def test_assign_needs_auditors_and_refuses_one_without_the_role(staff_client, plain_user, steps):
    ids = [queued()[0].pk]
    none = post(staff_client, action="assign", target="chosen", k=1, ids=ids)
    assert none.status_code == 400 and "Choose at least one auditor" in none.content.decode()
    wrong = post(
        staff_client, action="assign", target="chosen", k=1, ids=ids, auditors=[plain_user.pk]
    )
    assert wrong.status_code == 400 and "Auditors: Select a valid choice" in wrong.content.decode()
    assert not Assignment.objects.exists()


def test_an_assignment_the_domain_refuses_says_why(staff_client, auditor, steps):
    outside = Transcript.objects.filter(in_queue=False).first()
    response = post(
        staff_client, action="assign", target="chosen", k=1, ids=[outside.pk], auditors=[auditor.pk]
    )
    assert response.status_code == 400
    assert "Nothing was done: none of the 1 selected transcript(s) is in the review queue" in (
        response.content.decode()
    )


# --- cost -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["set_k", "release", "mark", "clear"])
def test_all_matching_costs_the_same_queries_at_any_size(
    adjudicator_client, django_assert_num_queries, tmp_path, action
):
    import_records(episode(20, session="s"), tmp_path, name="a.jsonl")
    data = {"action": action, "target": "all", "filters": "", "confirm": "on"}
    warm = {**data, "action": "release"}
    adjudicator_client.post(URL, warm)  # the session, and the users' groups
    with CaptureQueriesContext(connection) as small:
        assert adjudicator_client.post(URL, {**data, "k": 2}).status_code == 302
    import_records(episode(400, session="big"), tmp_path, name="b.jsonl")
    # Every queued item changes again (a new K, the new ones marked): some 200 against 10.
    with django_assert_num_queries(len(small.captured_queries)):
        assert adjudicator_client.post(URL, {**data, "k": 3}).status_code == 302
    if action == "mark":
        assert DiscussionMark.objects.open().count() == Transcript.objects.in_queue().count()


# --- the "needs discussion" filter ----------------------------------------------------------------


def _mark(rows, by):
    mark_needs_discussion(Transcript.objects.filter(pk__in=[t.pk for t in rows]), by=by)


def test_adjudicators_filter_the_queue_on_needs_discussion(adjudicator, adjudicator_client, steps):
    rows = queued()
    _mark(rows[:2], adjudicator)
    response = adjudicator_client.get(reverse("queue"), {"discussion": "yes"})
    shown = [row.t.pk for row in response.context["rows"]]
    assert sorted(shown) == [rows[0].pk, rows[1].pk]
    html = response.content.decode()
    assert '<select name="discussion"' in html
    assert re.search(r'<option value="yes" data-count="2" selected>Needs discussion \(2\)', html)
    unmarked = adjudicator_client.get(reverse("queue"), {"discussion": "no"}).context["rows"]
    assert rows[0].pk not in [row.t.pk for row in unmarked] and len(unmarked) == 8 - 2
    assert queues.describe(response.context["values"]) == "Discussion: Needs discussion"


def test_plain_auditors_get_no_needs_discussion_filter(adjudicator, auditor_client, steps):
    rows = queued()
    _mark(rows[:2], adjudicator)
    response = auditor_client.get(reverse("queue"), {"discussion": "yes"})
    assert 'name="discussion"' not in response.content.decode()
    assert response.context["values"].discussion == ""
    assert len(response.context["rows"]) == len(Transcript.objects.filter(in_queue=True))


def test_next_works_through_a_needs_discussion_filter(adjudicator, adjudicator_client, steps):
    rows = queued()
    _mark([rows[3]], adjudicator)
    response = adjudicator_client.post(reverse("next_item"), {"filters": "discussion=yes"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("item", args=[rows[3].pk]))


# Pinned: the queue's queries for those who oversee it. Plain auditors keep ``PAGE + BY_STATUS``
# (tests/review/test_queue_queries.py): the bulk bar and the filter cost them nothing.
# Adjudicators: + the "needs discussion" counts (one aggregate). Staff: + the auditors to
# assign to.
@pytest.mark.parametrize(
    ("who", "expected"),
    [("adjudicator_client", PAGE + BY_STATUS + 1), ("staff_client", PAGE + BY_STATUS + 2)],
)
def test_the_queue_of_those_who_oversee_it_costs_a_fixed_number_of_queries(
    request, django_assert_num_queries, tmp_path, who, expected, adjudicator
):
    client = request.getfixturevalue(who)
    import_records(episode(20, session="small"), tmp_path, name="a.jsonl")
    client.get(reverse("queue"))
    with django_assert_num_queries(expected):
        assert client.get(reverse("queue")).status_code == 200
    import_records(episode(400, session="big"), tmp_path, name="b.jsonl")
    _mark(list(Transcript.objects.filter(in_queue=True)[:30]), adjudicator)
    with django_assert_num_queries(expected):
        assert client.get(reverse("queue"), {"discussion": "yes"}).status_code == 200
