"""On SQLite the importer's chunks count their rows into the rollup and add them to the full-text
index with one set statement each, the per-row INSERT triggers lifted for the chunk's insert
(``audit.triggers.insert_trigger_replaced``). What any write path gets from the triggers, an
import must get too, and the triggers must be back afterwards, even after a failed chunk."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest
from django.db import DatabaseError, connection

from audit import rollup, search, triggers
from audit.ingest import importer
from audit.ingest.importer import import_file
from audit.models import ImportBatch, Transcript, TranscriptText
from audit.review import queue as queues
from audit.review.queue import QueueFilters
from tests.factories import make_misbehavior, write_jsonl

pytestmark = pytest.mark.django_db

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]


def records(offset: int = 0) -> list[dict[str, Any]]:
    return [
        make_misbehavior(
            decision="APPROVE",
            session_id="s_bulk",
            step_number=offset + n,
            task_id=f"task-{n % 3}",
            proposal={"worker_reasoning": f"checking {word}word{offset + n} before the restart"},
        )
        for n, word in enumerate(WORDS)
    ]


def found(q: str) -> set[int]:
    f = QueueFilters(q=q, status="any")
    page = queues.queue_page(
        f, match=queues.compute_match(f), annotations={}, fields=("id", "step_number")
    )
    return {t.step_number for t in page.rows}


def all_triggers_present() -> bool:
    return rollup.missing_triggers() == [] and search.missing_triggers() == []


def test_an_import_of_several_chunks_is_counted_and_indexed_like_any_write(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_SIZE", 4)  # 9 records: 3 chunks
    result = import_file(write_jsonl(tmp_path / "a.jsonl", records()))
    assert not result.failed and result.imported == len(WORDS)
    assert all_triggers_present()
    assert rollup.stored() == rollup.recount()
    for n, word in enumerate(WORDS):
        assert found(f"{word}word{n}") == {n}, word
    # A second import adds to the combinations the first one made.
    result = import_file(write_jsonl(tmp_path / "b.jsonl", records(offset=100)))
    assert result.imported == len(WORDS)
    assert rollup.stored() == rollup.recount()
    assert found("foxtrotword105") == {105}
    assert found("restart") == {*range(len(WORDS)), *range(100, 100 + len(WORDS))}
    # Rows written after the import, outside it, are still kept by the triggers.
    t = Transcript.objects.get(step_number=3)
    TranscriptText.objects.filter(pk=t.pk).update(search_text="a zebra crossing")
    Transcript.objects.filter(pk=t.pk).update(task_id="other")
    assert found("zebra") == {3}
    assert rollup.stored() == rollup.recount()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL's triggers are per statement")
def test_a_chunk_that_fails_after_its_insert_leaves_the_triggers_in_place(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_SIZE", 4)
    real = triggers.insert_trigger_replaced
    calls = {"n": 0}

    @contextmanager
    def failing_on_the_second_chunk(cursor, **kwargs):
        with real(cursor, **kwargs):
            yield
        if kwargs["trigger"] == "audit_rollup_insert":
            calls["n"] += 1
            if calls["n"] == 2:
                raise DatabaseError("disk I/O error (injected)")

    monkeypatch.setattr(triggers, "insert_trigger_replaced", failing_on_the_second_chunk)
    with pytest.raises(DatabaseError, match="injected"):
        import_file(write_jsonl(tmp_path / "a.jsonl", records()))
    assert all_triggers_present()
    # The failed chunk's rows are gone with its transaction; what was committed before is
    # counted and indexed, and the removal of the unfinished batch keeps both in step.
    assert rollup.stored() == rollup.recount()
    assert not ImportBatch.objects.exists()
    monkeypatch.setattr(triggers, "insert_trigger_replaced", real)
    assert import_file(write_jsonl(tmp_path / "a.jsonl", records())).imported == len(WORDS)
    assert rollup.stored() == rollup.recount()
    assert found("echoword4") == {4}


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's row triggers only")
def test_a_missing_trigger_stops_the_import_rather_than_letting_counts_drift(tmp_path, monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER audit_rollup_insert")
    with pytest.raises(DatabaseError, match="no such trigger"):
        import_file(write_jsonl(tmp_path / "a.jsonl", records()))
    assert not Transcript.including_unfinished.exists()
    assert rollup.restore_triggers() is True
    assert import_file(write_jsonl(tmp_path / "a.jsonl", records())).imported == len(WORDS)
    assert rollup.stored() == rollup.recount()
