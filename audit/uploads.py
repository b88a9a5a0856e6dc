"""An upload handler that stops reading a file past AUDIT_MAX_UPLOAD_BYTES.

Django parses multipart bodies as soon as anything reads ``request.POST`` (the CSRF middleware
does, before any view), spooling files to disk; a form-level size check comes too late to spare
the disk. This handler runs first and stops a file as soon as it passes the limit; the view then
answers 413 from the flag it leaves on the request.
"""

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload


class SizeLimitUploadHandler(FileUploadHandler):
    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.AUDIT_MAX_UPLOAD_BYTES:
            self.request.upload_too_large = True
            # Discard the rest of the body rather than resetting the connection, so the client
            # gets the 413 page instead of a broken pipe.
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers build the file
