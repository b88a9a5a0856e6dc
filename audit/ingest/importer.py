"""Import SENTINEL transcript JSONL (plain or gzip): stream, validate, deduplicate, bulk insert.

One code path for the command line and the upload page. A file is read once, line by line, and
its prepared rows are staged in a temporary file, so memory stays flat whatever its size; then
records go in a chunk at a time (``_write_rows``: ``executemany`` on SQLite, ``COPY`` on
PostgreSQL, no ORM), each chunk its own short transaction, under a batch that stays unfinished
(invisible to every query) until the last one, so a file either lands as reported or not at
all:

- default: any bad line means nothing from the file is written, and every bad line is reported;
- ``skip_invalid``: the good lines land and every rejected line is kept verbatim on the batch
  (``RejectedLine``) and, when asked, written to a rejects file;
- ``dry_run``: everything is checked and counted, and nothing is written.

Whatever the mode, a file is refused whole, nothing from it written, with one file-level error
(line 0) saying what happened, when it cannot be read, its gzip data is truncated or corrupt,
it is empty, the temporary disk of the staging is full, or it passes a limit: gzip's
decompressed bytes, lines and ratio (AUDIT_GZIP_MAX_MB, AUDIT_GZIP_MAX_LINES,
AUDIT_GZIP_MAX_RATIO), the staging's size (AUDIT_IMPORT_MAX_STAGING_MB), and the time the scan
takes (AUDIT_IMPORT_TIME_LIMIT_SECONDS). Anything wrong with one line is that line's error.

Each line is parsed once. A line stored before byte for byte (``Transcript.line_sha256``) is a
duplicate found without parsing it; any other spelling of a stored record is found by its
fingerprint when its chunk goes in. A file that adds nothing new (all duplicates, and no
rejected lines that an earlier import of the same bytes did not already keep) leaves no batch
behind, so re-importing is a no-op; the result still says how many lines were duplicates.

Staff may say which run a file comes from: ``model`` and ``run_source`` are kept on the batch
(stripped; "" when not given; longer than ``RUN_METADATA_MAX_LENGTH`` is refused, never cut) and
come out in every exported record's ``malt`` block. They belong to the batch that stored the
records, so a re-import that adds nothing changes neither.

A run that sends its records in many small imports (the HTTP API) names itself with ``run``:
the first import of a user's run that stores anything makes the run's batch (``IngestRun``);
each later one is imported as usual into a batch of its own, which at its end, in the same
transaction that would have finished it, folds into the run's batch (``_fold``): its rows and
rejected lines move over with their line numbers after the run's earlier lines (the batch reads
as the concatenation of the imports), its counts add up, and it is gone. So each import still
lands whole or not at all, and a retry adds nothing: its records are duplicates, and rejected
lines the run already keeps are not kept twice. A run's model, run source and K are those of its
first import; a later one that gives others is refused (RunConflict).

``lock_timeout`` bounds the wait for the import lock (one import inserts at a time): past it the
import raises ImportBusy, having written nothing, so a web request can answer "busy, retry"
instead of waiting behind a long import.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import marshal
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Exists, F, Field, Model, OuterRef
from django.utils import timezone

from audit import rollup, search
from audit.ingest.records import RecordError, extract, parse_line
from audit.models import (
    RUN_METADATA_MAX_LENGTH,
    ImportBatch,
    IngestRun,
    RejectedLine,
    Transcript,
    TranscriptText,
)
from audit.sqlite import WRITER_PAUSE_SECONDS, file_lock

logger = logging.getLogger(__name__)

# Records per insert transaction. Each chunk commits on its own, so another writer (a verdict,
# a login) waits for one chunk at most: on SQLite a chunk of generated records held the lock for
# 120 ms (median; 177 max) going from 20k to 100k rows, and writers during a 30k import waited
# 6 ms (median; 193 max).
CHUNK_SIZE = 1000
# A record is a few KB; a longer "line" (or a gzip bomb without newlines) is refused, not read
# into memory whole.
MAX_LINE_BYTES = 16 * 1024 * 1024
# The scan looks up a chunk of lines at once (are they stored already?), or fewer lines when
# they hold more than this many bytes together.
PENDING_MAX_BYTES = 8 * 1024 * 1024
# Errors kept in memory and on the batch; every rejected line is still kept as a RejectedLine.
MAX_REPORTED_ERRORS = 1000
GZIP_MAGIC = b"\x1f\x8b"
# The largest line number the line_number columns (PositiveIntegerField) hold on both databases.
MAX_LINE_NUMBER = 2**31 - 1
# Below this much decompressed data the gzip ratio is not judged: a small file does no harm.
RATIO_FLOOR_BYTES = 1024 * 1024
READ_SIZE = 1 << 16

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


class RunMetadataError(ValueError):
    """A model or run source that cannot be kept on a batch; the message says why."""


class RunConflict(ValueError):
    """An import of a run whose batch has another model, run source or K; nothing was written."""


class ImportBusy(Exception):
    """The import lock was not free within ``lock_timeout`` seconds; nothing was written."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"another import held the import lock for more than {seconds:g} s")
        self.seconds = seconds


@dataclass(frozen=True)
class _Run:
    """The run an import belongs to: its key, its user, and the K the import asked for."""

    key: str
    user_id: int
    required_reviews: int | None


def clean_run_metadata(value: str | None, *, name: str) -> str:
    """A batch's ``model`` or ``run_source`` as staff gave it: stripped, "" when not given.
    Raise RunMetadataError, naming ``name``, when it is too long or holds a NUL character
    (PostgreSQL text cannot)."""
    text = (value or "").strip()
    if len(text) > RUN_METADATA_MAX_LENGTH:
        raise RunMetadataError(
            f"{name} is {len(text)} characters long; at most {RUN_METADATA_MAX_LENGTH} are allowed"
        )
    if "\x00" in text:
        raise RunMetadataError(f"{name} holds a NUL character")
    return text


class _Refused(Exception):
    """The whole file is refused while it is read; ``error`` is its "file: ..." report."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


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
        try:
            data = self.raw.read(len(buffer))
        except OSError as exc:
            raise _Refused(f"file: cannot read the file: {_os_error(exc)}") from None
        count = len(data)
        buffer[:count] = data
        self.sha256.update(data)
        self.bytes_read += count
        if self.progress is not None:
            self.progress(self.bytes_read)
        return count


class _Gunzip(io.RawIOBase):
    """The decompressed bytes of gzip data (every member, as ``gzip.open`` reads them), within
    AUDIT_GZIP_MAX_BYTES and AUDIT_GZIP_MAX_RATIO; a truncated or corrupt stream is refused.

    zlib directly rather than ``gzip.GzipFile``, which reads ahead: the ratio is judged on the
    compressed bytes actually consumed, so a bomb is stopped within its first megabytes."""

    def __init__(self, source: IO[bytes], *, max_bytes: int, max_ratio: int) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        # wbits=31: a gzip header and trailer, whose CRC and length zlib checks.
        self.inflate = zlib.decompressobj(wbits=31)
        self.consumed = 0  # compressed bytes
        self.produced = 0  # decompressed bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self.inflate.eof:
                # A member ended; another may follow (gzip allows several), or nothing but
                # zero bytes of padding, which gzip.open skips too.
                data = self.inflate.unused_data
                while not (rest := data.lstrip(b"\x00")):
                    self.consumed += len(data)
                    if not (data := self.source.read(READ_SIZE)):
                        return 0
                self.consumed += len(data) - len(rest)
                data = rest
                self.inflate = zlib.decompressobj(wbits=31)
            else:
                data = self.inflate.unconsumed_tail or self.source.read(READ_SIZE)
                if not data:
                    raise _Refused(
                        f"file: the gzip data is truncated: it ends after {self.consumed:,} "
                        "compressed bytes, before its end-of-stream marker (was the upload "
                        "or copy cut short?)"
                    )
            try:
                out = self.inflate.decompress(data, len(buffer))
            except zlib.error as exc:
                raise _Refused(f"file: the gzip data is corrupt ({exc})") from None
            self.consumed += (
                len(data) - len(self.inflate.unconsumed_tail) - len(self.inflate.unused_data)
            )
            if out:
                break
        self.produced += len(out)
        if self.produced > self.max_bytes:
            raise _Refused(
                f"file: the gzip data decompresses to more than {_mib(self.max_bytes)} "
                "(AUDIT_GZIP_MAX_MB)"
            )
        if self.produced > RATIO_FLOOR_BYTES and self.produced > self.max_ratio * self.consumed:
            raise _Refused(
                f"file: the gzip data expands more than {self.max_ratio} times "
                f"(AUDIT_GZIP_MAX_RATIO): {self.consumed:,} compressed bytes gave "
                f"{self.produced:,}, as a decompression bomb does"
            )
        buffer[: len(out)] = out
        return len(out)


def _mib(size: int) -> str:
    mib = 1024 * 1024
    return f"{size // mib:,} MiB" if size % mib == 0 else f"{size:,} bytes"


def _os_error(exc: OSError) -> str:
    """An OSError as a person reads it: what, and for a full disk, that it is full."""
    text = f"{exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        text += " (the disk is full)" if exc.errno == errno.ENOSPC else " (over the disk quota)"
    return text


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
    model: str = "",
    run_source: str = "",
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
            model=model,
            run_source=run_source,
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
    model: str = "",
    run_source: str = "",
    run: str = "",
    lock_timeout: float | None = None,
) -> ImportResult:
    """Import JSONL from a binary stream (gzip detected by its magic bytes, not the name).

    ``run`` (cleaned like ``model``; needs a ``user``) folds the import into that run's batch
    (module docstring); RunConflict when the run's batch has another model, run source or K.
    ``lock_timeout``: ImportBusy when the import lock is not had within that many seconds.

    ``model`` and ``run_source`` go on the batch, cleaned by ``clean_run_metadata`` (which
    raises RunMetadataError before anything is read).

    Two passes keep the database's write lock short: the scan parses, validates and prepares
    every line with no transaction open, staging the rows in a temporary file; then the staged
    rows go in a chunk per transaction (``_store``). Only a chunk's insert holds the lock, which
    matters on SQLite, where auditors' verdicts wait for it.
    """
    model = clean_run_metadata(model, name="model")
    run_source = clean_run_metadata(run_source, name="run source")
    run = clean_run_metadata(run, name="run")
    if run and (user is None or not user.pk):
        raise ValueError("an import of a run needs the user whose run it is")
    started = time.monotonic()
    reader = _CountingReader(handle, progress)
    try:
        # Opened here to report a failure to create it; the with below closes it.
        staging = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115
    except OSError as exc:
        return _file_error(file_name, f"file: {_staging_problem(exc)}")
    with _discarded(staging) as handle, _no_query_log():
        staged = _Staging(handle, max_bytes=settings.AUDIT_IMPORT_MAX_STAGING_BYTES)
        scan = _Scan(
            staged=staged,
            skip_invalid=skip_invalid,
            rejects=rejects,
            spot_check_rate=settings.AUDIT_SPOT_CHECK_RATE,
        )
        try:
            _read(reader, scan=scan, started=started)
        except _Refused as exc:
            scan.fail_file(exc.error)
        stored = _Stored()
        if not scan.failed:
            try:
                stored = _store(
                    staged,
                    scan=scan,
                    deadline=_deadline(started),
                    batch_fields={
                        "created_by": user if user is not None and user.pk else None,
                        "source": source,
                        "file_name": file_name[:500],
                        "sha256": reader.sha256.hexdigest(),
                        "size_bytes": reader.bytes_read,
                        "required_reviews": required_reviews
                        or settings.AUDIT_DEFAULT_REQUIRED_REVIEWS,
                        "model": model,
                        "run_source": run_source,
                    },
                    dry_run=dry_run,
                    run=_Run(run, user.pk, required_reviews) if run and user is not None else None,
                    lock_timeout=lock_timeout,
                )
            except _Refused as exc:
                scan.fail_file(exc.error)
        if stored.imported and not dry_run:
            _refresh_statistics(stored.imported)
    return ImportResult(
        file=file_name,
        sha256=reader.sha256.hexdigest(),
        lines=scan.lines,
        imported=stored.imported,
        duplicates=scan.duplicates + stored.duplicates,
        rejected=scan.rejected,
        errors=scan.errors,
        batch_id=stored.batch_id,
        dry_run=dry_run,
        failed=scan.failed,
    )


def _read(reader: _CountingReader, *, scan: _Scan, started: float) -> None:
    """The scan of the whole file: each line through ``scan``, within the limits (gzip's,
    AUDIT_IMPORT_TIME_LIMIT_SECONDS); raise _Refused to refuse the file."""
    buffered = io.BufferedReader(reader, buffer_size=READ_SIZE)
    stream: io.BufferedIOBase = buffered
    max_lines = MAX_LINE_NUMBER
    gunzip: _Gunzip | None = None
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        gunzip = _Gunzip(
            buffered,
            max_bytes=settings.AUDIT_GZIP_MAX_BYTES,
            max_ratio=settings.AUDIT_GZIP_MAX_RATIO,
        )
        stream = io.BufferedReader(gunzip, buffer_size=READ_SIZE)
        max_lines = min(max_lines, settings.AUDIT_GZIP_MAX_LINES)
    deadline = _deadline(started)
    for number, raw_line in enumerate(_lines(stream), start=1):
        if number > max_lines:
            limit = "AUDIT_GZIP_MAX_LINES" if gunzip else "the largest line number stored"
            raise _Refused(f"file: more than {max_lines:,} lines ({limit})")
        deadline.check(f"it was reading line {number:,}")
        if raw_line is None:
            scan.reject_too_long(number)
        else:
            scan.feed(number, raw_line)
    scan.finish()
    if scan.records == 0:
        if reader.bytes_read == 0:
            raise _Refused("file: empty (0 bytes): no records to import")
        if gunzip is not None and gunzip.produced == 0:
            raise _Refused("file: empty: its gzip data decompresses to 0 bytes, no records")
        blank = (
            "its line is blank" if scan.lines == 1 else f"all its {scan.lines:,} lines are blank"
        )
        raise _Refused(f"file: empty: {blank}, no records to import")


@dataclass(frozen=True)
class _Deadline:
    """AUDIT_IMPORT_TIME_LIMIT_SECONDS from the import's start, for the scan and the insert."""

    at: float

    def check(self, where: str) -> None:
        """Raise _Refused, saying ``where`` the import was, once the time is up."""
        if time.monotonic() > self.at:
            raise _Refused(
                f"file: the import took longer than {settings.AUDIT_IMPORT_TIME_LIMIT_SECONDS:,} "
                f"s (AUDIT_IMPORT_TIME_LIMIT_SECONDS); {where}"
            )


def _deadline(started: float) -> _Deadline:
    return _Deadline(started + settings.AUDIT_IMPORT_TIME_LIMIT_SECONDS)


def _staging_problem(exc: OSError) -> str:
    return (
        f"cannot stage the checked rows in the temporary directory "
        f"({tempfile.gettempdir()}): {_os_error(exc)}"
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
    """First pass: parse and validate each line, stage good rows and rejects (``_Staging``).

    Lines are taken a chunk at a time: one read finds which of them are stored already, byte
    for byte (``Transcript.line_sha256``), and those are counted as duplicates without being
    parsed, so re-importing a file costs little more than reading it. Every other line is
    parsed once, checked, and staged as the row it inserts."""

    staged: _Staging
    skip_invalid: bool
    rejects: IO[bytes] | None
    spot_check_rate: float
    lines: int = 0
    records: int = 0  # lines that are not blank, good or bad
    rejected: int = 0
    duplicates: int = 0  # lines found stored already, byte for byte
    failed: bool = False
    errors: list[LineError] = field(default_factory=list)
    # (line number, the line without its ending, its sha256), or None for one too long to read.
    pending: list[tuple[int, bytes, str] | tuple[int, None, None]] = field(default_factory=list)
    pending_bytes: int = 0

    def feed(self, number: int, raw_line: bytes) -> None:
        self.lines = number
        if number == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
            raw_line = raw_line[3:]  # a UTF-8 byte order mark is not part of the record
        if not raw_line.strip():
            return  # blank lines (a trailing newline, spacing) carry no record
        self.records += 1
        raw_line = raw_line.rstrip(b"\r\n")
        self.pending.append((number, raw_line, hashlib.sha256(raw_line).hexdigest()))
        self.pending_bytes += len(raw_line)
        # A chunk of lines, or fewer when they are long: memory stays bounded whatever the file.
        if len(self.pending) >= CHUNK_SIZE or self.pending_bytes >= PENDING_MAX_BYTES:
            self._take_pending()

    def reject_too_long(self, number: int) -> None:
        self.lines = number
        self.records += 1
        self.pending.append((number, None, None))

    def _take_pending(self) -> None:
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        hashes = [line_hash for _, _, line_hash in pending if line_hash is not None]
        # Finished batches only: rows a killed import left are removed before the insert.
        stored = set(
            Transcript.objects.filter(line_sha256__in=hashes).values_list("line_sha256", flat=True)
        )
        for number, raw_line, line_hash in pending:
            if raw_line is None:
                limit = MAX_LINE_BYTES // (1024 * 1024)
                # Too large to keep: the error stands in for the line.
                self.reject(number, b"", f"line: longer than {limit} MiB; not read and not kept")
            elif line_hash in stored:
                self.duplicates += 1
            else:
                self._check(number, raw_line, str(line_hash))

    def _check(self, number: int, raw_line: bytes, line_hash: str) -> None:
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
        self.staged.row(_row(values, raw=text, line=number, line_hash=line_hash))

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
            try:
                self.rejects.write(raw_line + b"\n")
            except OSError as exc:
                raise _Refused(f"file: cannot write the rejects file: {_os_error(exc)}") from None
        text, encoding = RejectedLine.encode(raw_line)
        self.staged.reject((number, text, str(encoding), error))

    def finish(self) -> None:
        """Check the last lines, then flush the staging, whose last writes may find the disk
        full only now."""
        self._take_pending()
        self.staged.flush()

    def fail_file(self, error: str) -> None:
        self.failed = True
        self.errors.append(LineError(0, f"{error}; nothing from the file was imported"))


class _Staging:
    """The checked rows between the scan and the insert, in a temporary file: each item
    ``(True, row)`` for a record (``_row``) or ``(False, reject)`` for a rejected line kept with
    ``--skip-invalid``, written a list of up to ``CHUNK_SIZE`` items at a time as one length-
    prefixed marshal blob. marshal, not JSON: the rows are this process's own values (str, int,
    float, bool, None), written and read back at C speed; a blob per chunk, not per item,
    because ``marshal.load`` from a file reads each object piece by piece (it cost as much as
    parsing the record's JSON), where ``marshal.loads`` of a chunk's bytes is ten times less."""

    def __init__(self, handle: IO[bytes], *, max_bytes: int) -> None:
        self.handle = handle
        self.max_bytes = max_bytes
        self.size = 0
        self._pending: list[tuple[bool, tuple[Any, ...]]] = []

    def row(self, row: tuple[Any, ...]) -> None:
        self._add((True, row))

    def reject(self, reject: tuple[int, str, str, str]) -> None:
        self._add((False, reject))

    def _add(self, item: tuple[bool, tuple[Any, ...]]) -> None:
        self._pending.append(item)
        if len(self._pending) >= CHUNK_SIZE:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        data = marshal.dumps(self._pending)
        self._pending = []
        blob = len(data).to_bytes(_BLOB_LENGTH, "little") + data
        if self.size + len(blob) > self.max_bytes:
            raise _Refused(
                f"file: staging its checked rows takes more than {_mib(self.max_bytes)} "
                "of temporary disk (AUDIT_IMPORT_MAX_STAGING_MB)"
            )
        self.size += len(blob)
        try:
            self.handle.write(blob)
        except OSError as exc:
            raise _Refused(f"file: {_staging_problem(exc)}") from None

    def flush(self) -> None:
        self._write_pending()
        try:
            self.handle.flush()
        except OSError as exc:
            raise _Refused(f"file: {_staging_problem(exc)}") from None

    def chunks(self, size: int) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
        """(rows, rejects) of at most ``size`` staged items at a time, in file order (call
        ``flush`` first)."""
        self.handle.seek(0)
        rows: list[tuple[Any, ...]] = []
        rejects: list[tuple[Any, ...]] = []
        while length := int.from_bytes(self.handle.read(_BLOB_LENGTH), "little"):
            for is_row, item in marshal.loads(self.handle.read(length)):
                (rows if is_row else rejects).append(item)
                if len(rows) + len(rejects) >= size:
                    yield rows, rejects
                    rows, rejects = [], []
        if rows or rejects:
            yield rows, rejects


# The length of a staged blob, before it (bytes, little-endian).
_BLOB_LENGTH = 8


@dataclass(frozen=True)
class _Stored:
    imported: int = 0
    duplicates: int = 0
    batch_id: int | None = None


def _store(
    staged: _Staging,
    *,
    scan: _Scan,
    batch_fields: dict[str, Any],
    dry_run: bool,
    deadline: _Deadline,
    run: _Run | None = None,
    lock_timeout: float | None = None,
) -> _Stored:
    """Second pass: insert the staged rows chunk by chunk, deduplicating as it goes.

    Each chunk is its own short transaction, so no other writer waits long for the database
    (SQLite has one write lock), while the file still lands whole or not at all: the batch is
    unfinished (``ImportBatch.complete`` false, which hides it and its rows from every query)
    until one last short transaction stores its counts and finishes it, and an import that
    fails removes what it inserted, as does one that runs out of time (``deadline``: _Refused).
    A dry run inserts nothing; it keeps the file's fingerprints in memory to tell duplicates
    within the file.

    With a ``run`` the batch folds into the run's batch at the end, in that same last
    transaction (``_fold``), or becomes the run's batch when the run has none yet.
    """
    if dry_run:
        imported, duplicates = _insert(staged, batch=None, deadline=deadline)
        return _Stored(imported=imported, duplicates=duplicates)
    with _import_lock(lock_timeout):
        # No other import runs now: an unfinished batch is what a killed import left behind.
        _discard_leftovers()
        # Looked up under the lock, so two first imports of one run cannot both make its batch.
        into = _run_batch(run, batch_fields) if run is not None else None
        if into is not None:
            batch_fields = {**batch_fields, "required_reviews": into.required_reviews}
        batch = ImportBatch.including_unfinished.create(**batch_fields, complete=False)
        try:
            imported, duplicates = _insert(staged, batch=batch, deadline=deadline)
            if into is not None:
                _drop_kept_rejects(batch, into=into)
            if imported == 0 and _nothing_new_to_keep(scan, batch, into=into):
                _discard(batch.pk)
                return _Stored(imported=imported, duplicates=duplicates)
            with transaction.atomic():
                if into is not None:
                    _fold(batch, into=into, scan=scan, imported=imported, duplicates=duplicates)
                    return _Stored(imported=imported, duplicates=duplicates, batch_id=into.pk)
                ImportBatch.including_unfinished.filter(pk=batch.pk).update(
                    lines=scan.lines,
                    imported=imported,
                    duplicates=scan.duplicates + duplicates,
                    rejected=scan.rejected,
                    errors=[asdict(error) for error in scan.errors],
                    complete=True,
                )
                if run is not None:
                    IngestRun.objects.create(
                        created_by_id=run.user_id, key=run.key, batch_id=batch.pk
                    )
        except _Refused:
            _discard(batch.pk)  # not a database failure: its rows can be removed at once
            raise
        except BaseException:
            _discard_after_failure(batch.pk)
            raise
    return _Stored(imported=imported, duplicates=duplicates, batch_id=batch.pk)


def _insert(staged: _Staging, *, batch: ImportBatch | None, deadline: _Deadline) -> tuple[int, int]:
    """Insert the staged rows into ``batch`` (count them only when None), one transaction per
    chunk: (imported, duplicates)."""
    imported = duplicates = 0
    # Dry run: the fingerprints of the file's new records, since none of them is stored.
    seen: set[str] = set()
    pause = _Pause()
    for rows, rejects in staged.chunks(CHUNK_SIZE):
        deadline.check(f"it was storing the checked records ({imported + duplicates:,} done)")
        unique: dict[str, tuple[Any, ...]] = {}
        for row in rows:
            fingerprint = row[_FINGERPRINT]
            if fingerprint in unique or fingerprint in seen:
                duplicates += 1
                continue
            unique[fingerprint] = row
        # Imports insert one at a time (_one_import_at_a_time) and earlier chunks are committed,
        # so this read, outside the insert's transaction, sees every record stored before.
        existing = set(
            Transcript.including_unfinished.filter(fingerprint__in=list(unique)).values_list(
                "fingerprint", flat=True
            )
        )
        duplicates += len(existing)
        new = [row for fingerprint, row in unique.items() if fingerprint not in existing]
        imported += len(new)
        if batch is None:
            seen.update(row[_FINGERPRINT] for row in new)
            continue
        kept = [
            RejectedLine(batch=batch, line_number=line, text=text, encoding=encoding, error=error)
            for line, text, encoding, error in rejects
        ]
        pause.between_transactions()
        with transaction.atomic():
            RejectedLine.objects.bulk_create(kept)
            if new:
                _write_rows(new, batch=batch)
    return imported, duplicates


# --- the rows as the scan stages them, and their insert -----------------------------------------

# Columns whose value is the same for every row of a batch, filled in by ``_write_rows``.
_BATCH_COLUMNS = ("batch", "required_reviews", "status", "review_count", "version", "updated_at")
_FIELDS = [field for field in Transcript._meta.local_concrete_fields if not field.primary_key]
# The transcript's columns ``_row`` gives, in its order: every other concrete field; then the
# record's text (``TranscriptText``), which goes into a table of its own.
_ROW_FIELDS = [field for field in _FIELDS if field.name not in _BATCH_COLUMNS]
_TEXT_FIELDS = [
    field for field in TranscriptText._meta.local_concrete_fields if not field.primary_key
]
_ROW_NAMES = [field.name for field in (*_ROW_FIELDS, *_TEXT_FIELDS)]
_TEXT_START = len(_ROW_FIELDS)
_FINGERPRINT = _ROW_NAMES.index("fingerprint")
_BATCH_FIELDS = sorted(
    (field for field in _FIELDS if field.name in _BATCH_COLUMNS),
    key=lambda field: _BATCH_COLUMNS.index(field.name),
)


def _row(values: dict[str, Any], *, raw: str, line: int, line_hash: str) -> tuple[Any, ...]:
    """A record's row as the insert takes it: ``extract``'s values plus the line, in
    ``_ROW_NAMES`` order, each already the database's value (the only conversion a field
    would make is ``problems``, JSON text)."""
    given = {
        **values,
        "raw": raw,
        "line_number": line,
        "line_sha256": line_hash,
        "problems": json.dumps(values["problems"]),
        # A Category member: its plain text (marshal stages only built-in types).
        "final_alignment_category": str(values["final_alignment_category"]),
    }
    return tuple(given[name] for name in _ROW_NAMES)


def _new_ids(cursor: CursorWrapper, count: int) -> range | list[int]:
    """Ids for ``count`` new transcripts, so that their text rows can name them in the same
    bulk insert (neither ``executemany`` nor ``COPY`` returns the ids it made).

    PostgreSQL: taken from the id column's own sequence, as an insert without ids would take
    them (safe beside any other writer). SQLite: the ones after the largest id ever given (the
    ``AUTOINCREMENT`` counter, which an explicit id moves on too); inside the import's
    transaction, which holds SQLite's one write lock from its start (``transaction_mode``
    IMMEDIATE), no other connection can take them meanwhile.
    """
    table = Transcript._meta.db_table
    if cursor.db.vendor == "postgresql":
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, count],
        )
        return sorted(pk for (pk,) in cursor.fetchall())
    cursor.execute(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "
        f"coalesce((SELECT max(id) FROM {connection.ops.quote_name(table)}), 0))",
        [table],
    )
    (last,) = cursor.fetchone()
    return range(last + 1, last + 1 + count)


def _write_rows(rows: list[tuple[Any, ...]], *, batch: ImportBatch) -> None:
    """Insert ``rows`` (``_row``) into ``batch``, inside the caller's transaction: the
    transcripts, then their text, each one ``executemany`` on SQLite, one ``COPY`` on
    PostgreSQL. No ORM on this path: a chunk's values are computed before the transaction
    opens, so the lock is held for the insert only.
    """
    constants = {
        "batch": batch.pk,
        "required_reviews": batch.required_reviews,
        "status": Transcript._meta.get_field("status").get_default(),
        "review_count": 0,
        "version": 1,
        "updated_at": Transcript._meta.get_field("updated_at").get_db_prep_save(
            timezone.now(), connection=connection
        ),
    }
    extra = tuple(constants[name] for name in _BATCH_COLUMNS)
    quote = connection.ops.quote_name

    def statement(model: type[Model], fields: list[Field]) -> tuple[str, str]:
        names = ", ".join(["id", *(quote(str(field.column)) for field in fields)])
        return quote(model._meta.db_table), names

    table, columns = statement(Transcript, [*_ROW_FIELDS, *_BATCH_FIELDS])
    text_table, text_columns = statement(TranscriptText, _TEXT_FIELDS)
    with connection.cursor() as cursor:
        ids = _new_ids(cursor, len(rows))
        hot = [(pk, *row[:_TEXT_START], *extra) for pk, row in zip(ids, rows, strict=True)]
        text = [(pk, *row[_TEXT_START:]) for pk, row in zip(ids, rows, strict=True)]
        if connection.vendor == "postgresql":
            for name, names, values in ((table, columns, hot), (text_table, text_columns, text)):
                with cursor.copy(f"COPY {name} ({names}) FROM STDIN") as copy:
                    for row in values:
                        copy.write_row(row)
            return
        with rollup.counted_in_bulk(cursor):
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(hot[0]))})",
                hot,
            )
        with search.indexed_in_bulk(cursor):
            cursor.executemany(
                f"INSERT INTO {text_table} ({text_columns}) "
                f"VALUES ({', '.join(['%s'] * len(text[0]))})",
                text,
            )


@contextmanager
def _discarded(staging: IO[bytes]) -> Iterator[IO[bytes]]:
    """The staging file, closed at the end without a word: what it still buffers is not needed,
    and on a full disk the close's flush fails again after the import already said so."""
    try:
        yield staging
    finally:
        with suppress(OSError):
            staging.close()


@contextmanager
def _no_query_log() -> Iterator[None]:
    """Keep no log of the import's statements, even with DEBUG on (the default for commands):
    each chunk's duplicate check names a thousand fingerprints, and Django keeps the last 9,000
    statements. Left alone while a test captures queries (``force_debug_cursor``)."""
    if connection.force_debug_cursor or not connection.queries_logged:
        yield
        return
    kept = connection.queries_log
    connection.queries_log = deque(maxlen=0)
    try:
        yield
    finally:
        connection.queries_log = kept


def _refresh_statistics(imported: int) -> None:
    """PostgreSQL: ANALYZE the transcripts after an import that grew them by a tenth or more.

    The planner works from statistics autovacuum refreshes only a while later (and never inside
    a transaction that is still open); until then it plans for the table as it was, and the
    claim of the next item, planned for a few rows, took 50 ms instead of 1 ms after 20,000 new
    ones (issue 14). A tenth is autovacuum's own default threshold, so a run posting small
    imports does not analyze each time. ANALYZE reads a fixed-size sample (about 30,000 rows),
    so it costs a fraction of a second at any size. SQLite plans without statistics here.
    """
    if connection.vendor != "postgresql":
        return
    table = Transcript._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        (estimate,) = cursor.fetchone()
        # -1: never analyzed.
        if estimate < 0 or imported >= 0.1 * estimate:
            # The text's table too: planned as empty, the export's join to it read the whole
            # table once per transcript (20,000 records exported at 514 records/s, not 4,000).
            for name in (table, TranscriptText._meta.db_table):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(name)}")


def _discard(batch_id: int) -> None:
    """Remove an unfinished batch with its rows, a chunk per transaction (they were never
    visible, so nothing refers to them)."""
    pause = _Pause()
    for model in (Transcript, RejectedLine):
        rows = model._base_manager.filter(batch_id=batch_id)
        while ids := list(rows.values_list("pk", flat=True)[:CHUNK_SIZE]):
            pause.between_transactions()
            with transaction.atomic():
                model._base_manager.filter(pk__in=ids).delete()
    ImportBatch.including_unfinished.filter(pk=batch_id, complete=False).delete()


def _discard_after_failure(batch_id: int) -> None:
    """``_discard`` for an import that is failing: its own error is the one to report. When the
    caller holds a transaction, its rollback removes the rows; otherwise, if the database is
    what failed, the next import removes them (they stay invisible until then)."""
    if connection.in_atomic_block:
        return
    try:
        _discard(batch_id)
    except DatabaseError:
        logger.exception("could not remove unfinished import batch %s", batch_id)


class _Pause:
    """Pauses between a long job's write transactions on SQLite, so writers waiting for its
    lock get in (see ``audit.sqlite``); nothing on PostgreSQL, whose writers lock rows, or when
    the caller holds one transaction around it all anyway."""

    def __init__(self) -> None:
        self.first = True
        self.seconds = (
            WRITER_PAUSE_SECONDS
            if connection.vendor == "sqlite" and not connection.in_atomic_block
            else 0.0
        )

    def between_transactions(self) -> None:
        if not self.first and self.seconds:
            time.sleep(self.seconds)
        self.first = False


def _nothing_new_to_keep(scan: _Scan, batch: ImportBatch, *, into: ImportBatch | None) -> bool:
    """No new records and no rejected lines that an earlier import of these same bytes did not
    already keep (for a run: that the run does not keep already, ``_drop_kept_rejects``): then
    the import is a no-op and leaves no batch."""
    if scan.rejected == 0:
        return True
    if into is not None:
        return not RejectedLine.objects.filter(batch=batch).exists()
    earlier = ImportBatch.objects.filter(sha256=batch.sha256, rejected=scan.rejected)
    return earlier.exclude(pk=batch.pk).exists()


# --- runs: many imports, one batch ------------------------------------------------------------


def _run_batch(run: _Run, batch_fields: dict[str, Any]) -> ImportBatch | None:
    """The run's batch (None before its first import stored anything); RunConflict when the
    import asks for another model, run source or K than the run has. Under the import lock."""
    found = IngestRun.objects.select_related("batch").filter(created_by_id=run.user_id, key=run.key)
    into = next((ingest.batch for ingest in found), None)
    if into is None:
        return None
    asked = {
        "model": batch_fields["model"],
        "run source": batch_fields["run_source"],
        "K": run.required_reviews,
    }
    has = {"model": into.model, "run source": into.run_source, "K": into.required_reviews}
    for name, value in asked.items():
        # Not given ("" or None): the run's own.
        if value not in ("", None) and value != has[name]:
            raise RunConflict(
                f"run {run.key!r} is batch #{into.pk}, whose {name} is {has[name]!r}; this "
                f"import gives {value!r}. A run's imports must agree (or name another run)."
            )
    return into


def _drop_kept_rejects(batch: ImportBatch, *, into: ImportBatch) -> None:
    """Remove the batch's rejected lines that the run's batch keeps already (a retry's)."""
    kept = RejectedLine.objects.filter(
        batch=into, text=OuterRef("text"), encoding=OuterRef("encoding")
    )
    RejectedLine.objects.filter(batch=batch).filter(Exists(kept)).delete()


def _fold(
    batch: ImportBatch, *, into: ImportBatch, scan: _Scan, imported: int, duplicates: int
) -> None:
    """Move the finished import's rows and rejected lines into the run's batch ``into``, their
    line numbers after the run's earlier lines, add its counts there, and remove ``batch``.
    Inside the caller's transaction, under the import lock."""
    offset = into.lines
    Transcript.including_unfinished.filter(batch=batch).update(
        batch=into, line_number=F("line_number") + offset
    )
    rejected = RejectedLine.objects.filter(batch=batch)
    kept_lines = set(rejected.values_list("line_number", flat=True))
    rejected.update(batch=into, line_number=F("line_number") + offset)
    # The errors of the rejected lines kept (a retry's were kept already), numbered as moved.
    errors = list(into.errors) + [
        {"line": error.line + offset, "error": error.error}
        for error in scan.errors
        if error.line in kept_lines
    ]
    ImportBatch.objects.filter(pk=into.pk).update(
        lines=F("lines") + scan.lines,
        imported=F("imported") + imported,
        duplicates=F("duplicates") + scan.duplicates + duplicates,
        rejected=F("rejected") + len(kept_lines),
        errors=errors[:MAX_REPORTED_ERRORS],
        size_bytes=F("size_bytes") + batch.size_bytes,
        # The batch is many request bodies now, not one file with one digest.
        sha256="",
    )
    ImportBatch.including_unfinished.filter(pk=batch.pk).delete()


@contextmanager
def _import_lock(timeout: float | None) -> Iterator[None]:
    """``_one_import_at_a_time``, waiting at most ``timeout`` seconds for it (None: as long as
    it takes); ImportBusy when it is not had in time. The wait polls, backing off to a quarter
    of a second: neither lock can be waited for with a limit."""
    if timeout is None:
        with _one_import_at_a_time():
            yield
        return
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        with _one_import_at_a_time(wait=False) as held:
            if held:
                yield
                return
        left = deadline - time.monotonic()
        if left <= 0:
            raise ImportBusy(timeout)
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.25)


# Any constant: the key of the PostgreSQL advisory lock that imports take.
IMPORT_LOCK_KEY = 0x5E471E1


@contextmanager
def _one_import_at_a_time(*, wait: bool = True) -> Iterator[bool]:
    """One import inserts at a time, for its whole insert phase (many transactions), so two
    overlapping files cannot both find a fingerprint missing, and a file imported twice at once
    lands once. PostgreSQL: a session advisory lock; SQLite: a lock file beside the database
    (``audit.sqlite.file_lock``). A process that dies releases either.

    Yields True once it holds the lock; with ``wait=False``, False at once when an import
    holds it (``discard_unfinished``, which must not wait behind a long import)."""
    if connection.vendor != "postgresql":
        with file_lock(connection, "import", wait=wait) as held:
            yield held
        return
    if connection.in_atomic_block:
        # The caller's transaction spans the whole import (bench, tests): hold the lock as long,
        # and let its end release it, even one aborted by an error.
        with connection.cursor() as cursor:
            if wait:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [IMPORT_LOCK_KEY])
                held = True
            else:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [IMPORT_LOCK_KEY])
                held = cursor.fetchone()[0]
        yield held
        return
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_lock(%s)", [IMPORT_LOCK_KEY])
            held = True
        else:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [IMPORT_LOCK_KEY])
            held = cursor.fetchone()[0]
    if not held:
        yield False
        return
    try:
        yield True
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [IMPORT_LOCK_KEY])
        except DatabaseError:
            pass  # the connection is gone, and its session lock with it


def discard_unfinished(*, dry_run: bool = False) -> tuple[int, ...] | None:
    """Remove what killed imports left behind: every unfinished batch with its rows (they were
    never visible). Returns the batch ids (in a dry run, those it would remove), or None, doing
    nothing, while an import runs, since its own batch is unfinished until it ends.
    ``manage.py cleanup`` calls it; every import does the same before it inserts."""
    with _one_import_at_a_time(wait=False) as held:
        if not held:
            return None
        return _discard_leftovers(dry_run=dry_run)


def _discard_leftovers(*, dry_run: bool = False) -> tuple[int, ...]:
    """``discard_unfinished`` for a caller that holds the import lock."""
    leftovers = tuple(ImportBatch.including_unfinished.unfinished().values_list("pk", flat=True))
    if not dry_run:
        for leftover in leftovers:
            _discard(leftover)
    return leftovers
