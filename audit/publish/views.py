"""Release archive download (staff): the release directory streamed as one zip or tar.gz."""

from __future__ import annotations

from pathlib import Path

from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from audit.models import Release
from audit.permissions import staff_required
from audit.publish.archive import stream_tar, stream_zip
from audit.publish.release import SEMVER

FORMATS = {"zip": "application/zip", "tar.gz": "application/gzip"}


@require_GET
@staff_required
def release_download(request: HttpRequest, version: str) -> StreamingHttpResponse:
    if not SEMVER.fullmatch(version):
        # Only X.Y.Z is ever published; anything else (a NUL, which PostgreSQL refuses in a
        # text lookup) names no release and never reaches the database.
        raise Http404("no such release")
    release = get_object_or_404(Release, version=version)
    kind = request.GET.get("format", "zip")
    if kind not in FORMATS:
        raise Http404("unknown archive format")
    root = Path(release.path)
    if not root.is_dir():
        raise Http404("the release files are missing")
    prefix = f"release-{release.version}"
    stream = stream_zip if kind == "zip" else stream_tar
    response = StreamingHttpResponse(stream(root, prefix=prefix), content_type=FORMATS[kind])
    response["Content-Disposition"] = f'attachment; filename="{prefix}.{kind}"'
    return response
