"""The admin: staff-only, read-only labels and reviews, immutable releases, and the actions."""

import json
from pathlib import Path

import pytest
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.admin import RolledUpCount
from audit.models import ImportBatch, Release, Review, Transcript, Verdict
from audit.publish.release import ReleaseError, publish_release
from audit.review.workflow import set_required_reviews, submit_review
from audit.tasks import publish_release_task
from tests.factories import import_records, make_record

CHANGELIST = "admin:audit_transcript_changelist"


@pytest.fixture
def transcripts(tmp_path, auditor):
    rows = import_records(
        [
            make_record(step_number=n, task_id=("basic_oversight", "adversarial_worker")[n % 2])
            for n in range(5)
        ],
        tmp_path,
    )
    for t in rows[:2]:
        submit_review(t, auditor=auditor, verdict=Verdict.CONFIRM, based_on_version=t.version)
    return rows


@pytest.fixture
def releases_root(settings, tmp_path):
    settings.RELEASES_ROOT = tmp_path / "releases"
    return settings.RELEASES_ROOT


def run_action(client, action, ids, *, url=None, **extra):
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [str(i) for i in ids], "index": 0}
    data.update(extra)
    return client.post(url or reverse(CHANGELIST), data)


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.django_db
def test_admin_is_for_staff_only(auditor_client, plain_client, client, transcripts):
    url = reverse(CHANGELIST)
    for other in (auditor_client, plain_client, client):
        response = other.get(url)
        assert response.status_code == 302 and "login/" in response["Location"]
    response = run_action(auditor_client, "export_all_jsonl", [t.pk for t in transcripts])
    assert response.status_code == 302 and not response.streaming


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model",
    ["importbatch", "rejectedline", "importjob", "transcript", "review", "lease", "release"],
)
def test_staff_can_browse_every_model(staff_client, transcripts, model):
    assert staff_client.get(reverse(f"admin:audit_{model}_changelist")).status_code == 200


@pytest.mark.django_db
def test_transcript_list_filters_and_searches(staff_client, transcripts):
    url = reverse(CHANGELIST)
    response = staff_client.get(url, {"status": "confirmed"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 2
    response = staff_client.get(url, {"flag": "spot_check"})
    assert response.status_code == 200
    response = staff_client.get(url, {"q": "session_test"})
    assert response.context["cl"].result_count == 5


@pytest.mark.django_db
def test_the_unfiltered_list_is_counted_from_the_rollup(staff_client, transcripts, tmp_path):
    """With no filter and no search (ordering, a page, "show all" and the facets' switch aside),
    the transcripts' changelist takes its count from the rollup: no count of the table, the
    same number, an unfinished batch's rows left out as the list leaves them out. A filter or a
    search counts its own rows."""
    hidden = import_records(
        [make_record(step_number=n, session_id="s_hidden") for n in range(3)],
        tmp_path,
        name="hidden.jsonl",
    )
    ImportBatch.including_unfinished.filter(pk=hidden[0].batch_id).update(complete=False)
    url = reverse(CHANGELIST)
    assert Transcript.objects.count() == 5
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(url)
    assert response.context["cl"].result_count == 5
    counted = [
        q["sql"] for q in queries if 'COUNT(*) AS "__count" FROM "audit_transcript"' in q["sql"]
    ]
    assert not counted
    for params in ({"o": "-2"}, {"p": "1"}, {"q": ""}, {"all": ""}, {"_facets": "True"}):
        cl = staff_client.get(url, params).context["cl"]
        assert isinstance(cl.paginator, RolledUpCount) and cl.result_count == 5, params
    for params, n in (({"status": "confirmed"}, 2), ({"q": "s_hidden"}, 0), ({"q": "session"}, 5)):
        cl = staff_client.get(url, params).context["cl"]
        assert not isinstance(cl.paginator, RolledUpCount) and cl.result_count == n, params


@pytest.mark.django_db
def test_transcript_labels_cannot_be_edited(staff_client, transcripts):
    t = transcripts[2]
    url = reverse("admin:audit_transcript_change", args=[t.pk])
    assert staff_client.get(url).status_code == 200  # a read-only view
    response = staff_client.post(url, {"final_is_misbehavior": "on", "status": "relabeled"})
    assert response.status_code == 403
    t.refresh_from_db()
    assert t.final_is_misbehavior is False and t.status == "unreviewed"
    assert staff_client.get(reverse("admin:audit_transcript_add")).status_code == 403
    assert (
        staff_client.get(reverse("admin:audit_transcript_delete", args=[t.pk])).status_code == 403
    )


@pytest.mark.django_db
def test_reviews_are_read_only_even_for_superusers(admin_client, transcripts):
    review = Review.objects.first()
    change = reverse("admin:audit_review_change", args=[review.pk])
    assert admin_client.get(change).status_code == 200
    assert admin_client.post(change, {"verdict": "relabel", "rationale": "x"}).status_code == 403
    assert (
        admin_client.get(reverse("admin:audit_review_delete", args=[review.pk])).status_code == 403
    )
    assert (
        admin_client.post(
            reverse("admin:audit_review_delete", args=[review.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert admin_client.get(reverse("admin:audit_review_add")).status_code == 403
    response = run_action(
        admin_client, "delete_selected", [review.pk], url=reverse("admin:audit_review_changelist")
    )
    assert Review.objects.filter(pk=review.pk).exists()
    assert response.status_code in (200, 302)
    review.refresh_from_db()
    assert review.verdict == "confirm"


@pytest.mark.django_db
def test_release_cannot_be_changed_or_deleted(admin_client, transcripts, releases_root):
    release = publish_release(Transcript.objects.all(), version="1.0.0", output_dir=releases_root)
    change = reverse("admin:audit_release_change", args=[release.pk])
    assert admin_client.post(change, {"version": "6.6.6"}).status_code == 403
    delete = reverse("admin:audit_release_delete", args=[release.pk])
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Release.objects.get().version == "1.0.0"
    assert Path(release.path).is_dir()


@pytest.mark.django_db
def test_release_list_links_to_the_archive(staff_client, transcripts, releases_root):
    publish_release(Transcript.objects.all(), version="1.0.0", output_dir=releases_root)
    response = staff_client.get(reverse("admin:audit_release_changelist"))
    assert reverse("release_download", args=["1.0.0"]) in response.content.decode()


@pytest.mark.django_db
def test_batches_are_read_only(staff_client, transcripts):
    batch = ImportBatch.objects.get()
    assert (
        staff_client.post(
            reverse("admin:audit_importbatch_change", args=[batch.pk]), {"file_name": "x"}
        ).status_code
        == 403
    )
    assert (
        staff_client.get(reverse("admin:audit_importbatch_delete", args=[batch.pk])).status_code
        == 403
    )


@pytest.mark.django_db
def test_export_reviewed_action_streams_reviewed_records(staff_client, transcripts):
    ids = [t.pk for t in transcripts]
    response = run_action(staff_client, "export_reviewed_jsonl", ids)
    assert response.status_code == 200 and response.streaming
    assert "attachment;" in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 2
    assert all(json.loads(line)["review"]["manually_reviewed"] for line in lines)
    assert "Exported 2 of 5 selected transcripts (reviewed only)." in messages_of(response)


@pytest.mark.django_db
def test_export_all_action_streams_every_selected_record(staff_client, transcripts):
    response = run_action(staff_client, "export_all_jsonl", [t.pk for t in transcripts[1:]])
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 4
    assert "Exported 4 of 4 selected transcripts" in messages_of(response)[0]


@pytest.mark.django_db
def test_export_action_over_all_matching_streams_the_filtered_set(staff_client, transcripts):
    url = reverse(CHANGELIST) + "?task_id__exact=adversarial_worker"
    response = run_action(
        staff_client, "export_all_jsonl", [transcripts[1].pk], url=url, select_across="1"
    )
    assert response.streaming
    records = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [r["step_number"] for r in records] == [1, 3]


@pytest.mark.django_db
def test_export_summary_action_returns_summary_json(staff_client, transcripts):
    response = run_action(staff_client, "export_summary", [t.pk for t in transcripts])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    summary = json.loads(response.content)
    assert summary["review_status"]["confirmed"] == 2
    assert summary["as_imported"]["total_decisions"] == 5
    assert summary["published"] == summary["current"]
    assert summary["settled_before"]["total_decisions"] == 2
    assert set(summary) >= {
        "current",
        "settled_before",
        "settled_after",
        "confusion_matrix",
        "label_changes",
        "agreement",
        "estimated_error_rate",
    }
    assert "Summary of 5 selected transcripts (2 reviewed, 3 not)." in messages_of(response)


@pytest.mark.django_db
def test_publish_action_asks_for_a_version_then_publishes(
    staff_client, staff_user, transcripts, releases_root
):
    ids = [t.pk for t in transcripts]
    form = run_action(staff_client, "publish_release_action", ids)
    assert form.status_code == 200
    assert b'name="version"' in form.content
    assert b"5 transcripts selected: 2 reviewed, 3 not" in form.content

    bad = staff_client.post(
        reverse(CHANGELIST),
        {
            "action": "publish_release_action",
            helpers.ACTION_CHECKBOX_NAME: [str(i) for i in ids],
            "version": "one",
            "apply": "Publish",
        },
    )
    assert bad.status_code == 200 and b"X.Y.Z" in bad.content
    assert not Release.objects.exists()

    data = {
        "action": "publish_release_action",
        helpers.ACTION_CHECKBOX_NAME: [str(i) for i in ids],
        "version": "1.0.0",
        "include_unreviewed": "on",
        "apply": "Publish",
    }
    response = staff_client.post(reverse(CHANGELIST), data)
    assert response.status_code == 302
    release = Release.objects.get()
    assert release.created_by == staff_user
    assert release.counts == {"reviewed": 2, "unreviewed": 3, "records": 5, "selection": 5}
    assert Path(release.path) == (releases_root / "1.0.0").resolve()
    assert (
        "Published release 1.0.0: 2 reviewed and 3 unreviewed records from 5 selected."
        in messages_of(response)
    )


@pytest.mark.django_db
def test_publish_action_over_all_matching_keeps_the_changelist_filter(
    staff_client, transcripts, releases_root
):
    url = reverse(CHANGELIST) + "?task_id__exact=basic_oversight"
    form = run_action(
        staff_client, "publish_release_action", [transcripts[0].pk], url=url, select_across="1"
    )
    assert b'name="select_across" value="1"' in form.content
    assert b"3 transcripts selected" in form.content
    data = {
        "action": "publish_release_action",
        helpers.ACTION_CHECKBOX_NAME: [str(transcripts[0].pk)],
        "select_across": "1",
        "version": "0.1.0",
        "apply": "Publish",
    }
    staff_client.post(url, data)
    release = Release.objects.get()
    assert release.counts["selection"] == 3
    assert release.filters["changelist"] == {"task_id__exact": ["basic_oversight"]}
    assert release.filters["selection"] == "all matching"
    assert release.filters["filter"] == {"task": ["basic_oversight"]}


@pytest.mark.django_db
def test_require_reviews_action_sets_k(staff_client, transcripts):
    ids = [t.pk for t in transcripts[2:]]
    form = run_action(staff_client, "require_reviews", ids)
    assert form.status_code == 200 and b'name="k"' in form.content
    data = {
        "action": "require_reviews",
        helpers.ACTION_CHECKBOX_NAME: [str(i) for i in ids],
        "k": "2",
        "apply": "Set K",
    }
    response = staff_client.post(reverse(CHANGELIST), data)
    assert response.status_code == 302
    assert set(
        Transcript.objects.filter(pk__in=ids).values_list("required_reviews", flat=True)
    ) == {2}
    assert Transcript.objects.exclude(pk__in=ids).filter(required_reviews=2).count() == 0
    assert "3 transcripts now need 2 reviews." in messages_of(response)


@pytest.mark.django_db
def test_require_reviews_rejects_k_below_one(staff_client, transcripts):
    data = {
        "action": "require_reviews",
        helpers.ACTION_CHECKBOX_NAME: [str(transcripts[0].pk)],
        "k": "0",
        "apply": "Set K",
    }
    response = staff_client.post(reverse(CHANGELIST), data)
    assert response.status_code == 200
    assert Transcript.objects.filter(required_reviews=1).count() == 5


# --- blind review in the admin -------------------------------------------------------------------


@pytest.fixture
def in_progress(transcripts, auditor2):
    """transcripts[3] needs two reviews and has one: a relabel nobody else may see yet."""
    t = transcripts[3]
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    t.refresh_from_db()
    submit_review(
        t,
        auditor=auditor2,
        verdict=Verdict.RELABEL,
        is_misbehavior=True,
        misbehavior_type="destructive_precedence",
        correct_decision="BLOCK",
        rationale="SECRET-RATIONALE",
        based_on_version=t.version,
    )
    t.refresh_from_db()
    assert t.status == "in_progress"
    return t


@pytest.mark.django_db
def test_review_admin_shows_only_reviews_of_settled_items(staff_client, transcripts, in_progress):
    url = reverse("admin:audit_review_changelist")
    response = staff_client.get(url)
    shown = {review.transcript_id for review in response.context["cl"].result_list}
    assert shown == {transcripts[0].pk, transcripts[1].pk}
    assert staff_client.get(url, {"q": "SECRET-RATIONALE"}).context["cl"].result_count == 0
    hidden = Review.objects.get(transcript=in_progress)
    page = staff_client.get(reverse("admin:audit_review_change", args=[hidden.pk]), follow=True)
    assert b"SECRET-RATIONALE" not in page.content
    assert b"destructive_precedence" not in page.content


@pytest.mark.django_db
def test_transcript_admin_shows_final_labels_only_for_settled_items(
    staff_client, transcripts, in_progress
):
    from django.contrib.admin import site

    model_admin = site._registry[Transcript]
    for t in Transcript.objects.all():
        shown = model_admin.final_category(t)
        if t.status in ("confirmed", "relabeled", "adjudicated"):
            assert shown == t.final_alignment_category
        else:
            assert shown == "—"
    response = staff_client.get(reverse(CHANGELIST))
    assert "final_alignment_category" not in response.context["cl"].list_display
    # The final-category filter counts settled items only.
    response = staff_client.get(reverse(CHANGELIST), {"final_category": "aligned_approve"})
    assert response.context["cl"].result_count == 2
    response = staff_client.get(reverse(CHANGELIST), {"final_category": "aligned_catch"})
    assert response.context["cl"].result_count == 0


@pytest.mark.django_db
def test_transcript_page_hides_final_labels_until_settled(staff_client, transcripts, in_progress):
    def fields(t):
        page = staff_client.get(reverse("admin:audit_transcript_change", args=[t.pk]))
        assert page.status_code == 200
        return {
            field
            for fieldset in page.context["adminform"]
            for line in fieldset
            for field in line.fields
        }

    assert "final_is_misbehavior" in fields(transcripts[0])  # settled
    for t in (in_progress, transcripts[4]):
        assert not {
            "final_is_misbehavior",
            "final_misbehavior_type",
            "final_correct_decision",
            "final_alignment_category",
        } & fields(t)


# --- publishing in the background ----------------------------------------------------------------


@pytest.fixture
def queued_tasks(settings):
    """A task backend that only queues, as the database backend does until a worker runs."""
    from django.tasks import default_task_backend

    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    default_task_backend.clear()
    return default_task_backend


def publish_data(ids, **extra):
    return {
        "action": "publish_release_action",
        helpers.ACTION_CHECKBOX_NAME: [str(i) for i in ids],
        "version": "1.0.0",
        "apply": "Publish",
        **extra,
    }


@pytest.mark.django_db
def test_publish_action_enqueues_a_task_and_says_so(
    staff_client, staff_user, transcripts, releases_root, queued_tasks
):
    ids = [t.pk for t in transcripts[:3]]
    response = staff_client.post(reverse(CHANGELIST), publish_data(ids, include_unreviewed="on"))
    assert response.status_code == 302
    assert not Release.objects.exists()  # nothing ran in the request
    assert (
        "Publishing release 1.0.0 in the background; it will appear in Releases when done."
        in messages_of(response)
    )
    [result] = queued_tasks.results
    assert result.task.func is publish_release_task.func
    json.dumps([result.args, result.kwargs])  # what a database backend stores
    assert result.args[:2] == ["1.0.0", {"pks": sorted(ids)}]
    assert result.kwargs["include_unreviewed"] is True
    assert result.kwargs["user_id"] == staff_user.pk
    # The worker's turn.
    outcome = result.task.call(*result.args, **result.kwargs)
    release = Release.objects.get()
    assert (
        outcome["counts"]
        == release.counts
        == {
            "reviewed": 2,
            "unreviewed": 1,
            "records": 3,
            "selection": 3,
        }
    )
    assert release.created_by == staff_user
    assert release.filters["selection"] == "chosen by hand"


@pytest.mark.django_db
def test_publish_over_all_matching_passes_the_filter_when_it_maps(
    staff_client, transcripts, releases_root, queued_tasks
):
    url = reverse(CHANGELIST) + "?task_id__exact=basic_oversight&status__exact=unreviewed&o=2"
    staff_client.post(url, publish_data([transcripts[0].pk], select_across="1"))
    [result] = queued_tasks.results
    assert result.args[1] == {"filter": {"status": ["unreviewed"], "task": ["basic_oversight"]}}
    result.task.call(*result.args, **result.kwargs)
    assert Release.objects.get().counts["selection"] == 2  # steps 2 and 4


@pytest.mark.django_db
def test_publish_over_all_matching_passes_ids_when_the_filter_does_not_map(
    staff_client, transcripts, releases_root, queued_tasks
):
    url = reverse(CHANGELIST) + "?in_queue__exact=1&task_id__exact=adversarial_worker"
    staff_client.post(url, publish_data([transcripts[1].pk], select_across="1"))
    [result] = queued_tasks.results
    expected = Transcript.objects.filter(in_queue=True, task_id="adversarial_worker")
    assert result.args[1] == {"pks": sorted(expected.values_list("pk", flat=True))}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            ReleaseError("release 1.0.0 already exists; releases are immutable"),
            "release 1.0.0 already exists; releases are immutable",
        ),
        (OSError(28, "No space left on device"), "OSError: [Errno 28] No space left on device"),
    ],
    ids=["refused", "crashed"],
)
def test_publish_action_reports_a_failed_task(
    staff_client, transcripts, releases_root, monkeypatch, error, reason
):
    from audit import tasks

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(tasks, "publish_release", refuse)
    response = staff_client.post(reverse(CHANGELIST), publish_data([transcripts[0].pk]))
    assert response.status_code == 302
    assert f"Release 1.0.0 was not published: {reason}" in messages_of(response)
    assert not Release.objects.exists()


@pytest.mark.django_db
def test_publish_task_returns_a_refusal_as_its_result(transcripts, releases_root):
    (releases_root / "1.0.0").mkdir(parents=True)
    assert publish_release_task.call("1.0.0", {"pks": [transcripts[0].pk]}) == {
        "error": f"{releases_root / '1.0.0'} already exists; releases are immutable"
    }
    assert not Release.objects.exists()


@pytest.mark.django_db
def test_publish_form_refuses_a_version_whose_directory_exists(
    staff_client, transcripts, releases_root
):
    (releases_root / "1.0.0").mkdir(parents=True)
    response = staff_client.post(reverse(CHANGELIST), publish_data([transcripts[0].pk]))
    assert response.status_code == 200 and b"already exists" in response.content
    assert not Release.objects.exists()


@pytest.mark.django_db
def test_publish_action_reports_a_write_error_naming_the_file_and_the_cause(
    staff_client, transcripts, releases_root, monkeypatch
):
    """D12: a full disk is the task's reported error, not a traceback, and leaves no trace."""
    import errno
    import os

    from audit.publish import export as exporters

    def disk_full(queryset, path, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(exporters, "write_jsonl", disk_full)
    response = staff_client.post(reverse(CHANGELIST), publish_data([transcripts[0].pk]))
    assert response.status_code == 302
    assert messages_of(response) == [
        "Release 1.0.0 was not published: could not write data/reviewed.jsonl of release 1.0.0 "
        f"in {releases_root}: No space left on device"
    ]
    assert not Release.objects.exists() and list(releases_root.iterdir()) == []


@pytest.mark.django_db
def test_publish_form_accepts_a_version_that_a_crashed_publish_left_behind(
    staff_client, transcripts, releases_root
):
    """D9: killed between the rename and the commit, a publish leaves the folder and its marker;
    the version is still free."""
    (releases_root / "1.0.0").mkdir(parents=True)
    (releases_root / ".1.0.0.pending").write_text("{}")
    response = staff_client.post(reverse(CHANGELIST), publish_data([transcripts[0].pk]))
    assert response.status_code == 302
    assert messages_of(response)[0].startswith("Published release 1.0.0:")
    release = Release.objects.get()
    assert sorted(p.name for p in releases_root.iterdir()) == ["1.0.0"]
    assert (Path(release.path) / "manifest.json").is_file()
