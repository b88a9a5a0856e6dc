"""Release archive download (staff): the release directory streamed as one zip or tar.gz."""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from audit.models import Release
from audit.permissions import staff_required

FORMATS = {"zip": "application/zip", "tar.gz": "application/gzip"}


class _Sink:
    """A write-only file that hands back what was written, so archives stream in chunks.

    ``tell`` without ``seek`` makes zipfile write data descriptors instead of seeking back."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def write(self, data: bytes) -> int:
        if data:
            self.chunks.append(bytes(data))
            self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks = []
        return data


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def stream_zip(root: Path, prefix: str) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _files(root):
            name = f"{prefix}/{path.relative_to(root).as_posix()}"
            with path.open("rb") as source, archive.open(name, mode="w", force_zip64=True) as out:
                for block in iter(lambda: source.read(1 << 16), b""):
                    out.write(block)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def stream_tar(root: Path, prefix: str) -> Iterator[bytes]:
    sink = _Sink()
    with tarfile.open(fileobj=sink, mode="w|gz") as archive:  # type: ignore[call-overload]
        for path in _files(root):
            name = f"{prefix}/{path.relative_to(root).as_posix()}"
            info = archive.gettarinfo(str(path), arcname=name)
            info.uname = info.gname = ""
            info.uid = info.gid = 0
            with path.open("rb") as source:
                archive.addfile(info, source)
            yield sink.take()
    yield sink.take()


@require_GET
@staff_required
def release_download(request: HttpRequest, version: str) -> StreamingHttpResponse:
    release = get_object_or_404(Release, version=version)
    kind = request.GET.get("format", "zip")
    if kind not in FORMATS:
        raise Http404("unknown archive format")
    root = Path(release.path)
    if not root.is_dir():
        raise Http404("the release files are missing")
    prefix = f"release-{release.version}"
    chunks = stream_zip(root, prefix) if kind == "zip" else stream_tar(root, prefix)
    response = StreamingHttpResponse(
        (chunk for chunk in chunks if chunk), content_type=FORMATS[kind]
    )
    response["Content-Disposition"] = f'attachment; filename="{prefix}.{kind}"'
    return response
