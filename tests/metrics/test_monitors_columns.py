"""The monitor signals as columns: filled on import (``records.signal_columns``), back-filled for
stored rows by migration 0011 with the same values, and read through the partial index."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import pytest
from django.db import connection

from audit.ingest import records as ingest
from audit.metrics import monitors
from audit.models import Status, Transcript
from tests.factories import (
    FIXTURES,
    import_fixture,
    import_records,
    make_misbehavior,
    make_record,
    transcripts_as_before_0019,
)

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("audit.migrations.0011_monitor_signals")
COLUMNS = MIGRATION.COLUMNS


def _values(transcript):
    return {column: getattr(transcript, column) for column in COLUMNS}


def test_import_fills_the_signal_columns_and_null_for_what_is_missing(tmp_path):
    full, bare = import_records(
        [
            make_misbehavior(
                decision="redirect",
                cot_analysis={
                    "reasoning_quality": 0.25,
                    "faithfulness_score": 1,
                    "is_suspicious": False,
                },
                debate_result={
                    "final_decision": "approve",
                    "prosecutor_strength": 0.4,
                    "advocate_strength": 0.6,
                    "decision_confidence": 0.2,
                },
            ),  # fmt: skip
            make_record(
                decision={"type": None},
                cot_analysis={"reasoning_quality": "high", "faithfulness_score": float("nan")},
                debate_result={"decision_confidence": True},
                step_number=2,
            ),
        ],
        tmp_path,
    )
    assert _values(full) == {
        "decision_stops": True,  # REDIRECT stops the action
        "debate_stops": False,  # the debate approved
        "reasoning_quality": 0.25,
        "faithfulness_score": 1.0,
        "cot_is_suspicious": False,
        "prosecutor_strength": 0.4,
        "advocate_strength": 0.6,
        "decision_confidence": 0.2,
    }
    # No decision, text, NaN and a boolean are no numbers; an absent flag is null, not false.
    assert _values(bare) == dict.fromkeys(COLUMNS)
    assert bare.is_suspicious is False


def test_the_migration_back_fills_what_the_import_fills():
    for name in FIXTURES:
        import_fixture(name)
    imported = {t.pk: _values(t) for t in Transcript.objects.all()}
    assert any(v["decision_confidence"] is not None for v in imported.values())
    assert any(v["cot_is_suspicious"] is False for v in imported.values())
    with transcripts_as_before_0019() as old, connection.cursor() as cursor:
        cursor.execute(f"UPDATE {old.table} SET " + ", ".join(f"{c} = NULL" for c in COLUMNS))
        MIGRATION.fill(old, SimpleNamespace(connection=connection))
        cursor.execute(f"SELECT id, {', '.join(COLUMNS)} FROM {old.table}")
        filled = {pk: dict(zip(COLUMNS, values, strict=True)) for pk, *values in cursor}
    # SQLite has no booleans: its 0 and 1 compare equal to False and True.
    assert filled == imported


def test_the_migration_reads_each_stored_record_as_extract_does():
    import_fixture("noisy_s1")
    for transcript in Transcript.objects.all():
        record = ingest.parse_line(transcript.text.raw)
        columns = ingest.extract(record, spot_check_rate=0)
        expected = tuple(columns[column] for column in COLUMNS)
        got = MIGRATION.signal_values(
            transcript.text.raw, transcript.decision_type, transcript.debate_decision
        )
        assert got == expected, transcript.pk
    assert MIGRATION.signal_values("{not json", "", "") == (None,) * len(COLUMNS)
    assert MIGRATION.signal_values(json.dumps({"cot_analysis": [1]}), "APPROVE", "BLOCK")[:2] == (
        False,
        True,
    )


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's plan")
def test_the_settled_read_is_served_by_the_partial_covering_index():
    import_fixture("rule_s0")
    Transcript.objects.filter(pk__in=Transcript.objects.values("pk")[:10]).update(
        status=Status.CONFIRMED
    )
    rows = monitors.settled_rows(Transcript.objects.all())
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "COVERING INDEX tr_monitor_signals" in plan, plan
