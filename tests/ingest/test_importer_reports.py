"""Reports that say what happened (issue 15, D12): a truncated or corrupt gzip, a full
temporary disk, an empty file; each refuses the file with its own error, on the command line
and on the upload's job page alike."""

import errno
import gzip
import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.ingest import importer
from audit.ingest.importer import import_file
from audit.models import ImportBatch, Transcript
from tests.factories import DATA_DIR, make_record

pytestmark = pytest.mark.django_db

NOTHING = "; nothing from the file was imported"


def _errors(result) -> list[str]:
    return [error.error for error in result.errors]


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_a_truncated_gzip_says_it_is_truncated_not_that_a_line_is_invalid(tmp_path, skip_invalid):
    data = gzip.compress((DATA_DIR / "rule_s0.jsonl").read_bytes())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    result = import_file(path, skip_invalid=skip_invalid)
    assert result.failed and result.rejected == 0
    [error] = _errors(result)  # the lines read before the cut were all good
    assert error.startswith("file: the gzip data is truncated: it ends after ")
    assert error.endswith(
        "compressed bytes, before its end-of-stream marker (was the upload or copy cut short?)"
        + NOTHING
    )
    assert Transcript.objects.count() == ImportBatch.objects.count() == 0


def test_a_gzip_cut_right_after_its_header_is_truncated_too(tmp_path):
    path = tmp_path / "header-only.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n')[:10])
    [error] = _errors(import_file(path))
    assert error.startswith("file: the gzip data is truncated")


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda data: data[:-8] + bytes([data[-8] ^ 1]) + data[-7:], "incorrect data check"),
        (lambda data: data + b"trailing junk", "incorrect header check"),
    ],
)
def test_a_corrupt_gzip_says_it_is_corrupt(tmp_path, damage, problem):
    path = tmp_path / "bad.gz"
    path.write_bytes(damage(gzip.compress((DATA_DIR / "rule_s0.jsonl").read_bytes())))
    [error] = _errors(import_file(path, skip_invalid=True))
    assert error.startswith("file: the gzip data is corrupt (") and problem in error
    assert Transcript.objects.count() == 0


class _FullDisk(io.BytesIO):
    """A staging file on a disk that is full."""

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("compress", [False, True])
def test_a_full_temporary_disk_is_reported_as_such_not_as_a_gzip_error(
    tmp_path, monkeypatch, compress
):
    monkeypatch.setattr(importer.tempfile, "TemporaryFile", lambda **kwargs: _FullDisk())
    path = tmp_path / "plain.jsonl"
    data = (DATA_DIR / "rule_s0.jsonl").read_bytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    result = import_file(path, skip_invalid=True)
    assert result.failed
    assert _errors(result) == [
        "file: cannot stage the checked rows in the temporary directory "
        f"({importer.tempfile.gettempdir()}): No space left on device (the disk is full)" + NOTHING
    ]
    assert Transcript.objects.count() == ImportBatch.objects.count() == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_really_full_device_is_reported_as_a_full_disk(tmp_path, monkeypatch):
    # /dev/full answers every write with ENOSPC, as a full tmpfs does: buffered writes fail
    # at a later write or at the last flush, and either is reported.
    monkeypatch.setattr(
        importer.tempfile,
        "TemporaryFile",
        lambda **kwargs: open("/dev/full", "w+b"),  # noqa: SIM115
    )
    result = import_file(DATA_DIR / "rule_s0.jsonl")
    assert result.failed
    [error] = _errors(result)
    assert "No space left on device (the disk is full)" in error and "gzip" not in error


def test_a_staging_file_that_cannot_be_made_is_reported(tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(importer.tempfile, "TemporaryFile", refuse)
    result = import_file(DATA_DIR / "rule_s0.jsonl")
    assert result.failed
    assert _errors(result)[0].startswith("file: cannot stage the checked rows")
    assert _errors(result)[0].endswith("No space left on device (the disk is full)")


def test_an_unreadable_file_says_it_cannot_be_read(tmp_path):
    class Failing(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise OSError(errno.EIO, "Input/output error")

    result = importer.import_stream(Failing(), file_name="disk.jsonl")
    assert _errors(result) == [f"file: cannot read the file: Input/output error{NOTHING}"]


def test_a_rejects_file_that_cannot_be_written_is_reported(tmp_path):
    class FullRejects(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(make_record()) + "\nnot json\n")
    result = import_file(path, skip_invalid=True, rejects=FullRejects())
    assert result.failed and Transcript.objects.count() == 0
    assert _errors(result)[-1] == (
        f"file: cannot write the rejects file: No space left on device (the disk is full){NOTHING}"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file: empty (0 bytes): no records to import"),
        (b"\n", "file: empty: its line is blank, no records to import"),
        (b"\n  \n\r\n", "file: empty: all its 3 lines are blank, no records to import"),
        (b"\xef\xbb\xbf\n", "file: empty: its line is blank, no records to import"),
        (gzip.compress(b""), "file: empty: its gzip data decompresses to 0 bytes, no records"),
        (gzip.compress(b"\n\n"), "file: empty: all its 2 lines are blank, no records to import"),
    ],
)
def test_an_empty_file_says_it_is_empty_not_that_its_records_were_stored(
    tmp_path, content, message
):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    result = import_file(path, skip_invalid=True)
    assert result.failed and _errors(result) == [message + NOTHING]
    assert (result.imported, result.duplicates, result.batch_id) == (0, 0, None)


def test_the_command_prints_what_happened(tmp_path, capsys):
    data = gzip.compress((DATA_DIR / "rule_s0.jsonl").read_bytes())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[:-100])
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(CommandError):
        call_command("import_transcripts", str(cut), str(empty), "--skip-invalid")
    err = capsys.readouterr().err
    assert f"{cut}: file: the gzip data is truncated" in err
    assert f"{empty}: file: empty (0 bytes): no records to import" in err
    assert "invalid" not in err


def test_the_upload_job_reports_the_truncation(tmp_path, staff_user, settings):
    from audit.models import ImportJob
    from audit.tasks import import_upload

    data = gzip.compress((DATA_DIR / "rule_s0.jsonl").read_bytes())
    upload = tmp_path / "u.upload"
    upload.write_bytes(data[: len(data) // 3])
    job = ImportJob.objects.create(
        created_by=staff_user, file_name="cut.jsonl.gz", upload_path=str(upload), skip_invalid=True
    )
    import_upload.call(job.pk)
    job.refresh_from_db()
    assert job.state == ImportJob.State.FAILED
    [error] = job.report["errors"]
    assert error["line"] == 0 and error["error"].startswith("file: the gzip data is truncated")
