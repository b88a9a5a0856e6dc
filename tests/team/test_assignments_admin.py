"""Assignments in the admin (issue 11): listed with progress, tasks inline and read-only, made
by staff through the form that calls ``assign``; never changed or deleted."""

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import Assignment, AssignmentTask, Transcript
from audit.team.assignments import assign
from tests.factories import confirm, import_records, make_misbehavior

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(tmp_path):
    records = [
        make_misbehavior(decision="APPROVE", session_id="mm", step_number=i) for i in range(3)
    ]
    return import_records(records, tmp_path)


@pytest.fixture
def made(items, auditor, auditor2):
    return assign(
        Transcript.objects.filter(pk__in=[t.pk for t in items]),
        auditors=[auditor, auditor2],
        k=1,
        by=None,
        name="admin one",
    ).assignment


def test_the_changelist_and_change_page_show_progress_and_tasks(made, items, auditor, staff_client):
    task = AssignmentTask.objects.filter(assignment=made, auditor=auditor).first()
    confirm(task.transcript, auditor)
    html = staff_client.get(reverse("admin:audit_assignment_changelist")).content.decode()
    assert "admin one" in html and "1 of 3 (1 done, 0 settled without their auditor)" in html
    change = staff_client.get(reverse("admin:audit_assignment_change", args=[made.pk]))
    page = change.content.decode()
    assert change.status_code == 200
    assert "alice: 1 of 2 task(s) done" in page and "bob: 0 of 1 task(s) done" in page
    # Inline and read-only: shown, with no input to change or delete a task.
    assert 'name="tasks-0-auditor"' not in page and 'name="tasks-0-DELETE"' not in page
    assert str(task.transcript) in page


def test_staff_make_an_assignment_from_the_admin(items, auditor, auditor2, staff_client):
    add = reverse("admin:audit_assignment_add")
    assert staff_client.get(add).status_code == 200
    response = staff_client.post(
        add,
        {"name": "from admin", "status": "open", "k": "2", "auditors": [auditor.pk, auditor2.pk]},
    )
    a = Assignment.objects.get(name="from admin")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:audit_assignment_change", args=[a.pk])
    assert (a.items, a.k, a.tasks.count()) == (3, 2, 6)


def test_the_admin_form_says_what_is_wrong(items, auditor, staff_client):
    response = staff_client.post(
        reverse("admin:audit_assignment_add"),
        {"name": "x", "status": "any", "session": "nobody", "k": "1", "auditors": [auditor.pk]},
    )
    assert response.status_code == 422 and "the selection is empty" in response.content.decode()
    assert not Assignment.objects.exists()


def test_nobody_changes_or_deletes_an_assignment(made, admin_client):
    change = reverse("admin:audit_assignment_change", args=[made.pk])
    assert admin_client.post(change, {"name": "renamed"}).status_code == 403
    delete = reverse("admin:audit_assignment_delete", args=[made.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Assignment.objects.get().name == "admin one"


def test_non_staff_are_kept_out(made, auditor_client):
    for url in (
        reverse("admin:audit_assignment_changelist"),
        reverse("admin:audit_assignment_add"),
        reverse("admin:audit_assignment_change", args=[made.pk]),
    ):
        response = auditor_client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Client().get(reverse("admin:audit_assignment_add")).status_code == 302
