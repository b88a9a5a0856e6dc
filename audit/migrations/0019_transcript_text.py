"""The record's text in a table of its own (``TranscriptText``): the narrow hot table of issue 14.

``raw`` and ``search_text`` move from ``audit_transcript`` to ``audit_transcript_text``, keyed
by the transcript's id (column ``id``), and the full-text index (migration 0010) follows them:

- SQLite: the FTS5 external-content table is made again over the new table (its ``content``
  is part of its definition), with its insert, delete and update triggers there, and rebuilt.
- PostgreSQL: the side table of documents keeps its rows; its triggers move to the new table.
  Their functions read ``id`` and ``search_text`` of the changed rows, which the new table
  names alike, so they stay as they are.

A record is 3.6 KB in the exporter's output, 3.4 KB of it these two columns: on SQLite every
transcript row took a database page of its own, so every scan and look-up of transcripts read
the whole record. ``audit.search`` keeps the index's triggers from here on (``RESTORE``).
"""

import importlib
import re

import django.db.models.deletion
from django.db import migrations, models

TABLE = "audit_transcript_text"
# Migration 0010's index, whose statements name the table they are on.
INDEX = importlib.import_module("audit.migrations.0010_queue_search")


def _on(table: str, statements: list[str]) -> list[str]:
    """``statements`` (0010's, on ``audit_transcript``) on ``table`` instead."""
    return [
        re.sub(r"\b(ON|FROM) audit_transcript\b", rf"\1 {table}", sql).replace(
            "content='audit_transcript'", f"content='{table}'"
        )
        for sql in statements
    ]


CREATE_SQLITE_TRIGGERS = _on(TABLE, INDEX.CREATE_SQLITE_TRIGGERS)
SQLITE_TRIGGERS = INDEX.SQLITE_TRIGGERS
SQLITE_DROP_TRIGGERS = INDEX.SQLITE_DROP_TRIGGERS
SQLITE_REBUILD = INDEX.SQLITE_REBUILD


def _sqlite_index(content: str) -> list[str]:
    """The FTS5 table (0010's, over ``content``'s ``search_text``) and its triggers, rebuilt."""
    return [
        *SQLITE_DROP_TRIGGERS,
        "DROP TABLE IF EXISTS audit_transcript_fts",
        *_on(content, INDEX.SQLITE),
    ]


PG_TRIGGERS = INDEX.PG_TRIGGERS
CREATE_PG_TRIGGERS = _on(TABLE, INDEX.CREATE_PG_TRIGGERS)
PG_REBUILD = _on(TABLE, INDEX.PG_REBUILD)


def _pg_drop_triggers(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name in PG_TRIGGERS]


# What audit.search.restore_index runs when triggers went missing: drop what is left of them,
# create them all, and index every row again.
TRIGGERS = {"sqlite": SQLITE_TRIGGERS, "postgresql": PG_TRIGGERS}
RESTORE = {
    "sqlite": [*SQLITE_DROP_TRIGGERS, *CREATE_SQLITE_TRIGGERS, *SQLITE_REBUILD],
    "postgresql": [*_pg_drop_triggers(TABLE), *CREATE_PG_TRIGGERS, *PG_REBUILD],
}

COPY_FORWARDS = (
    f"INSERT INTO {TABLE} (id, raw, search_text) SELECT id, raw, search_text FROM audit_transcript"
)
COPY_BACKWARDS = (
    f"UPDATE audit_transcript SET raw = x.raw, search_text = x.search_text FROM {TABLE} AS x "
    "WHERE x.id = audit_transcript.id"
)


def forwards(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    statements = [COPY_FORWARDS]
    if vendor == "sqlite":
        statements += _sqlite_index(TABLE)
    elif vendor == "postgresql":
        statements += [*_pg_drop_triggers("audit_transcript"), *CREATE_PG_TRIGGERS]
    for sql in statements:
        schema_editor.execute(sql, params=None)


def backwards(apps, schema_editor) -> None:
    """Back to migration 0018's layout: the text in ``audit_transcript`` (whose columns the
    reversed ``RemoveField``s have just added back), the index over it. Only where no
    transcript is stored: Django adds ``raw`` back as NOT NULL without a default, which
    refuses rows, and giving it one first would make SQLite copy the whole table again."""
    vendor = schema_editor.connection.vendor
    statements = [COPY_BACKWARDS]
    if vendor == "sqlite":
        statements += _sqlite_index("audit_transcript")
    elif vendor == "postgresql":
        statements += [*_pg_drop_triggers(TABLE), *INDEX.CREATE_PG_TRIGGERS]
    for sql in statements:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0018_match_count"),
    ]

    operations = [
        migrations.CreateModel(
            name="TranscriptText",
            fields=[
                (
                    "transcript",
                    models.OneToOneField(
                        db_column="id",
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="text",
                        serialize=False,
                        to="audit.transcript",
                    ),
                ),
                ("raw", models.TextField()),
                ("search_text", models.TextField(blank=True)),
            ],
            options={
                "db_table": "audit_transcript_text",
            },
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
        migrations.RemoveField(
            model_name="transcript",
            name="raw",
        ),
        migrations.RemoveField(
            model_name="transcript",
            name="search_text",
        ),
    ]
