"""Query counts of every page but the queue (pinned in tests/review), at two data sizes: a page
runs the same number of queries whatever the number of transcripts, reviews and batches."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.demo.generator import generate_records
from audit.ingest import importer
from audit.models import ImportBatch, ImportJob, Status, Transcript
from audit.review.workflow import incomplete_label, set_required_reviews
from tests.factories import confirm, relabel, write_jsonl

pytestmark = pytest.mark.django_db

# Records per size; each size is imported as three batches.
SIZES = (150, 450)


@pytest.fixture(params=SIZES, ids=lambda n: f"{n}_records")
def data(request, tmp_path, staff_user, auditor, auditor2) -> dict[str, Any]:
    """Generated records in three batches, a tenth of them reviewed, two items disputed, one
    finished upload job."""
    n = request.param
    records = list(generate_records(count=n, seed=5))
    third = n // 3
    for part in range(3):
        path = write_jsonl(
            tmp_path / f"part{part}.jsonl", records[part * third : (part + 1) * third]
        )
        result = importer.import_file(path, user=staff_user)
        assert not result.failed
    confirmable = [t for t in Transcript.objects.order_by("id") if not incomplete_label(t)]
    for item in confirmable[: n // 10]:
        confirm(item, auditor)
    disputed = confirmable[n // 10 : n // 10 + 2]
    set_required_reviews(Transcript.objects.filter(pk__in=[t.pk for t in disputed]), 2)
    for item in disputed:
        confirm(item, auditor)
        relabel(
            item,
            auditor2,
            is_misbehavior=not item.is_misbehavior,
            correct_decision="APPROVE" if item.is_misbehavior else "BLOCK",
        )
    assert Transcript.objects.filter(status=Status.DISPUTED).count() == 2
    batch = ImportBatch.objects.order_by("id").first()
    job = ImportJob.objects.create(
        created_by=staff_user,
        file_name="part0.jsonl",
        upload_path="",
        state=ImportJob.State.DONE,
        batch=batch,
        report={"files": []},
    )
    return {
        "item": confirmable[-1],
        "disputed": disputed[0],
        "batch": batch,
        "job": job,
        "task": confirmable[0].task_id,
    }


def _count(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(queries.captured_queries)


def _urls(data: dict[str, Any]) -> dict[str, str]:
    today = dt.date.today()
    return {
        "item": reverse("item", args=[data["item"].pk]),
        "adjudication_queue": reverse("adjudication_queue"),
        "adjudicate_item": reverse("adjudicate_item", args=[data["disputed"].pk]),
        "dashboard": reverse("dashboard"),
        "dashboard_batch": reverse("dashboard") + f"?batch={data['batch'].pk}",
        "dashboard_task_batch": reverse("dashboard")
        + f"?batch={data['batch'].pk}&task={data['task']}",
        "dashboard_session": reverse("dashboard") + f"?session={data['item'].session_id}",
        "dashboard_dates": reverse("dashboard")
        + f"?date_from=2000-01-01&date_to={today.isoformat()}",
        "dashboard_monitors": reverse("dashboard_monitors") + f"?batch={data['batch'].pk}",
        "auditors": reverse("auditors"),
        "auditors_batch": reverse("auditors") + f"?batch={data['batch'].pk}",
        "batch_list": reverse("batch_list"),
        "import_job": reverse("import_job", args=[data["job"].pk]),
        "batch_detail": reverse("batch_detail", args=[data["batch"].pk]),
        "upload": reverse("upload"),
        "admin_transcripts": reverse("admin:audit_transcript_changelist"),
        "admin_transcripts_filtered": reverse("admin:audit_transcript_changelist")
        + f"?status__exact=confirmed&task_id={data['task']}",
        "admin_transcript": reverse("admin:audit_transcript_change", args=[data["item"].pk]),
        "admin_reviews": reverse("admin:audit_review_changelist"),
        "admin_batches": reverse("admin:audit_importbatch_changelist"),
    }


# Pinned: page -> queries, for staff (who sees every figure).
STAFF = {
    # The discussion: + 2 on the item and adjudication screens (the thread's comments with
    # their revisions, and the item's marks); the guidelines: + 1 on the same two (the current
    # version). Progress: + 1 (the queue's size from the rollup and the viewer's own reviewed
    # items in it, two small reads in place of counting the open rows).
    "item": 9 + 2 + 1 + 1,
    "adjudication_queue": 6,
    "adjudicate_item": 5 + 2 + 1,
    "dashboard": 33,
    "dashboard_batch": 33,
    "dashboard_task_batch": 33,
    "dashboard_session": 31,
    "dashboard_dates": 33,
    # The filter choices, the record counts, the two of the cache key (settled items, newest
    # review) and, the first time for this state, the read of the settled rows.
    "dashboard_monitors": 8,
    "auditors": 7,
    "auditors_batch": 7,
    "batch_list": 7,
    "import_job": 5,
    "batch_detail": 5,
    "upload": 3,
    "admin_transcripts": 12,
    "admin_transcripts_filtered": 12,
    "admin_transcript": 6,
    "admin_reviews": 7,
    "admin_batches": 8,
}
# A plain auditor: blind figures on the dashboard, own rows on the auditors page.
AUDITOR = {
    "item": 9 + 2 + 1 + 1,  # discussion + 2, guidelines + 1, progress + 1, as for staff
    "dashboard": 18,
    "dashboard_batch": 18,
    "dashboard_dates": 18,
    "auditors": 7,
}


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _check(client: Client, data: dict[str, Any], pinned: dict[str, int]) -> None:
    urls = _urls(data)
    counts = {}
    for name in pinned:
        # Pinned is a repeat visit: a first one may write once (the item page reserves the
        # item, a GET that writes by design; the admin's first visit to a page).
        client.get(urls[name])
        counts[name] = _count(client, urls[name])
    assert counts == pinned


def test_staff_pages_run_a_fixed_number_of_queries(data, staff_user):
    _check(_client(staff_user), data, STAFF)


def test_auditor_pages_run_a_fixed_number_of_queries(data, auditor):
    _check(_client(auditor), data, AUDITOR)


def test_the_login_page_runs_no_query(data, client: Client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("login"))
    assert response.status_code == 200
    assert len(queries.captured_queries) == 0
