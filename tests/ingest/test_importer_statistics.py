"""PostgreSQL: an import that grows the transcripts by a tenth or more analyzes them at once, so
the claim of the next item is planned for the table as it is (``importer._refresh_statistics``).
"""

from __future__ import annotations

import pytest
from django.db import connection

from tests.factories import import_records, make_record

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner statistics"),
]


def estimated_rows(table: str = "audit_transcript") -> float:
    # pg_class.reltuples is what ANALYZE last counted (-1: never), visible in this transaction.
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        return cursor.fetchone()[0]


def records(first: int, count: int) -> list[dict]:
    return [make_record(session_id="s_stats", step_number=n) for n in range(first, first + count)]


def test_an_import_that_grows_the_table_by_a_tenth_analyzes_it(tmp_path):
    # From a known start whatever earlier tests committed: the empty table, analyzed.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_transcript")
        cursor.execute("ANALYZE audit_transcript_text")
    assert estimated_rows() == estimated_rows("audit_transcript_text") == 0
    import_records(records(0, 40), tmp_path, name="a.jsonl")
    # The record's text too (the export joins it).
    assert estimated_rows() == estimated_rows("audit_transcript_text") == 40
    # 3 more is under a tenth of 40: left to autovacuum.
    import_records(records(40, 3), tmp_path, name="b.jsonl")
    assert estimated_rows() == 40
    import_records(records(43, 5), tmp_path, name="c.jsonl")
    assert estimated_rows() == estimated_rows("audit_transcript_text") == 48
