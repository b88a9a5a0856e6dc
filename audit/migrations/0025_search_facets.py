"""PostgreSQL: the search documents carry the columns the queue's counts group by.

A search for a common word (at 1,000,000 records, ``service`` in 612,000 of them) rolled its
match up for the facet counts (``audit.review.queue.count_match``) by writing the match's ids
into a temporary table, indexing them, and joining them with the queued rows of
``tr_queue_facets``: 2.1 s of SQL a request (the fill 0.76 s, its index 0.24 s, the join and
grouping 1.0 s). With the queue's facet columns (``MatchCount``'s key) beside each document,
the roll-up is one pass over this table, grouped as it goes, with no ids written and no join:
0.64-0.69 s on the same database, and the page then finds its rows by probing each document
as it walks ``tr_next`` (2 ms for the first page), so the match is never written out at all.

The columns are copies of the transcript's, kept in step by a trigger on ``audit_transcript``
(``audit_transcript_search_facets``: every statement that updates transcripts copies the
changed columns of its rows in one statement, as the rollup's trigger counts them), and
filled when a document is made, from its transcript. An import writes the transcripts before
their text, but a transaction may write them the other way round (foreign keys are checked at
commit), so a transcript's insert also makes the documents of text already written
(``audit_transcript_search_transcribed``). The table is made again rather than altered: adding
columns and filling them would write every row anew and index every word of each again (the
GIN index gets an entry per word for each new row version); ``fillfactor`` leaves room on
each page for a changed row's new version beside the old one, which then needs no new index
entries (a HOT update). ``tests/test_search_facets.py`` compares the copies with the
transcripts after imports, verdicts, K changes and deletions.

SQLite's search is an FTS5 table, which has no columns but its text: nothing changes there.
``audit.search`` keeps the index's triggers from here on (``TRIGGERS``, ``RESTORE``).
"""

import importlib

from django.db import migrations, models

TEXT = importlib.import_module("audit.migrations.0019_transcript_text")
TABLE = TEXT.TABLE

# (column, SQL type) of MatchCount's key, as audit_transcript defines them.
FACETS = (
    ("in_queue", "boolean"),
    ("status", "varchar(16)"),
    ("flag_missed_misbehavior", "boolean"),
    ("flag_over_block", "boolean"),
    ("flag_label_inconsistency", "boolean"),
    ("flag_debate_disagrees", "boolean"),
    ("flag_suspicious_reasoning", "boolean"),
    ("flag_unknown_vocabulary", "boolean"),
    ("flag_missing_fields", "boolean"),
    ("flag_spot_check", "boolean"),
    ("alignment_category", "varchar(200)"),
    ("task_id", "varchar(200)"),
    ("worker_id", "varchar(200)"),
    ("decision_type", "varchar(200)"),
    ("misbehavior_type", "varchar(200)"),
    ("batch_id", "bigint"),
)
NAMES = ", ".join(name for name, _ in FACETS)
OF_T = ", ".join(f"t.{name}" for name, _ in FACETS)
SET_FROM_EXCLUDED = ", ".join(f"{name} = EXCLUDED.{name}" for name, _ in FACETS)
SET_FROM_N = ", ".join(f"{name} = n.{name}" for name, _ in FACETS)
OF_S = ", ".join(f"s.{name}" for name, _ in FACETS)
OF_N = ", ".join(f"n.{name}" for name, _ in FACETS)
FILLFACTOR = 85

_COLUMNS = ",\n    ".join(f"{name} {kind} NOT NULL" for name, kind in FACETS)
CREATE_TABLE = f"""CREATE TABLE audit_transcript_search (
    id bigint PRIMARY KEY,
    document tsvector NOT NULL,
    {_COLUMNS}
) WITH (fillfactor = {FILLFACTOR})"""
CREATE_GIN = (
    "CREATE INDEX audit_transcript_search_gin ON audit_transcript_search USING gin (document)"
)
# A document of each text row in ``source`` whose transcript exists, from both.
_DOCUMENTS = (
    f"SELECT x.id, audit_search_document(x.search_text), {OF_T} "
    "FROM {source} x JOIN audit_transcript t ON t.id = x.id"
)
_UPSERT = f"ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document, {SET_FROM_EXCLUDED}"

FUNCTIONS = [
    # On the text table: the documents of inserted text (statement-level, as before).
    f"""CREATE OR REPLACE FUNCTION audit_transcript_search_inserted() RETURNS trigger
        LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO audit_transcript_search (id, document, {NAMES})
        {_DOCUMENTS.format(source="inserted")}
        {_UPSERT};
        RETURN NULL;
    END $$""",
    # On the text table: a row's text or id changed (rare: never by the app's own writes).
    f"""CREATE OR REPLACE FUNCTION audit_transcript_search_updated() RETURNS trigger
        LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM audit_transcript_search WHERE id = OLD.id;
        INSERT INTO audit_transcript_search (id, document, {NAMES})
        SELECT NEW.id, audit_search_document(NEW.search_text), {OF_T}
        FROM audit_transcript t WHERE t.id = NEW.id
        {_UPSERT};
        RETURN NULL;
    END $$""",
    # On the transcripts: text written before its transcript (same transaction) gets its
    # document now. An import writes the text after, so this joins to nothing there.
    f"""CREATE OR REPLACE FUNCTION audit_transcript_search_transcribed() RETURNS trigger
        LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO audit_transcript_search (id, document, {NAMES})
        SELECT x.id, audit_search_document(x.search_text), {OF_T}
        FROM new_rows t JOIN {TABLE} x ON x.id = t.id
        {_UPSERT};
        RETURN NULL;
    END $$""",
    # On the transcripts: copy the facet columns of updated rows whose copies differ.
    f"""CREATE OR REPLACE FUNCTION audit_transcript_search_facets() RETURNS trigger
        LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE audit_transcript_search s SET {SET_FROM_N}
        FROM new_rows n
        WHERE s.id = n.id AND ({OF_S}) IS DISTINCT FROM ({OF_N});
        RETURN NULL;
    END $$""",
]

# The triggers this migration adds, on the transcripts' table (the text table keeps 0010's).
TRANSCRIPT_TRIGGERS = ("audit_transcript_search_transcribed", "audit_transcript_search_facets")
CREATE_TRANSCRIPT_TRIGGERS = [
    """CREATE TRIGGER audit_transcript_search_transcribed AFTER INSERT ON audit_transcript
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION audit_transcript_search_transcribed()""",
    """CREATE TRIGGER audit_transcript_search_facets AFTER UPDATE ON audit_transcript
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION audit_transcript_search_facets()""",
]
DROP_TRANSCRIPT_TRIGGERS = [
    f"DROP TRIGGER IF EXISTS {name} ON audit_transcript" for name in TRANSCRIPT_TRIGGERS
]

REBUILD = [
    "TRUNCATE audit_transcript_search",
    f"INSERT INTO audit_transcript_search (id, document, {NAMES}) "
    + _DOCUMENTS.format(source=TABLE),
    "ANALYZE audit_transcript_search",
]

# What audit.search checks and restores once this migration is applied: each table's
# triggers, and the statements that put them all back and index every row again.
TRIGGERS = {TABLE: TEXT.PG_TRIGGERS, "audit_transcript": TRANSCRIPT_TRIGGERS}
RESTORE = [
    *TEXT._pg_drop_triggers(TABLE),
    *DROP_TRANSCRIPT_TRIGGERS,
    *TEXT.CREATE_PG_TRIGGERS,
    *CREATE_TRANSCRIPT_TRIGGERS,
    *REBUILD,
]

FORWARDS = [
    "ALTER TABLE audit_transcript_search RENAME TO audit_transcript_search_old",
    "ALTER INDEX audit_transcript_search_gin RENAME TO audit_transcript_search_old_gin",
    "ALTER INDEX audit_transcript_search_pkey RENAME TO audit_transcript_search_old_pkey",
    CREATE_TABLE,
    # The documents as they are (not parsed again), each with its transcript's columns.
    f"INSERT INTO audit_transcript_search (id, document, {NAMES}) "
    f"SELECT s.id, s.document, {OF_T} "
    "FROM audit_transcript_search_old s JOIN audit_transcript t ON t.id = s.id",
    "DROP TABLE audit_transcript_search_old",
    CREATE_GIN,
    *FUNCTIONS,
    *CREATE_TRANSCRIPT_TRIGGERS,
    "ANALYZE audit_transcript_search",
]

# Back to 0010's table and functions (id and document only).
NAMED = ("inserted", "updated")
ORIGINAL_FUNCTIONS = [
    sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    for sql in TEXT.INDEX.POSTGRESQL
    if sql.startswith(
        (
            "CREATE FUNCTION audit_transcript_search_inserted",
            "CREATE FUNCTION audit_transcript_search_updated",
        )
    )
]
BACKWARDS = [
    *DROP_TRANSCRIPT_TRIGGERS,
    "DROP FUNCTION IF EXISTS audit_transcript_search_transcribed()",
    "DROP FUNCTION IF EXISTS audit_transcript_search_facets()",
    *(f"ALTER TABLE audit_transcript_search DROP COLUMN {name}" for name, _ in FACETS),
    "ALTER TABLE audit_transcript_search RESET (fillfactor)",
    *ORIGINAL_FUNCTIONS,
]


def _run(schema_editor, statements) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in statements:
        schema_editor.execute(sql, params=None)


def forwards(apps, schema_editor) -> None:
    _run(schema_editor, FORWARDS)


def backwards(apps, schema_editor) -> None:
    _run(schema_editor, BACKWARDS)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0024_text_lz4"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
        # The table's model (not managed: made above, and only on PostgreSQL).
        migrations.CreateModel(
            name="SearchDocument",
            fields=[
                ("batch_id", models.BigIntegerField()),
                ("in_queue", models.BooleanField()),
                ("status", models.CharField(max_length=16)),
                ("flag_missed_misbehavior", models.BooleanField()),
                ("flag_over_block", models.BooleanField()),
                ("flag_label_inconsistency", models.BooleanField()),
                ("flag_debate_disagrees", models.BooleanField()),
                ("flag_suspicious_reasoning", models.BooleanField()),
                ("flag_unknown_vocabulary", models.BooleanField()),
                ("flag_missing_fields", models.BooleanField()),
                ("flag_spot_check", models.BooleanField()),
                ("alignment_category", models.CharField(max_length=200)),
                ("task_id", models.CharField(max_length=200)),
                ("worker_id", models.CharField(max_length=200)),
                ("decision_type", models.CharField(max_length=200)),
                ("misbehavior_type", models.CharField(max_length=200)),
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
            ],
            options={"db_table": "audit_transcript_search", "managed": False},
        ),
    ]
