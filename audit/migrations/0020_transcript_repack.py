"""The transcripts' table written again, packed, after 0019 took the record's text out of it.

Dropping a column leaves each row where it was: on SQLite ``ALTER TABLE ... DROP COLUMN``
rewrites every row in its own page, so a table of 3.6 KB rows stays one row per page (1.3 rows
per 4 KB page, measured at 200,000 rows) with the space freed inside each page; on PostgreSQL
the dropped values stay in the rows until they are rewritten. Either way scans would read as
many pages as before, and the narrow table would not be narrow. So the table is rewritten once:
``VACUUM`` on SQLite (the whole file: 11 s at 200,000 records; it needs free disk space the
size of the database while it runs), ``VACUUM FULL`` of the table on PostgreSQL (it holds the
table's exclusive lock meanwhile). Neither can run inside a transaction, hence ``atomic``
off; on a new database both take no time. Nothing is changed that a reverse would undo.
"""

from django.db import migrations


def repack(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        schema_editor.execute("VACUUM", params=None)
    elif vendor == "postgresql":
        schema_editor.execute("VACUUM FULL audit_transcript", params=None)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0019_transcript_text"),
    ]

    operations = [migrations.RunPython(repack, migrations.RunPython.noop, elidable=True)]
