"""Web import jobs whose worker died are noticed (D7): marked failed with the reason on their
page, in the Imports list and by ``manage.py cleanup``, and their files removed; the task beats
while it runs and removes its upload however it ends."""

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from audit import tasks
from audit.models import ImportJob
from audit.tasks import _progress_writer, clean_up_jobs, fail_stale_jobs, import_upload
from tests.factories import DATA_DIR

STALE = 300


@pytest.fixture
def places(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"
    settings.AUDIT_IMPORT_STALE_SECONDS = STALE
    (tmp_path / "media" / "uploads").mkdir(parents=True)
    return tmp_path


def make_job(user, *, state=ImportJob.State.RUNNING, silent_for=None, name="a"):
    """A job with its upload (and, while running, its progress file), last seen ``silent_for``
    seconds ago."""
    upload = tasks.uploads_dir() / f"{name}.upload"
    upload.write_bytes((DATA_DIR / "rule_s0.jsonl").read_bytes())
    job = ImportJob.objects.create(
        created_by=user, file_name=f"{name}.jsonl", upload_path=str(upload), state=state
    )
    if silent_for is not None:
        ImportJob.objects.filter(pk=job.pk).update(
            heartbeat_at=timezone.now() - dt.timedelta(seconds=silent_for)
        )
    if state == ImportJob.State.RUNNING:
        _progress_writer(job.pk, 1000)(250)
    return ImportJob.objects.get(pk=job.pk)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.django_db
def test_a_job_whose_worker_died_is_failed_on_its_page_with_the_reason(
    staff_client, staff_user, places
):
    job = make_job(staff_user, silent_for=STALE + 100)
    response = staff_client.get(reverse("import_job", args=[job.pk]), HTTP_HX_REQUEST="true")
    job.refresh_from_db()
    assert job.state == ImportJob.State.FAILED and job.report["stale"] is True
    assert job.report["crash"] == (
        "its worker stopped giving signs of life 6 min ago (AUDIT_IMPORT_STALE_SECONDS is 300 s), "
        "so it was probably killed or restarted; upload the file again"
    )
    page = response.content.decode()
    assert "The import crashed: its worker stopped giving signs of life 6 min ago" in page
    assert 'id="job-state">Failed<' in page
    assert "every 1s" not in page  # the page stops polling
    assert not Path(job.upload_path).exists()
    assert not tasks.progress_path(job.pk).exists()


@pytest.mark.django_db
def test_a_job_that_beats_keeps_running_and_its_files(staff_client, staff_user, places):
    job = make_job(staff_user, silent_for=STALE - 30)
    response = staff_client.get(reverse("import_job", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert b'<progress id="job-progress" max="100" value="25">' in response.content
    job.refresh_from_db()
    assert job.state == ImportJob.State.RUNNING
    assert Path(job.upload_path).exists() and tasks.progress_path(job.pk).exists()


@pytest.mark.django_db
def test_a_job_that_never_beat_counts_from_its_creation(staff_user, places):
    job = make_job(staff_user)
    assert fail_stale_jobs() == ()
    ImportJob.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - dt.timedelta(seconds=STALE + 1)
    )
    assert fail_stale_jobs() == (job.pk,)


@pytest.mark.django_db
def test_the_import_list_shows_a_dead_job_as_failed(staff_client, staff_user, places):
    dead = make_job(staff_user, silent_for=3 * 3600, name="dead")
    alive = make_job(staff_user, silent_for=1, name="alive")
    response = staff_client.get(reverse("batch_list"))
    assert response.status_code == 200
    states = dict(ImportJob.objects.values_list("pk", "state"))
    assert states == {dead.pk: ImportJob.State.FAILED, alive.pk: ImportJob.State.RUNNING}
    assert "3 h ago" in ImportJob.objects.get(pk=dead.pk).report["crash"]
    assert not Path(dead.upload_path).exists() and Path(alive.upload_path).exists()


@pytest.mark.django_db
def test_only_queued_and_running_jobs_keep_their_files_through_a_cleanup(staff_user, places):
    stale = make_job(staff_user, silent_for=STALE + 1, name="stale")
    running = make_job(staff_user, silent_for=0, name="running")
    queued = make_job(staff_user, state=ImportJob.State.QUEUED, name="queued")
    done = make_job(staff_user, state=ImportJob.State.DONE, name="done")  # its finally failed
    failed = make_job(staff_user, state=ImportJob.State.FAILED, name="failed")
    # Uploads no job refers to: a request that died while saving one, long ago; one arriving.
    orphan, arriving = tasks.uploads_dir() / "orphan.upload", tasks.uploads_dir() / "new.upload"
    orphan.write_bytes(b"x")
    arriving.write_bytes(b"x")
    age(orphan, STALE + 1)
    leftover = tasks.progress_path(done.pk)
    leftover.write_text("{}")

    planned = clean_up_jobs(dry_run=True)
    assert planned.failed == (stale.pk,)
    assert ImportJob.objects.get(pk=stale.pk).state == ImportJob.State.RUNNING
    assert all(Path(path).exists() for path in planned.removed)

    cleaned = clean_up_jobs()
    assert cleaned.failed == (stale.pk,)
    assert sorted(cleaned.removed) == sorted(planned.removed)
    assert sorted(p.name for p in tasks.uploads_dir().iterdir()) == [
        "new.upload",
        "queued.upload",
        "running.upload",
    ]
    assert not leftover.exists() and tasks.progress_path(running.pk).exists()
    assert ImportJob.objects.get(pk=stale.pk).state == ImportJob.State.FAILED
    for job in (done, failed, queued):
        assert ImportJob.objects.get(pk=job.pk).state == job.state


@pytest.mark.django_db
def test_cleanup_command_reports_what_it_did(staff_user, places, settings, capsys):
    settings.RELEASES_ROOT = places / "releases"
    job = make_job(staff_user, silent_for=STALE + 1)
    call_command("cleanup", "--dry-run")
    out = capsys.readouterr().out
    assert f"import job {job.pk}: its worker died; would be marked failed, its files" in out
    call_command("cleanup")
    out = capsys.readouterr().out
    assert f"import job {job.pk}: its worker died; marked failed, its files removed" in out
    assert not Path(job.upload_path).exists()
    call_command("cleanup")
    assert capsys.readouterr().out == "nothing to clean up\n"


@pytest.mark.django_db
def test_a_removal_never_leaves_the_uploads_folder(staff_user, places):
    outside = places / "precious.jsonl"
    outside.write_text("keep me")
    job = make_job(staff_user, silent_for=STALE + 1)
    ImportJob.objects.filter(pk=job.pk).update(upload_path=str(outside))
    assert fail_stale_jobs() == (job.pk,)
    assert outside.exists()


# --- the task ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_task_beats_while_the_import_runs(staff_user, places, settings, monkeypatch):
    settings.AUDIT_IMPORT_STALE_SECONDS = 0.5  # a beat every 0.1 s
    job = make_job(staff_user, state=ImportJob.State.QUEUED)
    beats = []
    real_import = tasks.import_file

    def slow_import(*args, **kwargs):
        # Waits for three new beats while "importing" (each look waits for the next beat, so
        # a loaded machine only makes it slower; 30 s means the beats stopped).
        beats.append(ImportJob.objects.get(pk=job.pk).heartbeat_at)
        deadline = time.monotonic() + 30
        while len(beats) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
            beat = ImportJob.objects.get(pk=job.pk).heartbeat_at
            if beat != beats[-1]:
                beats.append(beat)
        return real_import(*args, **kwargs)

    monkeypatch.setattr(tasks, "import_file", slow_import)
    import_upload.call(job.pk)
    assert len(beats) == 4, "the task stopped beating while the import ran"
    assert None not in beats and beats == sorted(set(beats))  # each beat newer than the last
    job.refresh_from_db()
    assert job.state == ImportJob.State.DONE
    assert not Path(job.upload_path).exists()


class Killed(BaseException):
    """The worker dies here."""


@pytest.mark.django_db
@pytest.mark.parametrize("error", [RuntimeError("boom"), Killed()], ids=["crash", "kill"])
def test_the_task_removes_its_upload_however_it_ends(staff_user, places, monkeypatch, error):
    job = make_job(staff_user, state=ImportJob.State.QUEUED)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(tasks, "import_file", fail)
    with pytest.raises(type(error)):
        import_upload.call(job.pk)
    job.refresh_from_db()
    assert not Path(job.upload_path).exists() and not tasks.progress_path(job.pk).exists()
    if isinstance(error, Killed):
        # Still "running", with no more beats: the staleness check fails it later.
        assert job.state == ImportJob.State.RUNNING
        later = timezone.now() + dt.timedelta(seconds=STALE + 1)
        assert fail_stale_jobs(now=later) == (job.pk,)
    else:
        assert job.report == {"crash": "RuntimeError: boom"}


@pytest.mark.django_db
def test_a_job_failed_as_stale_that_then_finishes_reports_its_result(
    staff_user, places, monkeypatch
):
    """A worker that was only slow to beat: what it did is the truth."""
    job = make_job(staff_user, state=ImportJob.State.QUEUED)
    real_import = tasks.import_file

    def slow_import(*args, **kwargs):
        result = real_import(*args, **kwargs)
        later = timezone.now() + dt.timedelta(seconds=STALE + 1)
        assert fail_stale_jobs(now=later) == (job.pk,)
        return result

    monkeypatch.setattr(tasks, "import_file", slow_import)
    batch_id = import_upload.call(job.pk)
    job.refresh_from_db()
    assert job.state == ImportJob.State.DONE and job.batch_id == batch_id is not None


def _queued_for(user, seconds):
    job = make_job(user, state=ImportJob.State.QUEUED)
    ImportJob.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - dt.timedelta(seconds=seconds)
    )
    return ImportJob.objects.get(pk=job.pk)


@pytest.mark.django_db
def test_a_job_no_worker_started_says_so_and_stays_queued(staff_client, staff_user, places):
    """A queued job is not dead (a worker started later runs it), but after
    AUDIT_IMPORT_STALE_SECONDS its page says no worker has started it, and what to check."""
    fresh = _queued_for(staff_user, STALE - 10)
    page = staff_client.get(reverse("import_job", args=[fresh.pk])).content.decode()
    assert 'id="job-waiting"' not in page
    job = _queued_for(staff_user, STALE + 400)
    page = staff_client.get(reverse("import_job", args=[job.pk])).content.decode()
    assert (
        "Waiting: no task worker has started it in 11 min; is `python manage.py db_worker` "
        "running? It will run when a worker starts." in page
    )
    assert "every 1s" in page  # still polling: it runs when a worker comes
    job.refresh_from_db()
    assert job.state == ImportJob.State.QUEUED and Path(job.upload_path).exists()


@pytest.mark.django_db
def test_cleanup_names_queued_jobs_no_worker_started(staff_user, places, settings, capsys):
    settings.RELEASES_ROOT = places / "releases"
    job = _queued_for(staff_user, 3 * 3600)
    call_command("cleanup")
    assert capsys.readouterr().out == (
        f"import job {job.pk}: queued, but no task worker has started it in 3 h; is "
        "`python manage.py db_worker` running? It will run when a worker starts\n"
    )
    assert ImportJob.objects.get(pk=job.pk).state == ImportJob.State.QUEUED
    assert Path(job.upload_path).exists()


def _killed_import(tmp_path, monkeypatch):
    """What a kill mid-insert leaves: an unfinished batch holding some rows (no clean-up ran)."""
    from audit.ingest import importer
    from tests.factories import make_record, write_jsonl

    monkeypatch.setattr(importer, "CHUNK_SIZE", 2)
    real = importer._write_rows
    calls: list[int] = []

    def killed(rows, *, batch):
        calls.append(len(rows))
        if len(calls) == 2:
            raise SystemExit("killed")
        return real(rows, batch=batch)

    monkeypatch.setattr(importer, "_write_rows", killed)
    monkeypatch.setattr(importer, "_discard_after_failure", lambda batch_id: None)
    path = write_jsonl(tmp_path / "run.jsonl", [make_record(step_number=n) for n in range(5)])
    with pytest.raises(SystemExit):
        importer.import_file(path)
    monkeypatch.undo()
    from audit.models import ImportBatch, Transcript

    batch = ImportBatch.including_unfinished.get()
    assert not batch.complete and Transcript.including_unfinished.count() == 2
    return batch


@pytest.mark.django_db
def test_cleanup_removes_what_a_killed_import_left(staff_user, places, settings, capsys):
    from audit.models import ImportBatch, Transcript

    settings.RELEASES_ROOT = places / "releases"
    batch = _killed_import(places, pytest.MonkeyPatch())
    call_command("cleanup", "--dry-run")
    assert capsys.readouterr().out == (
        f"import batch {batch.pk}: left unfinished by a killed import (never visible); would be "
        "removed with its rows\n"
    )
    assert Transcript.including_unfinished.count() == 2
    call_command("cleanup")
    assert "removed with its rows" in capsys.readouterr().out
    assert not ImportBatch.including_unfinished.exists()
    assert not Transcript.including_unfinished.exists()
    call_command("cleanup")
    assert capsys.readouterr().out == "nothing to clean up\n"


@pytest.mark.django_db(transaction=True)
def test_cleanup_leaves_the_batch_of_an_import_that_is_running(
    staff_user, places, settings, capsys
):
    """While an import holds the import lock its own batch is unfinished: cleanup must not
    take it for a leftover (nor wait for the import)."""
    import threading

    from django.db import connections

    from audit.ingest import importer
    from audit.models import ImportBatch

    settings.RELEASES_ROOT = places / "releases"
    batch = _killed_import(places, pytest.MonkeyPatch())
    holding, done = threading.Event(), threading.Event()

    def running_import():
        try:
            with importer._one_import_at_a_time():
                holding.set()
                done.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=running_import)
    thread.start()
    try:
        assert holding.wait(30)
        call_command("cleanup")
        assert capsys.readouterr().out == (
            "an import is running: what killed imports left in the database is removed after "
            "it (or by the next import)\n"
        )
        assert ImportBatch.including_unfinished.filter(pk=batch.pk).exists()
    finally:
        done.set()
        thread.join()
    call_command("cleanup")
    assert "removed with its rows" in capsys.readouterr().out
    assert not ImportBatch.including_unfinished.exists()
