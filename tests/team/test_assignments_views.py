"""The assignment pages (issue 11): who may open them, the create form, progress with its basis
and n, and my-work showing an auditor their own tasks only."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import Assignment, AssignmentTask, Transcript
from audit.team.assignments import assign
from tests.factories import confirm, import_records, make_misbehavior, make_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(tmp_path):
    records = [
        *(make_misbehavior(decision="APPROVE", session_id="mm", step_number=i) for i in range(4)),
        make_record(session_id="plain", step_number=9),
    ]
    rows = import_records(records, tmp_path)
    assert [t.in_queue for t in rows] == [True] * 4 + [False]
    return rows


@pytest.fixture
def made(items, auditor, auditor2, staff_user):
    queued = Transcript.objects.filter(pk__in=[t.pk for t in items[:4]])
    return assign(
        queued, auditors=[auditor, auditor2], k=1, by=staff_user, name="First <b>pass</b>"
    ).assignment


def urls(pk: int) -> list[str]:
    return [reverse("assignments"), reverse("assignment_detail", args=[pk]), reverse("my_work")]


# --- permissions ----------------------------------------------------------------------------------


def test_every_page_needs_login(made):
    for url in urls(made.pk):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    response = Client().post(reverse("assignments"), {"name": "x"})
    assert response.status_code == 302 and not Assignment.objects.exclude(pk=made.pk).exists()


def test_staff_pages_refuse_auditors_and_adjudicators(made, auditor_client, adjudicator_client):
    for client in (auditor_client, adjudicator_client):
        assert client.get(reverse("assignments")).status_code == 403
        assert client.get(reverse("assignment_detail", args=[made.pk])).status_code == 403
        assert client.post(reverse("assignments"), {"name": "x"}).status_code == 403


def test_my_work_refuses_users_without_the_auditor_role(made, plain_user, staff_client):
    plain = Client()
    plain.force_login(plain_user)
    assert plain.get(reverse("my_work")).status_code == 403
    assert plain.get(reverse("assignments")).status_code == 403
    assert staff_client.get(reverse("my_work")).status_code == 200  # sam is an auditor too


def test_wrong_methods_are_refused(made, staff_client, auditor_client):
    assert staff_client.put(reverse("assignments")).status_code == 405
    assert staff_client.post(reverse("assignment_detail", args=[made.pk])).status_code == 405
    assert auditor_client.post(reverse("my_work")).status_code == 405


def test_an_unknown_assignment_is_404(staff_client):
    assert staff_client.get(reverse("assignment_detail", args=[999999])).status_code == 404


# --- the staff pages ----------------------------------------------------------------------------


def test_the_list_shows_each_assignment_with_progress_per_auditor(made, items, staff_client):
    confirm(items[0], _user(made, items[0]))
    html = staff_client.get(reverse("assignments")).content.decode()
    assert "First &lt;b&gt;pass&lt;/b&gt;" in html and "<b>pass</b>" not in html  # escaped
    assert re.search(r"data-items>4<", html)
    assert "1 of 4 items" in html and "1 of 4 tasks" in html
    assert "n = each auditor" in html  # the basis of the per-auditor figures
    for name in ("alice", "bob"):
        row = re.search(rf'<tr data-auditor="{name}">(.*?)</tr>', html, re.S).group(1)
        assert re.search(r"data-total>2<", row)
    done = sum(
        int(re.search(rf'<tr data-auditor="{n}">.*?data-done>(\d+)<', html, re.S).group(1))
        for n in ("alice", "bob")
    )
    assert done == 1
    # Counts only: no verdict or label value reaches the page.
    assert "confirm" not in html.lower().replace("confirmed", "")


def _user(assignment, item):
    return AssignmentTask.objects.get(assignment=assignment, transcript=item).auditor


def test_staff_create_an_assignment_from_the_form(items, auditor, auditor2, staff_client):
    response = staff_client.post(
        reverse("assignments"),
        {
            "name": "calibration",
            "session": "mm",
            "status": "open",
            "sample": "3",
            "seed": "5",
            "k": "2",
            "auditors": [auditor.pk, auditor2.pk],
        },
    )
    a = Assignment.objects.get(name="calibration")
    assert response.status_code == 302 and response["Location"] == reverse(
        "assignment_detail", args=[a.pk]
    )
    assert (a.k, a.items, a.sample, a.seed) == (2, 3, 3, 5)
    assert a.selection == {"session": ["mm"], "status": ["disputed", "in_progress", "unreviewed"]}
    assert AssignmentTask.objects.filter(assignment=a).count() == 6
    detail = staff_client.get(response["Location"]).content.decode()
    assert "calibration" in detail and "sample of 3, seed 5" in detail
    assert "<code>session=mm</code>" in detail


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"session": "nobody"}, "the selection is empty"),
        ({"session": "plain"}, "none of the 1 selected transcript"),
        ({"k": "0"}, "greater than or equal to 1"),
        ({"auditors": []}, "This field is required"),
        ({"batch": "0"}, "greater than or equal to 1"),
    ],
)
def test_the_form_says_what_is_wrong(items, auditor, staff_client, data, error):
    base = {"name": "n", "status": "any", "k": "1", "auditors": [auditor.pk]}
    response = staff_client.post(reverse("assignments"), {**base, **data})
    assert response.status_code == 422
    assert error in response.content.decode()
    assert not Assignment.objects.exists()


def test_the_form_offers_only_auditors(items, auditor, plain_user, staff_client):
    html = staff_client.get(reverse("assignments")).content.decode()
    assert f'value="{auditor.pk}"' in html and ">pat<" not in html
    response = staff_client.post(
        reverse("assignments"),
        {"name": "n", "status": "any", "k": "1", "auditors": [plain_user.pk]},
    )
    assert response.status_code == 422 and "not one of the available choices" in (
        response.content.decode()
    )


def test_the_status_choices_keep_blind_staff_blind(items, staff_user):
    """Staff who are not adjudicators choose only "settled", never which way."""
    staff_user.groups.remove(*staff_user.groups.filter(name="adjudicator"))
    client = Client()
    client.force_login(staff_user)
    html = client.get(reverse("assignments")).content.decode()
    status = re.search(r'<select name="status".*?</select>', html, re.S).group(0)
    assert 'value="settled"' in status and 'value="relabeled"' not in status


# --- my work --------------------------------------------------------------------------------------


def test_my_work_shows_my_tasks_only(made, items, auditor, auditor2, auditor_client):
    mine = AssignmentTask.objects.filter(assignment=made, auditor=auditor)
    theirs = AssignmentTask.objects.filter(assignment=made, auditor=auditor2)
    confirm(theirs.first().transcript, auditor2)
    html = auditor_client.get(reverse("my_work")).content.decode()
    row = re.search(rf'<tr data-assignment="{made.pk}">(.*?)</tr>', html, re.S).group(1)
    assert re.search(rf"data-total>{mine.count()}<", row)
    assert re.search(r"data-done>0<", row)  # bob's verdict is not mine
    assert "bob" not in html  # no other auditor, nor their progress
    assert f"{mine.count()} assigned items waiting for you" in html
    assert "n = my tasks" in html
    # The selection is not shown to auditors (it may name statuses).
    assert "session=" not in html
    confirm(mine.first().transcript, auditor)
    html = auditor_client.get(reverse("my_work")).content.decode()
    row = re.search(rf'<tr data-assignment="{made.pk}">(.*?)</tr>', html, re.S).group(1)
    assert re.search(r"data-done>1<", row)


def test_my_work_lists_nothing_of_assignments_without_me(made, adjudicator_client):
    html = adjudicator_client.get(reverse("my_work")).content.decode()
    assert 'id="no-assignments"' in html and "First" not in html


def test_the_start_button_runs_next_over_my_assignments(made, auditor, auditor_client):
    mine = set(
        AssignmentTask.objects.filter(assignment=made, auditor=auditor).values_list(
            "transcript", flat=True
        )
    )
    html = auditor_client.get(reverse("my_work")).content.decode()
    form = re.search(r'<form method="post" action="([^"]+)"[^>]*id="start-my-work">', html)
    response = auditor_client.post(form.group(1), {"filters": ""})
    assert response.status_code == 302
    pk = int(re.search(r"/t/(\d+)/", response["Location"]).group(1))
    assert pk in mine


def test_nav_links_follow_roles(made, auditor_client, staff_client):
    html = auditor_client.get(reverse("my_work")).content.decode()
    assert reverse("my_work") in html and reverse("assignments") not in html
    assert reverse("assignments") in staff_client.get(reverse("my_work")).content.decode()


@pytest.mark.parametrize(
    "auditor_id",
    [
        str(2**70),  # SQLite raises OverflowError on an integer past 2**63 - 1 in a query
        "9" * 5000,  # int() refuses more than 4,300 digits (the bulk fuzzing found it)
        "²",  # a digit to isdigit(), not to int()
    ],
    ids=["past-2**63", "5000-digits", "superscript"],
)
def test_an_auditor_id_that_is_no_row_id_is_refused_not_a_server_error(
    items, staff_client, auditor_id
):
    response = staff_client.post(
        reverse("assignments"),
        {"name": "big", "status": "open", "k": "1", "auditors": [auditor_id]},
    )
    assert response.status_code < 500
    assert not Assignment.objects.exists()
