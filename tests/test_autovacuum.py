"""PostgreSQL autovacuums the transcripts' table after 1% of its rows changed (migration 0021):
verdicts rewrite rows, and the queue's index-only scans read the table for every row changed
since the last vacuum."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's autovacuum"),
]

MIGRATION = importlib.import_module("audit.migrations.0021_transcript_autovacuum")


def options() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'audit_transcript'")
        (found,) = cursor.fetchone()
    return set(found or ())


def test_the_transcripts_table_is_vacuumed_and_analyzed_after_one_percent_changed():
    assert options() == {
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_analyze_scale_factor=0.01",
    }


def test_the_migration_reverses_to_the_defaults():
    with connection.schema_editor() as editor:
        MIGRATION.untune(None, editor)
        assert options() == set()
        MIGRATION.tune(None, editor)
    assert len(options()) == 2
