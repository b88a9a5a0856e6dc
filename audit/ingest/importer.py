"""Import SENTINEL transcript JSONL (plain or gzip): stream, validate, deduplicate, bulk insert.

One code path for the command line and the upload page. A file is read once, line by line, and
its prepared rows are staged in a temporary file, so memory stays flat whatever its size; then
records go in with ``bulk_create`` in chunks, all inside one short transaction per file, so a
file either lands as reported or not at all:

- default: any bad line means nothing from the file is written, and every bad line is reported;
- ``skip_invalid``: the good lines land and every rejected line is kept verbatim on the batch
  (``RejectedLine``) and, when asked, written to a rejects file;
- ``dry_run``: everything is checked and counted, then rolled back.

A file that adds nothing new (all duplicates, and no rejected lines that an earlier import of
the same bytes did not already keep) leaves no batch behind, so re-importing is a no-op; the
result still says how many lines were duplicates.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction

from audit.ingest.records import RecordError, extract, parse_line
from audit.models import ImportBatch, RejectedLine, Transcript

CHUNK_SIZE = 1000
# A record is a few KB; a longer "line" (or a gzip bomb without newlines) is refused, not read
# into memory whole.
MAX_LINE_BYTES = 16 * 1024 * 1024
# Errors kept in memory and on the batch; every rejected line is still kept as a RejectedLine.
MAX_REPORTED_ERRORS = 1000
GZIP_MAGIC = b"\x1f\x8b"

# Called with the number of bytes read so far; whatever it returns is ignored.
Progress = Callable[[int], object]


@dataclass(frozen=True)
class LineError:
    line: int
    error: str  # "field: problem"


@dataclass(frozen=True)
class ImportResult:
    file: str
    sha256: str
    lines: int
    imported: int
    duplicates: int
    rejected: int
    errors: list[LineError] = field(default_factory=list)
    batch_id: int | None = None
    dry_run: bool = False
    # True when the file was refused whole (a bad line in default mode, or an unreadable file).
    failed: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = [asdict(error) for error in self.errors]
        return data

    def report_lines(self) -> Iterator[str]:
        """Each error as ``file:line: field: problem``; file-level errors use line 0."""
        for error in self.errors:
            where = f"{self.file}:{error.line}" if error.line else self.file
            yield f"{where}: {error.error}"


class _Rollback(Exception):
    """Raised inside the transaction to undo a failed or dry-run import."""


class _CountingReader(io.RawIOBase):
    """Wraps the file to hash its bytes and report progress as they are read."""

    def __init__(self, raw: IO[bytes], progress: Progress | None) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        self.sha256.update(data)
        self.bytes_read += count
        if self.progress is not None:
            self.progress(self.bytes_read)
        return count


def import_file(
    path: str | Path,
    *,
    user: User | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    source: str = "command",
    file_name: str | None = None,
    progress: Progress | None = None,
    rejects: IO[bytes] | None = None,
    required_reviews: int | None = None,
) -> ImportResult:
    """Import one file from disk; see ``import_stream``."""
    path = Path(path)
    name = file_name or str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        return _file_error(name, f"file: cannot open: {exc.strerror or exc}")
    with handle:
        return import_stream(
            handle,
            file_name=name,
            user=user,
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            source=source,
            progress=progress,
            rejects=rejects,
            required_reviews=required_reviews,
        )


def import_stream(
    handle: IO[bytes],
    *,
    file_name: str,
    user: User | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    source: str = "command",
    progress: Progress | None = None,
    rejects: IO[bytes] | None = None,
    required_reviews: int | None = None,
) -> ImportResult:
    """Import JSONL from a binary stream (gzip detected by its magic bytes, not the name).

    Two passes keep the database's write lock short: the scan parses, validates and prepares
    every line with no transaction open, staging the rows in a temporary file; then one
    transaction inserts the staged rows. Only the insert holds the lock, which matters on
    SQLite, where auditors' verdicts wait for it.
    """
    reader = _CountingReader(handle, progress)
    buffered = io.BufferedReader(reader, buffer_size=1 << 16)
    stream: io.BufferedIOBase = buffered
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=buffered, mode="rb")
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as staged:
        scan = _Scan(
            staged=staged,
            skip_invalid=skip_invalid,
            rejects=rejects,
            spot_check_rate=settings.AUDIT_SPOT_CHECK_RATE,
        )
        try:
            for number, raw_line in enumerate(_lines(stream), start=1):
                if raw_line is None:
                    scan.reject_too_long(number)
                else:
                    scan.feed(number, raw_line)
        except (OSError, EOFError, zlib.error) as exc:
            scan.fail_file(f"file: cannot read the gzip data: {exc}")
        stored = _Stored()
        if not scan.failed:
            staged.seek(0)
            stored = _store(
                staged,
                scan=scan,
                batch_fields={
                    "created_by": user if user is not None and user.pk else None,
                    "source": source,
                    "file_name": file_name[:500],
                    "sha256": reader.sha256.hexdigest(),
                    "size_bytes": reader.bytes_read,
                    "required_reviews": required_reviews or settings.AUDIT_DEFAULT_REQUIRED_REVIEWS,
                },
                dry_run=dry_run,
            )
    return ImportResult(
        file=file_name,
        sha256=reader.sha256.hexdigest(),
        lines=scan.lines,
        imported=stored.imported,
        duplicates=stored.duplicates,
        rejected=scan.rejected,
        errors=scan.errors,
        batch_id=stored.batch_id,
        dry_run=dry_run,
        failed=scan.failed,
    )


def _lines(stream: io.BufferedIOBase) -> Iterator[bytes | None]:
    """The file's lines, reading at most MAX_LINE_BYTES of any one; None for a longer line,
    whose rest is skipped in bounded reads."""
    while line := stream.readline(MAX_LINE_BYTES + 1):
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
            pass
        yield None


def _file_error(name: str, error: str) -> ImportResult:
    return ImportResult(
        file=name,
        sha256="",
        lines=0,
        imported=0,
        duplicates=0,
        rejected=0,
        errors=[LineError(0, error)],
        failed=True,
    )


@dataclass
class _Scan:
    """First pass: parse and validate each line, stage good rows and rejects as JSON lines."""

    staged: IO[str]
    skip_invalid: bool
    rejects: IO[bytes] | None
    spot_check_rate: float
    lines: int = 0
    rejected: int = 0
    failed: bool = False
    errors: list[LineError] = field(default_factory=list)

    def feed(self, number: int, raw_line: bytes) -> None:
        self.lines = number
        if number == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
            raw_line = raw_line[3:]  # a UTF-8 byte order mark is not part of the record
        if not raw_line.strip():
            return  # blank lines (a trailing newline, spacing) carry no record
        raw_line = raw_line.rstrip(b"\r\n")
        try:
            text = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.reject(
                number,
                raw_line,
                f"encoding: not valid UTF-8 (byte {exc.object[exc.start]:#04x} "
                f"at position {exc.start + 1})",
            )
            return
        try:
            record = parse_line(text)
        except RecordError as exc:
            self.reject(number, raw_line, str(exc))
            return
        if self.failed:
            return  # keep scanning to report every bad line, but stage nothing more
        values = extract(record, spot_check_rate=self.spot_check_rate)
        self.staged.write(json.dumps({"line": number, "raw": text, "values": values}) + "\n")

    def reject(self, number: int, raw_line: bytes, error: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(LineError(number, error))
        elif len(self.errors) == MAX_REPORTED_ERRORS:
            self.errors.append(LineError(number, "... further errors are not listed"))
        if not self.skip_invalid:
            self.failed = True
            return
        if self.rejects is not None:
            self.rejects.write(raw_line + b"\n")
        text, encoding = RejectedLine.encode(raw_line)
        self.staged.write(
            json.dumps({"line": number, "text": text, "encoding": encoding, "error": error}) + "\n"
        )

    def reject_too_long(self, number: int) -> None:
        self.lines = number
        limit = MAX_LINE_BYTES // (1024 * 1024)
        # Too large to keep: the error stands in for the line.
        self.reject(number, b"", f"line: longer than {limit} MiB; not read and not kept")

    def fail_file(self, error: str) -> None:
        self.failed = True
        self.errors.append(LineError(0, error))


@dataclass(frozen=True)
class _Stored:
    imported: int = 0
    duplicates: int = 0
    batch_id: int | None = None


def _store(staged: IO[str], *, scan: _Scan, batch_fields: dict[str, Any], dry_run: bool) -> _Stored:
    """Second pass: insert the staged rows in one transaction, deduplicating as it goes."""
    imported = duplicates = 0
    try:
        with transaction.atomic():
            _serialise_imports()
            batch = ImportBatch.objects.create(**batch_fields)
            for chunk in _chunks(staged, CHUNK_SIZE):
                kept = [
                    RejectedLine(
                        batch=batch,
                        line_number=row["line"],
                        error=row["error"],
                        text=row["text"],
                        encoding=row["encoding"],
                    )
                    for row in chunk
                    if "error" in row
                ]
                RejectedLine.objects.bulk_create(kept)
                rows: dict[str, Transcript] = {}
                for row in chunk:
                    if "error" in row:
                        continue
                    values = row["values"]
                    if values["fingerprint"] in rows:
                        duplicates += 1
                        continue
                    rows[values["fingerprint"]] = Transcript(
                        batch=batch,
                        raw=row["raw"],
                        line_number=row["line"],
                        required_reviews=batch.required_reviews,
                        **values,
                    )
                # Rows inserted by earlier chunks of this transaction are seen here too.
                existing = set(
                    Transcript.objects.filter(fingerprint__in=list(rows)).values_list(
                        "fingerprint", flat=True
                    )
                )
                duplicates += len(existing)
                new = [row for fp, row in rows.items() if fp not in existing]
                Transcript.objects.bulk_create(new, batch_size=500)
                imported += len(new)
            if dry_run or (imported == 0 and _nothing_new_to_keep(scan, batch)):
                raise _Rollback
            ImportBatch.objects.filter(pk=batch.pk).update(
                lines=scan.lines,
                imported=imported,
                duplicates=duplicates,
                rejected=scan.rejected,
                errors=[asdict(error) for error in scan.errors],
            )
    except _Rollback:
        return _Stored(imported=imported, duplicates=duplicates)
    return _Stored(imported=imported, duplicates=duplicates, batch_id=batch.pk)


def _nothing_new_to_keep(scan: _Scan, batch: ImportBatch) -> bool:
    """No new records and no rejected lines that an earlier import of these same bytes did not
    already keep: then the import is a no-op and leaves no batch."""
    if scan.rejected == 0:
        return True
    earlier = ImportBatch.objects.filter(sha256=batch.sha256, rejected=scan.rejected)
    return earlier.exclude(pk=batch.pk).exists()


# Any constant: the key of the PostgreSQL advisory lock that imports take.
IMPORT_LOCK_KEY = 0x5E471E1


def _serialise_imports() -> None:
    """One import inserts at a time, so two overlapping files cannot both find a fingerprint
    missing and then collide on the unique index. SQLite already serialises writers (BEGIN
    IMMEDIATE); PostgreSQL takes a transaction-scoped advisory lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [IMPORT_LOCK_KEY])


def _chunks(staged: IO[str], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for line in staged:
        chunk.append(json.loads(line))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
