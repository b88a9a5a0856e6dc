"""Limits of one import (issue 15, D6): gzip's decompressed bytes, lines and ratio, the
temporary staging, and time. Each refuses the whole file with an error naming the limit, also
with --skip-invalid, and nothing is imported."""

import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from audit.ingest import importer
from audit.ingest.importer import import_file
from audit.models import ImportBatch, RejectedLine, Transcript
from tests.factories import DATA_DIR, make_record

pytestmark = pytest.mark.django_db

NOTHING = "; nothing from the file was imported"


def _nothing_stored() -> bool:
    return not (
        Transcript.including_unfinished.exists()
        or ImportBatch.including_unfinished.exists()
        or RejectedLine.objects.exists()
    )


def _records(n: int) -> bytes:
    return "".join(json.dumps(make_record(step_number=i)) + "\n" for i in range(n)).encode()


@pytest.fixture
def staging_sizes(monkeypatch):
    """The largest size each staging file of an import reached."""
    sizes: list[int] = []
    real = tempfile.TemporaryFile

    class Watched:
        def __init__(self, *args, **kwargs):
            self.file = real(*args, **kwargs)
            sizes.append(0)

        def write(self, text):
            written = self.file.write(text)
            sizes[-1] = max(sizes[-1], self.file.tell())
            return written

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __iter__(self):
            return iter(self.file)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(importer.tempfile, "TemporaryFile", Watched)
    return sizes


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_gzip_that_decompresses_past_the_byte_limit_is_refused(
    tmp_path, settings, skip_invalid, staging_sizes
):
    settings.AUDIT_GZIP_MAX_BYTES = 256 * 1024
    path = tmp_path / "big.jsonl.gz"
    data = _records(400)  # about 400 KB
    assert len(data) > settings.AUDIT_GZIP_MAX_BYTES
    path.write_bytes(gzip.compress(data))
    result = import_file(path, skip_invalid=skip_invalid)
    assert result.failed
    assert [e.error for e in result.errors] == [
        f"file: the gzip data decompresses to more than 262,144 bytes (AUDIT_GZIP_MAX_MB){NOTHING}"
    ]
    assert result.lines < 400 and _nothing_stored()
    # Staged rows stop with the data: no more than what the limit let through.
    assert max(staging_sizes) < 3 * settings.AUDIT_GZIP_MAX_BYTES


def test_gzip_of_more_lines_than_the_limit_is_refused(tmp_path, settings):
    settings.AUDIT_GZIP_MAX_LINES = 1000
    path = tmp_path / "newlines.gz"
    path.write_bytes(gzip.compress(b"\n" * 5_000_000))
    result = import_file(path, skip_invalid=True)
    assert result.failed
    assert [e.error for e in result.errors] == [
        f"file: more than 1,000 lines (AUDIT_GZIP_MAX_LINES){NOTHING}"
    ]
    assert result.lines == 1000 and _nothing_stored()


def test_a_plain_file_is_not_held_to_the_gzip_line_limit(tmp_path, settings):
    settings.AUDIT_GZIP_MAX_LINES = 2
    path = tmp_path / "plain.jsonl"
    path.write_bytes(_records(5))
    assert import_file(path).imported == 5


def test_a_gzip_bomb_is_refused_by_its_ratio_within_its_first_megabytes(tmp_path, settings):
    # One byte over and over compresses about 1030 times, and no other limit is near.
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(b"a" * (64 << 20), compresslevel=9))
    result = import_file(path, skip_invalid=True)
    assert result.failed and _nothing_stored()
    error = result.errors[-1].error
    assert error.startswith(
        "file: the gzip data expands more than 1000 times (AUDIT_GZIP_MAX_RATIO)"
    )
    assert error.endswith(f"as a decompression bomb does{NOTHING}")
    # Stopped within its first (16 MiB) line: judged on the compressed bytes consumed, not
    # on those read ahead.
    assert result.lines == 0
    consumed = re.search(r"([\d,]+) compressed bytes gave", error).group(1)
    assert int(consumed.replace(",", "")) < 64 * 1024  # less than one read of the file


def test_ordinary_gzip_is_far_from_the_ratio_limit(tmp_path):
    path = tmp_path / "fixture.jsonl.gz"
    # Real records compress some 10 to 30 times; the same record over and over far more, but
    # still well below 1000.
    path.write_bytes(gzip.compress((DATA_DIR / "rule_s0.jsonl").read_bytes() * 40))
    result = import_file(path)
    assert not result.failed, list(result.report_lines())
    assert (result.imported, result.duplicates) == (105, 105 * 39)


def test_several_gzip_members_read_as_one_file(tmp_path):
    # gzip allows members one after the other (cat a.gz b.gz), and gzip.open reads them all.
    path = tmp_path / "members.gz"
    path.write_bytes(gzip.compress(_records(3)) + gzip.compress(_records(5)))
    result = import_file(path)
    assert (result.lines, result.imported, result.duplicates) == (8, 5, 3)


def test_zero_padding_after_the_gzip_data_is_skipped_as_gzip_open_does(tmp_path):
    path = tmp_path / "padded.gz"
    path.write_bytes(gzip.compress(_records(2)) + b"\x00" * 100_000 + gzip.compress(_records(3)))
    with gzip.open(path) as read:
        assert read.read() == _records(2) + _records(3)
    result = import_file(path)
    assert (result.lines, result.imported, result.failed) == (5, 3, False)


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_staging_past_its_limit_is_refused(tmp_path, settings, skip_invalid, staging_sizes):
    settings.AUDIT_IMPORT_MAX_STAGING_BYTES = 64 * 1024
    path = tmp_path / "plain.jsonl"
    path.write_bytes(_records(200))
    result = import_file(path, skip_invalid=skip_invalid)
    assert result.failed and _nothing_stored()
    assert result.errors[-1].error == (
        "file: staging its checked rows takes more than 65,536 bytes of temporary disk "
        f"(AUDIT_IMPORT_MAX_STAGING_MB){NOTHING}"
    )
    assert max(staging_sizes) <= settings.AUDIT_IMPORT_MAX_STAGING_BYTES


def test_rejected_lines_count_towards_the_staging_limit(tmp_path, settings, staging_sizes):
    settings.AUDIT_IMPORT_MAX_STAGING_BYTES = 64 * 1024
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"not json at all, but kept as a reject\n" * 10_000)
    result = import_file(path, skip_invalid=True)
    assert result.failed and "AUDIT_IMPORT_MAX_STAGING_MB" in result.errors[-1].error
    assert max(staging_sizes) <= settings.AUDIT_IMPORT_MAX_STAGING_BYTES
    assert _nothing_stored()


def test_an_import_past_its_time_limit_is_refused(tmp_path, settings, monkeypatch):
    settings.AUDIT_IMPORT_TIME_LIMIT_SECONDS = 60
    clock = iter(range(0, 10**6, 7))  # every look at the clock, 7 s later
    monkeypatch.setattr(importer.time, "monotonic", lambda: next(clock))
    path = tmp_path / "slow.jsonl"
    path.write_bytes(_records(50))
    result = import_file(path, skip_invalid=True)
    assert result.failed and _nothing_stored()
    assert [e.error for e in result.errors] == [
        "file: the import took longer than 60 s (AUDIT_IMPORT_TIME_LIMIT_SECONDS); it was "
        f"reading line 9{NOTHING}"
    ]


@pytest.mark.parametrize("skip_invalid", [False, True])
@pytest.mark.django_db(transaction=True)
def test_the_time_limit_covers_the_insert_and_removes_what_it_inserted(
    tmp_path, settings, monkeypatch, skip_invalid
):
    """The limit holds while the rows go in, chunk by chunk (each its own transaction): once it
    is passed, the chunks already committed are removed and the file is refused whole."""
    settings.AUDIT_IMPORT_TIME_LIMIT_SECONDS = 60
    monkeypatch.setattr(importer, "CHUNK_SIZE", 10)
    now = [0.0]
    monkeypatch.setattr(importer.time, "monotonic", lambda: now[0])
    real_chunks = importer._Staging.chunks
    committed: list[int] = []

    def slow_chunks(staged, size):
        for chunk in real_chunks(staged, size):
            yield chunk
            committed.append(Transcript.including_unfinished.count())
            now[0] += 45  # each chunk takes 45 s: the second one ends past the limit

    monkeypatch.setattr(importer._Staging, "chunks", slow_chunks)
    path = tmp_path / "slow.jsonl"
    path.write_bytes(_records(50))
    result = importer.import_file(path, skip_invalid=skip_invalid)
    assert committed[:2] == [10, 20]  # two chunks were stored before the time ran out
    assert result.failed and result.imported == 0 and _nothing_stored()
    assert [e.error for e in result.errors] == [
        "file: the import took longer than 60 s (AUDIT_IMPORT_TIME_LIMIT_SECONDS); it was "
        f"storing the checked records (20 done){NOTHING}"
    ]


def test_a_dry_run_is_held_to_the_limits_too(tmp_path, settings):
    settings.AUDIT_GZIP_MAX_LINES = 3
    path = tmp_path / "four.gz"
    path.write_bytes(gzip.compress(_records(4)))
    result = import_file(path, dry_run=True)
    assert result.failed and "AUDIT_GZIP_MAX_LINES" in result.errors[-1].error


PRINT_LIMITS = """
import audit.settings as s
print(s.AUDIT_GZIP_MAX_BYTES, s.AUDIT_GZIP_MAX_LINES, s.AUDIT_GZIP_MAX_RATIO,
      s.AUDIT_IMPORT_MAX_STAGING_BYTES, s.AUDIT_IMPORT_TIME_LIMIT_SECONDS)
"""
LIMIT_VARIABLES = {
    "AUDIT_GZIP_MAX_MB": "10",
    "AUDIT_GZIP_MAX_LINES": "5",
    "AUDIT_GZIP_MAX_RATIO": "50",
    "AUDIT_IMPORT_MAX_STAGING_MB": "3",
    "AUDIT_IMPORT_TIME_LIMIT_SECONDS": "90",
}


def _settings_with(**variables: str):
    return subprocess.run(
        [sys.executable, "-c", PRINT_LIMITS],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_limits_come_from_the_environment():
    result = _settings_with(**LIMIT_VARIABLES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(10 * 1024**2), "5", "50", str(3 * 1024**2), "90"]


@pytest.mark.parametrize("variable", LIMIT_VARIABLES)
def test_a_limit_that_does_not_parse_stops_start_up_naming_it(variable):
    result = _settings_with(**{variable: "0"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and variable in result.stderr


def test_default_limits_are_generous_for_real_files():
    from django.conf import settings

    assert settings.AUDIT_GZIP_MAX_BYTES == 4096 * 1024 * 1024
    assert settings.AUDIT_GZIP_MAX_LINES == 10_000_000
    assert settings.AUDIT_GZIP_MAX_RATIO == 1000
    assert settings.AUDIT_IMPORT_MAX_STAGING_BYTES == 8192 * 1024 * 1024
    assert settings.AUDIT_IMPORT_TIME_LIMIT_SECONDS == 3600
