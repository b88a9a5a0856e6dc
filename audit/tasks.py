"""Background tasks (django.tasks): long web imports and releases run here, not in the request.

Development runs tasks in-process (ImmediateBackend); production sets
AUDIT_TASKS_BACKEND=database and runs ``python manage.py db_worker``.
"""

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.tasks import task

from audit.ingest.importer import import_file
from audit.models import ImportJob
from audit.publish import selection as selections
from audit.publish.release import ReleaseError, publish_release


def progress_path(job_id: int) -> Path:
    """Where a running import reports bytes read. A file, not a row: the import is one
    transaction, and on SQLite another connection could not write while it holds the lock."""
    return Path(settings.VAR_DIR) / "jobs" / f"{job_id}.progress.json"


def read_progress(job_id: int) -> dict[str, int] | None:
    try:
        return json.loads(progress_path(job_id).read_text())
    except (OSError, ValueError):
        return None


def _progress_writer(job_id: int, total: int):  # type: ignore[no-untyped-def]
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


@task
def import_upload(job_id: int) -> int | None:
    """Import an uploaded file recorded as an ImportJob; store the report on the job."""
    job = ImportJob.objects.select_related("created_by").get(pk=job_id)
    ImportJob.objects.filter(pk=job_id).update(state=ImportJob.State.RUNNING)
    path = Path(job.upload_path)
    progress = _progress_writer(job_id, path.stat().st_size if path.exists() else 0)
    try:
        result = import_file(
            path,
            user=job.created_by,
            skip_invalid=job.skip_invalid,
            source="upload",
            file_name=job.file_name,
            required_reviews=job.required_reviews,
            progress=progress,
        )
    except Exception as exc:
        ImportJob.objects.filter(pk=job_id).update(
            state=ImportJob.State.FAILED, report={"crash": f"{type(exc).__name__}: {exc}"}
        )
        raise
    finally:
        # The upload is a transient copy: accepted lines are in the database and, with
        # --skip-invalid, every rejected line is kept verbatim on the batch.
        path.unlink(missing_ok=True)
        progress_path(job_id).unlink(missing_ok=True)
    ImportJob.objects.filter(pk=job_id).update(
        state=ImportJob.State.FAILED if result.failed else ImportJob.State.DONE,
        report=result.as_dict(),
        batch_id=result.batch_id,
    )
    return result.batch_id


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

    Returns ``{"version", "path", "counts"}``, or ``{"error": message}`` for a ReleaseError (say
    the version was taken meanwhile) or a SelectionError: a refusal is an outcome to report,
    not a crash, and the result carries its message as is, where a failed task only keeps a
    traceback.
    """
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        release = publish_release(
            selections.records(selection),
            version=version,
            filters=filters if filters is not None else selection.get("filter", {}),
            include_unreviewed=include_unreviewed,
            output_dir=settings.RELEASES_ROOT,
            user=user,
        )
    except (ReleaseError, selections.SelectionError) as exc:
        return {"error": str(exc)}
    return {"version": release.version, "path": release.path, "counts": release.counts}
