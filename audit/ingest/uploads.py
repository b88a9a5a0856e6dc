"""Uploads: the handler that stops reading an upload past AUDIT_MAX_UPLOAD_BYTES, and
``accept_upload``, which keeps an uploaded file and queues its import.

Django parses multipart bodies as soon as anything reads ``request.POST`` (the CSRF middleware
does, before any view), spooling files to disk, so a check in the view or the form comes too
late to spare the disk. This handler runs first: it counts the file bytes of the whole request
(several files cannot add up past the limit) and stops the upload as soon as the count, or the
declared Content-Length, passes the limit, without reading the rest of the body. The view then
answers 413 from the flag it leaves on the request. A proxy in front should cap bodies too.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

from audit.ingest.importer import clean_run_metadata
from audit.models import ImportJob
from audit.tasks import import_upload

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Room for the form's other fields and the multipart framing around the file.
ENVELOPE_BYTES = 1024 * 1024
# The request attribute set when the upload was stopped; the view reads it with getattr.
TOO_LARGE_FLAG = "upload_too_large"


class SizeLimitUploadHandler(FileUploadHandler):
    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.received = 0
        self.declared_too_large = False

    def handle_raw_input(
        self,
        input_data: IO[bytes],
        META: dict[str, str],
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> None:
        # Raising here would escape the parser; stop at the first chunk instead.
        limit = settings.AUDIT_MAX_UPLOAD_BYTES + ENVELOPE_BYTES
        self.declared_too_large = content_length > limit

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.declared_too_large or self.received > settings.AUDIT_MAX_UPLOAD_BYTES:
            if self.request is not None:
                setattr(self.request, TOO_LARGE_FLAG, True)
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers build the file


def accept_upload(
    upload: UploadedFile,
    *,
    user: User,
    skip_invalid: bool,
    required_reviews: int,
    model: str = "",
    run_source: str = "",
) -> ImportJob:
    """Keep an uploaded file under MEDIA_ROOT/uploads and queue its import; the job's page
    follows the task (``audit.tasks.import_upload``), which gives the batch the job's
    ``model`` and ``run_source``."""
    # Refused before anything is kept (the form has already checked them).
    model = clean_run_metadata(model, name="model")
    run_source = clean_run_metadata(run_source, name="run source")
    directory = Path(settings.MEDIA_ROOT) / "uploads"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.upload"
    with path.open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    job = ImportJob.objects.create(
        created_by=user,
        file_name=Path(upload.name or "upload").name[:500],
        upload_path=str(path),
        skip_invalid=skip_invalid,
        required_reviews=required_reviews,
        model=model,
        run_source=run_source,
    )
    import_upload.enqueue(job.pk)
    return job
