"""A release directory as one streamed zip or tar.gz archive, for the download view.

A release may hold hundreds of megabytes, so an archive is never built in memory or on disk:
each file is read in blocks and the compressed bytes are handed on as they come. Members are
named ``<prefix>/<path in the release>`` and sorted, so the same release always gives an archive
with the same member order; tar members carry no owner names or ids of the server's account.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

BLOCK = 1 << 16


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

    def close(self) -> None:
        # Nothing to release; part of the file protocol zipfile's type declares for writing.
        pass

    def drain(self) -> Iterator[bytes]:
        """What was written since the last drain, as one chunk; nothing when that is empty
        (the compressor often buffers a whole block, and an empty chunk would be sent as is)."""
        data = b"".join(self.chunks)
        self.chunks = []
        if data:
            yield data


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def stream_zip(root: Path, *, prefix: str) -> Iterator[bytes]:
    """The files under ``root`` as a deflated zip, in chunks."""
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _files(root):
            name = f"{prefix}/{path.relative_to(root).as_posix()}"
            # force_zip64: the size is not known before the member is written, and a data file
            # may pass 2 GiB.
            with path.open("rb") as source, archive.open(name, mode="w", force_zip64=True) as out:
                for block in iter(lambda: source.read(BLOCK), b""):
                    out.write(block)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()


def stream_tar(root: Path, *, prefix: str) -> Iterator[bytes]:
    """The files under ``root`` as a gzipped tar, in chunks."""
    sink = _Sink()
    # "w|gz" is the stream mode: it never seeks, which the sink cannot do.
    with tarfile.open(fileobj=sink, mode="w|gz") as archive:  # type: ignore[call-overload]
        for path in _files(root):
            name = f"{prefix}/{path.relative_to(root).as_posix()}"
            info = archive.gettarinfo(str(path), arcname=name)
            info.uname = info.gname = ""
            info.uid = info.gid = 0
            with path.open("rb") as source:
                archive.addfile(info, source)
            yield from sink.drain()
    yield from sink.drain()
