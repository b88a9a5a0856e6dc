"""PostgreSQL: compress the record's line and its search text with lz4, not pglz.

Both columns are some 3 KB a record, so PostgreSQL compresses every value (its TOAST threshold
is 2 KB), with pglz unless told otherwise. Measured on 100,000 records of the million-record
database (one run each, twice): writing the lines took 45 µs a record with pglz and 15 µs with
lz4 (the import pays that for both columns), and reading them back through a cursor, as the
export does, 17 µs against 11 µs; lz4 stores them in 16% more space (223 MB against 192 MB).

Only values written from now on are compressed the new way (PostgreSQL does not rewrite the
table for it); an older value stays readable as it is. A server built without lz4 (it is an
option of PostgreSQL's build; the distributions' packages have it) keeps pglz: the migration then
changes nothing and says so. SQLite does not compress: nothing to do there.
"""

from django.db import migrations

COLUMNS = ("raw", "search_text")


def _alter(schema_editor, method: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    alter = ", ".join(f"ALTER COLUMN {column} SET COMPRESSION {method}" for column in COLUMNS)
    # A DO block, so that a server without lz4 (feature_not_supported) keeps its default.
    schema_editor.execute(
        f"""
        DO $$
        BEGIN
            ALTER TABLE audit_transcript_text {alter};
        EXCEPTION WHEN feature_not_supported THEN
            RAISE NOTICE 'audit: this PostgreSQL has no {method}; the record text keeps pglz';
        END
        $$
        """,
        params=None,
    )


def use_lz4(apps, schema_editor) -> None:
    _alter(schema_editor, "lz4")


def use_default(apps, schema_editor) -> None:
    _alter(schema_editor, "default")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0023_final_probe_index"),
    ]

    operations = [migrations.RunPython(use_lz4, use_default)]
