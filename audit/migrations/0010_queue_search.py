"""The queue's full-text index over ``audit_transcript.search_text`` (``audit.search``).

Kept in step by the database itself, with triggers, because the importer writes with a plain
``INSERT`` of the model's columns: nothing here is a model field, so nothing changes for it.

- SQLite: an FTS5 external-content table (it stores the index only, reading text from
  ``audit_transcript``), with insert, delete and update triggers.
- PostgreSQL: a side table of ``tsvector`` documents with a GIN index; statement-level insert
  and delete triggers (one ``INSERT ... SELECT`` per import chunk, not one call per row), a
  row-level update trigger that only fires when ``search_text`` itself changes (a verdict's
  save sets it to the same value), and a truncate trigger (the test runner's flush).

Existing rows are indexed here. On SQLite, a later migration that makes Django remake
``audit_transcript`` (an ``AddField`` with a default, most ``AlterField``s) drops the table's
triggers with the old table: ``audit.search.restore_index`` (on ``post_migrate``) puts them
back and rebuilds the index, and ``tests/review/test_queue_search.py`` checks that they exist
after every migration.
"""

from django.db import migrations

SQLITE_TOKENIZER = "unicode61 remove_diacritics 0"

CREATE_SQLITE_TRIGGERS = [
    """CREATE TRIGGER audit_transcript_fts_insert AFTER INSERT ON audit_transcript BEGIN
    INSERT INTO audit_transcript_fts (rowid, search_text) VALUES (new.id, new.search_text);
END""",
    """CREATE TRIGGER audit_transcript_fts_delete AFTER DELETE ON audit_transcript BEGIN
    INSERT INTO audit_transcript_fts (audit_transcript_fts, rowid, search_text)
    VALUES ('delete', old.id, old.search_text);
END""",
    """CREATE TRIGGER audit_transcript_fts_update AFTER UPDATE OF id, search_text ON audit_transcript
WHEN old.search_text IS NOT new.search_text OR old.id IS NOT new.id BEGIN
    INSERT INTO audit_transcript_fts (audit_transcript_fts, rowid, search_text)
    VALUES ('delete', old.id, old.search_text);
    INSERT INTO audit_transcript_fts (rowid, search_text) VALUES (new.id, new.search_text);
END""",
]

SQLITE_TRIGGERS = (
    "audit_transcript_fts_insert",
    "audit_transcript_fts_delete",
    "audit_transcript_fts_update",
)
SQLITE_REBUILD = ["INSERT INTO audit_transcript_fts (audit_transcript_fts) VALUES ('rebuild')"]

SQLITE = [
    f"""CREATE VIRTUAL TABLE audit_transcript_fts USING fts5(
        search_text, content='audit_transcript', content_rowid='id',
        tokenize='{SQLITE_TOKENIZER}'
    )""",
    *CREATE_SQLITE_TRIGGERS,
    *SQLITE_REBUILD,
]
SQLITE_DROP_TRIGGERS = [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS]
SQLITE_REVERSE = [*SQLITE_DROP_TRIGGERS, "DROP TABLE IF EXISTS audit_transcript_fts"]

POSTGRESQL = [
    # The words FTS5 sees: runs of letters and digits (the parser would otherwise keep hosts,
    # paths and hyphenated words whole). IMMUTABLE: the text search configuration is named.
    r"""CREATE FUNCTION audit_search_document(text) RETURNS tsvector
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT to_tsvector('simple'::regconfig,
                           regexp_replace(coalesce($1, ''), '[^[:alnum:]]+', ' ', 'g'))
    $$""",
    # Serves audit.search's matching_ids and Match (document @@ query) and its ranking.
    """CREATE TABLE audit_transcript_search (
        id bigint PRIMARY KEY,
        document tsvector NOT NULL
    )""",
    "CREATE INDEX audit_transcript_search_gin ON audit_transcript_search USING gin (document)",
    """CREATE FUNCTION audit_transcript_search_inserted() RETURNS trigger
        LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO audit_transcript_search (id, document)
        SELECT id, audit_search_document(search_text) FROM inserted
        ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION audit_transcript_search_updated() RETURNS trigger
        LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM audit_transcript_search WHERE id = OLD.id;
        INSERT INTO audit_transcript_search (id, document)
        VALUES (NEW.id, audit_search_document(NEW.search_text))
        ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION audit_transcript_search_deleted() RETURNS trigger
        LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM audit_transcript_search s USING deleted d WHERE s.id = d.id;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION audit_transcript_search_truncated() RETURNS trigger
        LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE audit_transcript_search;
        RETURN NULL;
    END $$""",
    *(
        CREATE_PG_TRIGGERS := [
            """CREATE TRIGGER audit_transcript_search_insert AFTER INSERT ON audit_transcript
        REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
        EXECUTE FUNCTION audit_transcript_search_inserted()""",
            """CREATE TRIGGER audit_transcript_search_update AFTER UPDATE OF id, search_text
        ON audit_transcript FOR EACH ROW
        WHEN (OLD.search_text IS DISTINCT FROM NEW.search_text OR OLD.id IS DISTINCT FROM NEW.id)
        EXECUTE FUNCTION audit_transcript_search_updated()""",
            """CREATE TRIGGER audit_transcript_search_delete AFTER DELETE ON audit_transcript
        REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
        EXECUTE FUNCTION audit_transcript_search_deleted()""",
            """CREATE TRIGGER audit_transcript_search_truncate AFTER TRUNCATE ON audit_transcript
        FOR EACH STATEMENT EXECUTE FUNCTION audit_transcript_search_truncated()""",
        ]
    ),
    *(
        PG_REBUILD := [
            "TRUNCATE audit_transcript_search",
            """INSERT INTO audit_transcript_search (id, document)
        SELECT id, audit_search_document(search_text) FROM audit_transcript""",
            "ANALYZE audit_transcript_search",
        ]
    ),
]
PG_TRIGGERS = (
    "audit_transcript_search_insert",
    "audit_transcript_search_update",
    "audit_transcript_search_delete",
    "audit_transcript_search_truncate",
)
PG_DROP_TRIGGERS = [f"DROP TRIGGER IF EXISTS {name} ON audit_transcript" for name in PG_TRIGGERS]
POSTGRESQL_REVERSE = [
    *PG_DROP_TRIGGERS,
    "DROP TABLE IF EXISTS audit_transcript_search",
    "DROP FUNCTION IF EXISTS audit_transcript_search_inserted()",
    "DROP FUNCTION IF EXISTS audit_transcript_search_updated()",
    "DROP FUNCTION IF EXISTS audit_transcript_search_deleted()",
    "DROP FUNCTION IF EXISTS audit_transcript_search_truncated()",
    "DROP FUNCTION IF EXISTS audit_search_document(text)",
]

STATEMENTS = {"sqlite": (SQLITE, SQLITE_REVERSE), "postgresql": (POSTGRESQL, POSTGRESQL_REVERSE)}
# What audit.search.restore_index runs when triggers went missing: drop what is left of them,
# create them all, and index every row again.
TRIGGERS = {"sqlite": SQLITE_TRIGGERS, "postgresql": PG_TRIGGERS}
RESTORE = {
    "sqlite": [*SQLITE_DROP_TRIGGERS, *CREATE_SQLITE_TRIGGERS, *SQLITE_REBUILD],
    "postgresql": [*PG_DROP_TRIGGERS, *CREATE_PG_TRIGGERS, *PG_REBUILD],
}


def _run(schema_editor, index: int) -> None:
    statements = STATEMENTS.get(schema_editor.connection.vendor)
    if statements is None:
        return  # another database: the queue's search needs one of these two
    for sql in statements[index]:
        schema_editor.execute(sql, params=None)


def forwards(apps, schema_editor) -> None:
    _run(schema_editor, 0)


def backwards(apps, schema_editor) -> None:
    _run(schema_editor, 1)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0009_rollup"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
