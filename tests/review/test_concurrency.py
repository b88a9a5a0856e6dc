"""Several writers at once on the embedded database must queue, not fail with "locked"."""

import threading

import pytest
from django.db import connection, connections

from audit.ingest.importer import import_file
from audit.models import Transcript
from tests.factories import make_record, write_jsonl


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_from_separate_connections_all_land(tmp_path):
    files = [
        write_jsonl(
            tmp_path / f"w{n}.jsonl",
            [make_record(session_id=f"session_w{n}", step_number=s) for s in range(300)],
        )
        for n in range(6)
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(len(files))

    def work(path):
        try:
            start.wait()
            for _ in range(3):  # repeated: later rounds are all duplicates, still writes
                import_file(path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(path,)) for path in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Transcript.objects.count() == 6 * 300
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"


@pytest.mark.django_db(transaction=True)
def test_import_parses_with_no_transaction_open_and_a_writer_can_commit_meanwhile(
    tmp_path, monkeypatch
):
    """Parsing a large file must not hold the write lock that auditors' verdicts need."""
    import audit.ingest.importer as importers
    from audit.models import ImportBatch

    seen: list[bool] = []
    other_writes: list[str] = []
    real_extract = importers.extract

    def watching_extract(record, **kwargs):
        seen.append(connection.in_atomic_block)
        if len(seen) == 50:  # mid-scan, another connection writes and must not wait

            def write():
                try:
                    with connections["default"].cursor() as cursor:
                        cursor.execute("SELECT 1")
                    ImportBatch.objects.create(file_name="meanwhile", sha256="")
                    other_writes.append("ok")
                except Exception as exc:  # noqa: BLE001 - reported by the assertion
                    other_writes.append(repr(exc))
                finally:
                    connections.close_all()

            thread = threading.Thread(target=write)
            thread.start()
            thread.join(timeout=10)
        return real_extract(record, **kwargs)

    monkeypatch.setattr(importers, "extract", watching_extract)
    path = write_jsonl(tmp_path / "big.jsonl", [make_record(step_number=n) for n in range(100)])
    result = import_file(path)
    assert result.imported == 100
    assert seen and not any(seen)
    assert other_writes == ["ok"]


@pytest.mark.django_db(transaction=True)
def test_the_same_file_imported_concurrently_lands_once(tmp_path):
    path = write_jsonl(tmp_path / "same.jsonl", [make_record(step_number=s) for s in range(1500)])
    results: list = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def work():
        try:
            start.wait()
            results.append(import_file(path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.imported for r in results) == [0, 0, 1500]
    assert Transcript.objects.count() == 1500
