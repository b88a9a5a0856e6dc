"""PostgreSQL compresses the record's line and search text with lz4 (migration 0024): writing
and reading them back cost a third to a half of what pglz, the default, costs."""

from __future__ import annotations

import importlib

import pytest
from django.db import DatabaseError, connection, transaction

from tests.factories import import_records, make_record

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's TOAST"),
]

MIGRATION = importlib.import_module("audit.migrations.0024_text_lz4")


def has_lz4() -> bool:
    """Whether this server was built with lz4: its setting then accepts the value."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL default_toast_compression = 'lz4'")
    except DatabaseError:
        return False
    return True


def methods() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, attcompression FROM pg_attribute WHERE attrelid = "
            "'audit_transcript_text'::regclass AND attname IN ('raw', 'search_text')"
        )
        return dict(cursor.fetchall())


def test_the_record_text_columns_compress_with_lz4_where_the_server_has_it():
    expected = "l" if has_lz4() else ""  # "" is the server's default, pglz
    assert methods() == {"raw": expected, "search_text": expected}


def test_an_imported_line_is_stored_compressed_with_lz4(tmp_path):
    # Past the 2 KB TOAST threshold, and compressible: stored compressed.
    [t] = import_records(
        [make_record(proposal={"worker_reasoning": "retry the job. " * 400})], tmp_path
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_compression(raw), pg_column_compression(search_text) "
            "FROM audit_transcript_text WHERE id = %s",
            [t.pk],
        )
        stored = cursor.fetchone()
    assert stored == (("lz4", "lz4") if has_lz4() else ("pglz", "pglz"))


def test_the_migration_reverses_to_the_default():
    with connection.schema_editor() as editor:
        MIGRATION.use_default(None, editor)
        assert methods() == {"raw": "", "search_text": ""}
        MIGRATION.use_lz4(None, editor)
    test_the_record_text_columns_compress_with_lz4_where_the_server_has_it()


def test_the_import_floor_compresses_its_text_as_the_app_does():
    from audit.bench import imports

    imports._floor_tables()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, attcompression FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attname IN ('raw', 'search_text')",
            [imports.FLOOR_TEXT_TABLE],
        )
        assert dict(cursor.fetchall()) == methods()
