"""Several writers at once on the embedded database must queue, not fail with "locked"."""

import threading

import pytest
from django.db import connection, connections

from audit.importers import import_file
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
