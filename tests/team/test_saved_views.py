"""Saved views (issue 11): named filter sets of the queue and the dashboard, stored as the
screen's own form cleans them, per user or shared, opened through the viewer's own form."""

import re

import pytest
from django.db import IntegrityError
from django.http import QueryDict
from django.test import Client
from django.urls import reverse

from audit.models import SavedView, Status
from audit.team import saved_views
from tests.factories import confirm, fresh, import_records
from tests.review.pages import HOSTILE, HTMX, episode

pytestmark = pytest.mark.django_db


@pytest.fixture
def steps(tmp_path):
    """Ten steps of one episode; the odd ones are queued."""
    return import_records(episode(10, session="views"), tmp_path)


def save(client: Client, **data) -> object:
    return client.post(reverse("saved_views"), {"screen": "queue", **data})


def status_select(html: str) -> str:
    return re.search(r'<select name="status".*?</select>', html, re.S).group(0)


# --- normalising ---------------------------------------------------------------------------------


def test_a_queue_view_stores_the_query_as_the_queue_form_cleans_it(auditor):
    query = QueryDict(
        "zzz=1&flag=missed_misbehavior&status=open&scope=queue&after=7~12"
        "&session=+s1+&q=&page=3&sort="
    )
    normalised = saved_views.normalise("queue", query, viewer=auditor)
    # Defaults (open, the queue, priority), empty values and the page position are left out,
    # unknown keys dropped (and named), the rest in the form's field order.
    assert normalised.query == "flag=missed_misbehavior&session=s1"
    assert normalised.dropped == ("zzz: not a filter of this screen (for you)",)


def test_an_invalid_queue_value_is_dropped_and_named(auditor):
    normalised = saved_views.normalise("queue", "flag=nonsense&task=t1", viewer=auditor)
    assert normalised.query == "task=t1"
    assert len(normalised.dropped) == 1 and normalised.dropped[0].startswith("flag: ")


def test_a_queue_view_keeps_a_non_default_status_and_scope(adjudicator):
    normalised = saved_views.normalise("queue", "status=confirmed&scope=all", viewer=adjudicator)
    assert normalised.query == "status=confirmed&scope=all"


def test_a_dashboard_view_keeps_only_valid_filters(auditor, steps):
    batch = steps[0].batch_id
    query = f"batch={batch}&task=nope&session=+views+&date_from=2024-01-02&date_to=bad&x=1"
    normalised = saved_views.normalise("dashboard", query, viewer=auditor)
    assert normalised.query == f"batch={batch}&session=views&date_from=2024-01-02"
    assert {note.split(":")[0] for note in normalised.dropped} == {"task", "date_to", "x"}


# --- saving --------------------------------------------------------------------------------------


def test_saving_a_view_stores_it_and_opens_it(auditor, auditor_client, steps):
    response = save(auditor_client, name="  Missed   ones ", query="flag=missed_misbehavior&x=1")
    view = SavedView.objects.get()
    assert (view.owner, view.screen, view.name, view.shared) == (
        auditor,
        "queue",
        "Missed ones",
        False,
    )
    assert view.query == "flag=missed_misbehavior"
    assert response.status_code == 302
    assert response["Location"] == "/?flag=missed_misbehavior"
    page = auditor_client.get(response["Location"]).content.decode()
    assert "Saved the view &#x27;Missed ones&#x27;." in page
    assert "Left out of the view: x: not a filter of this screen (for you)." in page


def test_a_shared_view_says_so(auditor_client, steps):
    save(auditor_client, name="Team", query="", shared="on")
    assert SavedView.objects.get().shared is True


def test_names_are_unique_per_owner_and_screen_with_a_clear_error(
    auditor, auditor_client, auditor2_client, steps
):
    assert save(auditor_client, name="Mine", query="flag=missed_misbehavior").status_code == 302
    again = save(auditor_client, name="Mine", query="task=x")
    assert again.status_code == 400
    assert "You already have a review queue view named &#x27;Mine&#x27;" in again.content.decode()
    assert SavedView.objects.count() == 1
    # Another screen, or another owner: the same name is fine.
    assert (
        auditor_client.post(
            reverse("saved_views"), {"screen": "dashboard", "name": "Mine", "query": ""}
        ).status_code
        == 302
    )
    assert save(auditor2_client, name="Mine", query="").status_code == 302
    assert SavedView.objects.count() == 3


def test_the_database_refuses_a_duplicate_name(auditor):
    SavedView.objects.create(owner=auditor, screen="queue", name="x")
    with pytest.raises(IntegrityError):
        SavedView.objects.create(owner=auditor, screen="queue", name="x")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": ""}, "Give the view a name."),
        ({"name": "   "}, "Give the view a name."),
        ({"name": "x" * 101}, "A name can be at most 100 characters (this has 101)."),
        ({"name": "ok", "screen": "nope"}, "Which screen"),
        ({"name": "ok", "screen": ""}, "Which screen"),
        ({"name": "ok", "query": "q=" + "x" * 24_001}, "too long to save as a view"),
    ],
)
def test_a_bad_save_is_refused_with_a_reason(auditor_client, data, error):
    response = save(auditor_client, **data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not SavedView.objects.exists()


def test_only_auditors_save_queue_views(plain_client):
    response = save(plain_client, name="Queue", query="")
    assert response.status_code == 400
    assert "You cannot save views of the queue screen." in response.content.decode()
    ok = plain_client.post(reverse("saved_views"), {"screen": "dashboard", "name": "D"})
    assert ok.status_code == 302 and ok["Location"] == reverse("dashboard")


# --- listing and opening -------------------------------------------------------------------------


def test_the_list_shows_my_views_and_the_shared_ones_only(auditor, auditor2, auditor_client):
    SavedView.objects.create(owner=auditor, screen="queue", name="mine", query="task=a")
    SavedView.objects.create(owner=auditor2, screen="queue", name="theirs shared", shared=True)
    SavedView.objects.create(owner=auditor2, screen="queue", name="theirs private")
    html = auditor_client.get(reverse("saved_views")).content.decode()
    assert "mine" in html and "theirs shared" in html
    assert "theirs private" not in html
    assert 'href="/?task=a"' in html
    menu = auditor_client.get(reverse("saved_views_menu"), {"screen": "queue"}, **HTMX)
    text = menu.content.decode()
    assert "mine" in text and "shared by bob" in text and "theirs private" not in text
    assert b"<html" not in menu.content


def test_a_view_name_is_escaped(auditor, auditor_client):
    SavedView.objects.create(owner=auditor, screen="queue", name=HOSTILE)
    for url in (reverse("saved_views"), reverse("saved_views_menu") + "?screen=queue"):
        html = auditor_client.get(url).content.decode()
        assert HOSTILE not in html and "&lt;script&gt;" in html


def test_the_menu_lists_a_screens_views_and_no_more_than_its_limit(
    auditor, auditor_client, monkeypatch
):
    monkeypatch.setattr(saved_views, "MENU_LIMIT", 2)
    for n in range(3):
        SavedView.objects.create(owner=auditor, screen="queue", name=f"q{n}")
    SavedView.objects.create(owner=auditor, screen="dashboard", name="dash")
    html = auditor_client.get(reverse("saved_views_menu"), {"screen": "queue"}).content.decode()
    assert "q0" in html and "q1" in html and "q2" not in html and "dash" not in html
    assert "1 more on the Saved views page." in html


def test_the_queue_and_the_dashboard_offer_the_menu_and_the_save_form(auditor_client, steps):
    queue = auditor_client.get(reverse("queue"), {"flag": "missed_misbehavior"}).content.decode()
    assert 'id="save-view-form"' in queue and 'hx-get="/views/menu/?screen=queue"' in queue
    assert 'name="query" value="flag=missed_misbehavior" form="save-view-form"' in queue
    fragment = auditor_client.get(reverse("queue"), {"task": "t"}, **HTMX).content.decode()
    assert 'name="query" value="task=t" form="save-view-form"' in fragment
    dashboard = auditor_client.get(reverse("dashboard"), {"session": "views"}).content.decode()
    assert 'hx-get="/views/menu/?screen=dashboard"' in dashboard
    assert 'name="query" value="session=views" form="save-view-form"' in dashboard
    # The dashboard's swapped region carries the filters the save form sends.
    figures = auditor_client.get(reverse("dashboard"), {"session": "s2"}, **HTMX).content.decode()
    assert 'name="query" value="session=s2" form="save-view-form"' in figures


def test_a_plain_user_lists_only_dashboard_views(auditor, plain_client):
    SavedView.objects.create(owner=auditor, screen="queue", name="q shared", shared=True)
    SavedView.objects.create(owner=auditor, screen="dashboard", name="d shared", shared=True)
    html = plain_client.get(reverse("saved_views")).content.decode()
    assert "d shared" in html and "q shared" not in html
    assert plain_client.get(reverse("saved_views_menu"), {"screen": "queue"}).status_code == 404


def test_a_shared_view_with_a_finer_status_opens_for_a_blind_auditor_with_one_of_theirs(
    adjudicator, adjudicator_client, auditor, auditor_client, auditor2, steps
):
    queued = [t for t in steps if t.in_queue]
    confirm(queued[0], auditor2)
    assert fresh(queued[0]).status == Status.CONFIRMED
    response = adjudicator_client.post(
        reverse("saved_views"),
        {"screen": "queue", "name": "Confirmed", "query": "status=confirmed", "shared": "on"},
    )
    assert response.status_code == 302
    view = SavedView.objects.get()
    assert view.query == "status=confirmed"
    # The adjudicator gets what they saved: the confirmed item.
    theirs = adjudicator_client.get(saved_views.open_url(view)).content.decode()
    assert f'data-id="{queued[0].pk}"' in theirs

    # The auditor's list offers the view, described as it opens for them.
    listing = auditor_client.get(reverse("saved_views")).content.decode()
    assert 'href="/?status=confirmed"' in listing
    assert "1 of its filter not among your choices, left out" in listing
    page = auditor_client.get(saved_views.open_url(view))
    assert page.status_code == 200
    html = page.content.decode()
    select = status_select(html)
    # Their own status choices, the default chosen: no "confirmed" to choose, or to be shown.
    assert 'value="confirmed"' not in select
    assert re.search(r'<option value="open"[^>]*selected', select)
    assert f'data-id="{queued[0].pk}"' not in html
    assert page.context["values"].status == "open"


def test_a_needs_discussion_filter_in_a_shared_view_is_not_a_blind_auditors(
    adjudicator, adjudicator_client, auditor, auditor_client, steps
):
    adjudicator_client.post(
        reverse("saved_views"),
        {"screen": "queue", "name": "Talk", "query": "discussion=yes", "shared": "on"},
    )
    view = SavedView.objects.get()
    assert view.query == "discussion=yes"
    page = auditor_client.get(saved_views.open_url(view))
    assert page.context["values"].discussion == ""
    assert 'name="discussion"' not in page.content.decode()


# --- deleting -------------------------------------------------------------------------------------


def test_an_owner_deletes_their_view(auditor, auditor_client):
    view = SavedView.objects.create(owner=auditor, screen="queue", name="gone")
    response = auditor_client.post(reverse("delete_saved_view", args=[view.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("saved_views")
    assert not SavedView.objects.exists()


def test_only_staff_delete_someone_elses_shared_view(auditor, auditor2_client, staff_client):
    view = SavedView.objects.create(owner=auditor, screen="queue", name="team", shared=True)
    url = reverse("delete_saved_view", args=[view.pk])
    assert auditor2_client.post(url).status_code == 403
    assert 'id="delete-view-' not in auditor2_client.get(reverse("saved_views")).content.decode()
    assert staff_client.post(url).status_code == 302
    assert not SavedView.objects.exists()


def test_someone_elses_private_view_is_not_found_even_by_staff(auditor, staff_client):
    view = SavedView.objects.create(owner=auditor, screen="queue", name="private")
    assert staff_client.post(reverse("delete_saved_view", args=[view.pk])).status_code == 404
    assert SavedView.objects.exists()


def test_deleting_a_missing_view_is_404(auditor_client):
    assert auditor_client.post(reverse("delete_saved_view", args=[999999])).status_code == 404


# --- the routes: login, methods ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "name", "args"),
    [
        ("get", "saved_views", []),
        ("post", "saved_views", []),
        ("get", "saved_views_menu", []),
        ("post", "delete_saved_view", [1]),
    ],
)
def test_saved_view_routes_require_login(method, name, args):
    response = getattr(Client(), method)(reverse(name, args=args))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("method", "name", "args"),
    [
        ("put", "saved_views", []),
        ("delete", "saved_views", []),
        ("post", "saved_views_menu", []),
        ("get", "delete_saved_view", [1]),
    ],
)
def test_saved_view_routes_refuse_other_methods(auditor_client, method, name, args):
    assert getattr(auditor_client, method)(reverse(name, args=args)).status_code == 405


def test_the_menu_of_an_unknown_screen_is_404(auditor_client):
    assert auditor_client.get(reverse("saved_views_menu"), {"screen": "nope"}).status_code == 404


def test_the_list_page_needs_no_role(plain_client):
    assert plain_client.get(reverse("saved_views")).status_code == 200


def test_staff_see_saved_views_in_the_admin(auditor, staff_client, auditor_client):
    SavedView.objects.create(owner=auditor, screen="queue", name="in admin", query="task=a")
    url = reverse("admin:audit_savedview_changelist")
    response = staff_client.get(url)
    assert response.status_code == 200 and "in admin" in response.content.decode()
    assert auditor_client.get(url).status_code == 302  # the admin's login, not the list
