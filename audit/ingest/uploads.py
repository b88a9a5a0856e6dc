"""An upload handler that stops reading an upload past AUDIT_MAX_UPLOAD_BYTES.

Django parses multipart bodies as soon as anything reads ``request.POST`` (the CSRF middleware
does, before any view), spooling files to disk, so a check in the view or the form comes too
late to spare the disk. This handler runs first: it counts the file bytes of the whole request
(several files cannot add up past the limit) and stops the upload as soon as the count, or the
declared Content-Length, passes the limit, without reading the rest of the body. The view then
answers 413 from the flag it leaves on the request. A proxy in front should cap bodies too.
"""

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

# Room for the form's other fields and the multipart framing around the file.
ENVELOPE_BYTES = 1024 * 1024


class SizeLimitUploadHandler(FileUploadHandler):
    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.received = 0
        self.declared_too_large = False

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: Any = None
    ) -> None:
        # Raising here would escape the parser; stop at the first chunk instead.
        limit = settings.AUDIT_MAX_UPLOAD_BYTES + ENVELOPE_BYTES
        self.declared_too_large = content_length > limit

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.declared_too_large or self.received > settings.AUDIT_MAX_UPLOAD_BYTES:
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers build the file
