"""PostgreSQL: each search document carries copies of its transcript's queue facet columns
(migration 0025), which the queue's roll-up of a large match reads instead of the transcripts.
The copies must equal the transcripts' columns whatever writes them: imports, verdicts, K
changes, adjudications, bulk updates, text written before its transcript, deletions."""

from __future__ import annotations

import importlib
import random

import pytest
from django.db import connection, transaction

from audit import search
from audit.models import ImportBatch, Transcript, TranscriptText
from tests.factories import import_fixture, import_records, make_record, random_work

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's search documents"),
]

MIGRATION = importlib.import_module("audit.migrations.0025_search_facets")
COLUMNS = [name for name, _ in MIGRATION.FACETS]


def copies() -> dict[int, tuple]:
    """Every document's columns (unfinished batches' too), by id."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {', '.join(COLUMNS)} FROM audit_transcript_search")
        return {row[0]: row[1:] for row in cursor.fetchall()}


def originals() -> dict[int, tuple]:
    """What the copies must be: the columns of every transcript that has text."""
    rows = Transcript.including_unfinished.filter(text__isnull=False).values_list("pk", *COLUMNS)
    return {row[0]: tuple(row[1:]) for row in rows}


def test_the_copies_follow_imports_verdicts_k_changes_and_adjudications(
    auditor, auditor2, adjudicator
):
    for name in ("noisy_s1", "block_s3"):
        import_fixture(name)
    assert copies() == originals() != {}
    random_work(auditor, auditor2, adjudicator, random.Random(3))
    changed = Transcript.objects.exclude(status="unreviewed").count()
    assert changed > 10  # the work changed statuses and queue membership
    assert copies() == originals()


def test_a_bulk_update_a_deletion_and_a_batch_still_importing_keep_them_in_step(tmp_path):
    rows = import_records([make_record(step_number=n) for n in range(6)], tmp_path)
    Transcript.objects.filter(pk__in=[t.pk for t in rows[:4]]).update(
        in_queue=False, task_id="moved", flag_spot_check=True
    )
    Transcript.objects.filter(pk=rows[4].pk).delete()
    assert copies() == originals()
    assert len(copies()) == 5
    assert copies()[rows[0].pk][COLUMNS.index("task_id")] == "moved"
    # An unfinished batch's documents carry its id, which the roll-up leaves out as the
    # transcripts' manager does.
    ImportBatch.objects.filter(pk=rows[5].batch_id).update(complete=False)
    assert copies() == originals()


def test_text_written_before_its_transcript_gets_its_document(tmp_path):
    """In one transaction the text may go first (foreign keys are checked at commit): the
    transcript's insert makes its document then, with its columns."""
    [model] = import_records([make_record()], tmp_path)
    fields = {
        f.attname: getattr(model, f.attname)
        for f in Transcript._meta.concrete_fields
        if not f.primary_key
    }
    fields.update(fingerprint="f" * 64, line_sha256="e" * 64, line_number=99)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        pk = model.pk + 1000
        TranscriptText.objects.create(transcript_id=pk, raw="{}", search_text="a zebra crossing")
        Transcript.including_unfinished.create(pk=pk, **fields)
    assert copies() == originals()
    ids = Transcript.objects.filter(pk__in=search.matching_ids(search.parse("zebra")))
    assert list(ids.values_list("pk", flat=True)) == [pk]


def test_a_missing_trigger_is_restored_with_every_document_made_again(tmp_path):
    rows = import_records([make_record(step_number=n) for n in range(3)], tmp_path)
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER audit_transcript_search_facets ON audit_transcript")
    assert search.missing_triggers() == ["audit_transcript_search_facets"]
    Transcript.objects.filter(pk=rows[0].pk).update(status="confirmed")  # missed by the copies
    assert copies() != originals()
    assert search.restore_index()
    assert search.missing_triggers() == []
    assert copies() == originals()


def test_the_migration_reverses_to_documents_alone_and_back(tmp_path):
    import_records([make_record(step_number=n) for n in range(3)], tmp_path)
    before = copies()
    with connection.schema_editor() as editor:
        MIGRATION.backwards(None, editor)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'audit_transcript_search' ORDER BY ordinal_position"
            )
            assert [name for (name,) in cursor.fetchall()] == ["id", "document"]
        # Migration 0019's triggers and layout: what restore_index checks then.
        assert search.missing_triggers() == []
        MIGRATION.forwards(None, editor)
    assert copies() == before == originals()
    assert search.missing_triggers() == []
