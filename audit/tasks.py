"""Background tasks (django.tasks): long web imports and releases run here, not in the request.

Development runs tasks in-process (ImmediateBackend); production sets
AUDIT_TASKS_BACKEND=database and runs ``python manage.py db_worker``.

A worker can die under a web import (killed, out of memory, a restart or deploy), and then
nothing would finish its ImportJob: it would show "Running" forever and keep its upload. So a
running import beats: a thread of the task stamps ``ImportJob.heartbeat_at`` every fifth of
AUDIT_IMPORT_STALE_SECONDS, whatever the import is doing (reading, waiting for another import,
inserting), and stops only with the task or its process. ``fail_stale_jobs`` marks a running job
whose last beat is older than AUDIT_IMPORT_STALE_SECONDS failed, with the reason, and removes
its files; the job page, the Imports list and ``manage.py cleanup`` call it.
``clean_up_jobs`` (the command) also removes the upload and progress files that no queued or
running job needs. The task itself removes its upload however it ends.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, connections
from django.db.models import QuerySet
from django.db.models.functions import Coalesce
from django.tasks import task
from django.utils import timezone

from audit.ingest.importer import discard_unfinished, import_file
from audit.models import ImportJob, RollupQuerySet
from audit.publish import selection as selections
from audit.publish.release import ReleaseError, publish_release

logger = logging.getLogger(__name__)

# What a job still needs its files for.
ACTIVE_STATES = (ImportJob.State.QUEUED, ImportJob.State.RUNNING)


def jobs_dir() -> Path:
    return Path(settings.VAR_DIR) / "jobs"


def progress_path(job_id: int) -> Path:
    """Where a running import reports bytes read. A file, not a row: it is rewritten twice a
    second while the file is read, writes that SQLite's one write lock need not carry."""
    return jobs_dir() / f"{job_id}.progress.json"


def uploads_dir() -> Path:
    """Where ``audit.ingest.uploads.accept_upload`` keeps uploads until their import ends."""
    return Path(settings.MEDIA_ROOT) / "uploads"


def read_progress(job_id: int) -> dict[str, int] | None:
    try:
        return json.loads(progress_path(job_id).read_text())
    except (OSError, ValueError):
        return None


def _progress_writer(job_id: int, total: int) -> Callable[[int], None]:
    path = progress_path(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    last = 0.0

    def report(done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 0.5 or done >= total:
            last = now
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"read": done, "total": total}))
            tmp.replace(path)

    return report


@contextmanager
def _heartbeat(job_id: int) -> Iterator[None]:
    """Stamp the job's ``heartbeat_at`` from a thread of its own while the block runs.

    Inside a transaction (tests) nobody else sees the job anyway, and on SQLite the beat would
    wait for that transaction's lock: then there is no thread."""
    if connection.in_atomic_block:
        yield
        return
    stop = threading.Event()
    every = settings.AUDIT_IMPORT_STALE_SECONDS / 5

    def beat() -> None:
        try:
            while not stop.wait(every):
                try:
                    ImportJob.objects.filter(pk=job_id, state=ImportJob.State.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:
                    # A blip: the next beat tries again; only a silence this long fails the job.
                    logger.warning("import job %s: could not record its heartbeat", job_id)
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"import-job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@task
def import_upload(job_id: int) -> int | None:
    """Import an uploaded file recorded as an ImportJob; store the report on the job."""
    job = ImportJob.objects.select_related("created_by").get(pk=job_id)
    path = Path(job.upload_path)
    try:
        ImportJob.objects.filter(pk=job_id).update(
            state=ImportJob.State.RUNNING, heartbeat_at=timezone.now()
        )
        progress = _progress_writer(job_id, path.stat().st_size if path.exists() else 0)
        with _heartbeat(job_id):
            result = import_file(
                path,
                user=job.created_by,
                skip_invalid=job.skip_invalid,
                source="upload",
                file_name=job.file_name,
                required_reviews=job.required_reviews,
                model=job.model,
                run_source=job.run_source,
                progress=progress,
            )
    except Exception as exc:
        ImportJob.objects.filter(pk=job_id).update(
            state=ImportJob.State.FAILED, report={"crash": f"{type(exc).__name__}: {exc}"}
        )
        raise
    else:
        # Before the files go: a running job without them and without beats would look dead.
        ImportJob.objects.filter(pk=job_id).update(
            state=ImportJob.State.FAILED if result.failed else ImportJob.State.DONE,
            report=result.as_dict(),
            batch_id=result.batch_id,
        )
    finally:
        # The upload is a transient copy: accepted lines are in the database and, with
        # --skip-invalid, every rejected line is kept verbatim on the batch.
        _remove_file(path)
        _remove_file(progress_path(job_id))
    return result.batch_id


# --- jobs that died ------------------------------------------------------------------------------


def _stale(*, now: dt.datetime, job_ids: Iterable[int] | None = None) -> QuerySet[ImportJob]:
    """Running jobs whose last sign of life (heartbeat, else creation) is over the limit."""
    limit = now - dt.timedelta(seconds=settings.AUDIT_IMPORT_STALE_SECONDS)
    running = ImportJob.objects.filter(state=ImportJob.State.RUNNING)
    if job_ids is not None:
        running = running.filter(pk__in=list(job_ids))
    return running.alias(seen=Coalesce("heartbeat_at", "created_at")).filter(seen__lt=limit)


def fail_stale_jobs(
    *, job_ids: Iterable[int] | None = None, now: dt.datetime | None = None
) -> tuple[int, ...]:
    """Mark failed, with the reason, every running import (of ``job_ids``, default all) whose
    worker gave no sign of life for AUDIT_IMPORT_STALE_SECONDS, and remove its upload and
    progress files; return their ids. A write: callers name it (the job page, the Imports list,
    ``manage.py cleanup``)."""
    now = now or timezone.now()
    failed: list[int] = []
    for job in _stale(now=now, job_ids=job_ids).only("heartbeat_at", "created_at", "upload_path"):
        silent = now - (job.heartbeat_at or job.created_at)
        reason = (
            f"its worker stopped giving signs of life {_duration(silent)} ago "
            f"(AUDIT_IMPORT_STALE_SECONDS is {settings.AUDIT_IMPORT_STALE_SECONDS} s), so it was "
            "probably killed or restarted; upload the file again"
        )
        # Only while it is still running and has not beaten since: a job that finished or beat
        # meanwhile keeps its state.
        marked = ImportJob.objects.filter(
            pk=job.pk, state=ImportJob.State.RUNNING, heartbeat_at=job.heartbeat_at
        ).update(state=ImportJob.State.FAILED, report={"crash": reason, "stale": True})
        if marked:
            failed.append(job.pk)
            _remove_upload(Path(job.upload_path))
            _remove_file(progress_path(job.pk))
    return tuple(failed)


def waiting_for_worker(job: ImportJob, *, now: dt.datetime | None = None) -> dt.timedelta | None:
    """How long a queued job has waited for a worker, once that is over
    AUDIT_IMPORT_STALE_SECONDS (else None). Such a job is not dead, and is never failed: a
    worker started later still runs it. But with AUDIT_TASKS_BACKEND=database nothing runs it
    until ``manage.py db_worker`` does, which its page and ``manage.py cleanup`` say."""
    if job.state != ImportJob.State.QUEUED:
        return None
    waited = (now or timezone.now()) - job.created_at
    return waited if waited.total_seconds() > settings.AUDIT_IMPORT_STALE_SECONDS else None


def worker_hint(waited: dt.timedelta) -> str:
    """What to say about a job ``waiting_for_worker`` reports."""
    return (
        f"no task worker has started it in {_duration(waited)}; is `python manage.py db_worker` "
        "running? It will run when a worker starts"
    )


@dataclass(frozen=True)
class JobCleanup:
    """What ``clean_up_jobs`` did (or, in a dry run, would do)."""

    failed: tuple[int, ...]  # stale jobs marked failed
    removed: tuple[str, ...]  # upload and progress files removed
    # Queued jobs no worker has started for AUDIT_IMPORT_STALE_SECONDS: (id, how long); kept.
    waiting: tuple[tuple[int, dt.timedelta], ...] = ()
    # Unfinished batches of killed imports, removed with their rows; None while an import runs.
    discarded: tuple[int, ...] | None = ()


def clean_up_jobs(*, now: dt.datetime | None = None, dry_run: bool = False) -> JobCleanup:
    """Fail stale jobs (``fail_stale_jobs``), then remove every upload no queued or running job
    waits for: those of finished jobs at once, those of no job at all (an upload whose request
    died before its job was recorded) once older than AUDIT_IMPORT_STALE_SECONDS, so an upload
    that is still being received is spared; and the progress files of jobs that do not run.
    Also name the queued jobs no worker has started (``waiting_for_worker``), and remove the
    unfinished batches killed imports left (``discard_unfinished``, which any import run from
    the command line or a worker leaves behind when killed mid-insert)."""
    now = now or timezone.now()
    if dry_run:
        failed = tuple(_stale(now=now).values_list("pk", flat=True))
    else:
        failed = fail_stale_jobs(now=now)
    # In a dry run the stale jobs still count as active: failing them removes their files.
    active = ImportJob.objects.filter(state__in=ACTIVE_STATES)
    waited_for = {Path(path).name for path in active.values_list("upload_path", flat=True)}
    running = set(active.filter(state=ImportJob.State.RUNNING).values_list("pk", flat=True))
    uploads = sorted(uploads_dir().glob("*.upload")) if uploads_dir().is_dir() else []
    finished = {
        Path(path).name
        for path in ImportJob.objects.exclude(state__in=ACTIVE_STATES)
        .filter(upload_path__in=[str(path) for path in uploads])
        .values_list("upload_path", flat=True)
    }
    young = now.timestamp() - settings.AUDIT_IMPORT_STALE_SECONDS
    removed: list[Path] = []
    for path in uploads:
        if path.name in waited_for:
            continue
        if path.name in finished or _mtime(path) < young:
            removed.append(path)
    for path in sorted(jobs_dir().glob("*.progress.*")) if jobs_dir().is_dir() else []:
        job_id = path.name.split(".", 1)[0]
        if not (job_id.isdigit() and int(job_id) in running):
            removed.append(path)
    if not dry_run:
        for path in removed:
            _remove_file(path)
    waiting = []
    for job in ImportJob.objects.filter(state=ImportJob.State.QUEUED).order_by("pk"):
        waited = waiting_for_worker(job, now=now)
        if waited is not None:
            waiting.append((job.pk, waited))
    return JobCleanup(
        failed=failed,
        removed=tuple(str(path) for path in removed),
        waiting=tuple(waiting),
        discarded=discard_unfinished(dry_run=dry_run),
    )


def _remove_upload(path: Path) -> None:
    """Remove an upload, only ever from the uploads folder (the path comes from a row)."""
    if path.parent.resolve() == uploads_dir().resolve():
        _remove_file(path)


def _remove_file(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc.strerror or exc)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")  # gone meanwhile: nothing to remove


def _duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _rollup_counts(spec: dict[str, Any]) -> RollupQuerySet | None:
    """The rollup rows of a filter spec's selection, when the rollup answers it (a list of
    chosen ids it never does): the release summary's counts come from them."""
    from audit import rollup

    if "filter" not in spec:
        return None
    return rollup.scope(selections.Selection.of(spec["filter"])).rollup_rows


@task
def publish_release_task(
    version: str,
    selection: dict[str, Any],
    include_unreviewed: bool = False,
    user_id: int | None = None,
    filters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish release ``version`` into RELEASES_ROOT (the admin's "Publish release" action).

    ``selection`` is JSON (``audit.publish.selection.records``): a filter spec, evaluated when
    the task runs, or the ids chosen. ``filters`` is what the release records about how it was
    chosen.

    Returns ``{"version", "path", "counts"}``, or ``{"error": message}`` for a ReleaseError (the
    version was taken meanwhile; a file could not be written, named with the cause: disk full,
    permission denied) or a SelectionError: a refusal is an outcome to report, not a crash, and
    the result carries its message as is, where a failed task only keeps a traceback.
    """
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        records = selections.records(selection)
        release = publish_release(
            records,
            version=version,
            filters=filters if filters is not None else selection.get("filter", {}),
            include_unreviewed=include_unreviewed,
            output_dir=settings.RELEASES_ROOT,
            user=user,
            rollup_counts=_rollup_counts(selection),
        )
    except (ReleaseError, selections.SelectionError) as exc:
        return {"error": str(exc)}
    return {"version": release.version, "path": release.path, "counts": release.counts}
