"""Background tasks (django.tasks): long web imports run here, not in the request.

Development runs tasks in-process (ImmediateBackend); production sets
AUDIT_TASKS_BACKEND=database and runs ``python manage.py db_worker``.
"""

from pathlib import Path

from django.tasks import task

from audit.importers import import_file
from audit.models import ImportJob


@task
def import_upload(job_id: int) -> int | None:
    """Import an uploaded file recorded as an ImportJob; store the report on the job."""
    job = ImportJob.objects.select_related("created_by").get(pk=job_id)
    ImportJob.objects.filter(pk=job_id).update(state=ImportJob.State.RUNNING)
    path = Path(job.upload_path)
    try:
        result = import_file(
            path,
            user=job.created_by,
            skip_invalid=job.skip_invalid,
            source="upload",
            file_name=job.file_name,
            required_reviews=job.required_reviews,
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
    ImportJob.objects.filter(pk=job_id).update(
        state=ImportJob.State.FAILED if result.failed else ImportJob.State.DONE,
        report=result.as_dict(),
        batch_id=result.batch_id,
    )
    return result.batch_id
