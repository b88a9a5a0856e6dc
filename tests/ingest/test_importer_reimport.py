"""Re-importing costs little (issue 14): a line stored byte for byte is a duplicate without
being parsed; any other spelling of a stored record is still found by its fingerprint; and an
import keeps no log of its statements, even with DEBUG on."""

import hashlib
import importlib
import json
from types import SimpleNamespace

import pytest
from django.db import connection, reset_queries

from audit.ingest import importer
from audit.ingest.importer import import_file
from audit.models import ImportBatch, Transcript
from tests.factories import make_record, transcripts_as_before_0019, write_jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture
def parses(monkeypatch):
    """The lines the importer parsed."""
    seen: list[str] = []
    real = importer.parse_line

    def counting(text):
        seen.append(text)
        return real(text)

    monkeypatch.setattr(importer, "parse_line", counting)
    return seen


def test_a_reimport_parses_no_line_it_stored_byte_for_byte(tmp_path, parses, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_SIZE", 3)  # the look-up runs a chunk at a time
    records = [make_record(step_number=n) for n in range(8)]
    path = write_jsonl(tmp_path / "run.jsonl", records)
    first = import_file(path)
    assert (first.imported, len(parses)) == (8, 8)
    parses.clear()
    again = import_file(path)
    assert (again.imported, again.duplicates, again.failed) == (0, 8, False)
    assert parses == []
    assert ImportBatch.objects.count() == 1  # a no-op leaves no batch


def test_another_spelling_of_a_stored_record_is_parsed_and_found_a_duplicate(tmp_path, parses):
    record = make_record(step_number=1)
    import_file(write_jsonl(tmp_path / "a.jsonl", [record]))
    parses.clear()
    respelled = tmp_path / "b.jsonl"
    respelled.write_text(json.dumps(record, indent=None, separators=(",", ":")) + "\n")
    result = import_file(respelled)
    assert (result.imported, result.duplicates) == (0, 1)
    assert len(parses) == 1  # not the stored bytes: parsed, then found by its fingerprint


def test_new_lines_beside_stored_ones_are_imported_with_their_line_numbers(tmp_path, parses):
    old = [make_record(step_number=n) for n in range(3)]
    import_file(write_jsonl(tmp_path / "old.jsonl", old))
    parses.clear()
    mixed = [old[0], make_record(step_number=10), old[2], make_record(step_number=11)]
    result = import_file(write_jsonl(tmp_path / "mixed.jsonl", mixed), skip_invalid=True)
    assert (result.imported, result.duplicates) == (2, 2)
    assert len(parses) == 2
    stored = Transcript.objects.filter(batch_id=result.batch_id).order_by("line_number")
    assert [(t.step_number, t.line_number) for t in stored] == [(10, 2), (11, 4)]


def test_every_stored_row_has_the_sha256_of_its_line(tmp_path):
    path = tmp_path / "crlf.jsonl"
    lines = [json.dumps(make_record(step_number=n)).encode() for n in range(3)]
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n")
    import_file(path)
    stored = dict(Transcript.objects.values_list("line_number", "line_sha256"))
    assert stored == {n + 1: hashlib.sha256(line).hexdigest() for n, line in enumerate(lines)}


def test_the_migration_fills_in_the_line_hash_of_stored_rows(tmp_path):
    import_file(write_jsonl(tmp_path / "run.jsonl", [make_record(step_number=n) for n in range(5)]))
    expected = dict(Transcript.objects.values_list("pk", "line_sha256"))
    migration = importlib.import_module("audit.migrations.0008_transcript_line_sha256")
    with transcripts_as_before_0019() as old, connection.cursor() as cursor:
        cursor.execute(f"UPDATE {old.table} SET line_sha256 = ''")
        migration.fill(old, SimpleNamespace(connection=connection))
        cursor.execute(f"SELECT id, line_sha256 FROM {old.table}")
        assert dict(cursor.fetchall()) == expected
    assert all(len(value) == 64 for value in expected.values())


def test_an_import_keeps_no_query_log_with_debug_on(tmp_path, settings):
    settings.DEBUG = True
    reset_queries()
    result = import_file(write_jsonl(tmp_path / "run.jsonl", [make_record(step_number=1)]))
    assert result.imported == 1
    assert connection.queries == []
    Transcript.objects.count()
    assert len(connection.queries) == 1  # logging itself is back on after the import


def test_the_lines_waiting_for_their_look_up_stay_bounded_in_bytes(tmp_path, monkeypatch):
    """Lines wait in memory a chunk at a time to be looked up; long lines wait fewer at once,
    so a file of long lines cannot hold CHUNK_SIZE of them in memory."""
    monkeypatch.setattr(importer, "PENDING_MAX_BYTES", 10_000)
    sizes: list[int] = []
    real = importer._Scan._take_pending

    def watched(self):
        sizes.append(sum(len(line or b"") for _, line, _ in self.pending))
        return real(self)

    monkeypatch.setattr(importer._Scan, "_take_pending", watched)
    records = [
        make_record(step_number=n, proposal={"worker_reasoning": "x" * 3000}) for n in range(9)
    ]
    result = import_file(write_jsonl(tmp_path / "long.jsonl", records))
    assert result.imported == 9
    assert len(sizes) > 2  # taken several times, not once for the whole file
    assert max(sizes) < 10_000 + 4000  # at most one line over the bound
