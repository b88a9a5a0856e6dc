"""PostgreSQL: autovacuum the transcripts' table once 1% of its rows changed, not 20%.

Every verdict rewrites its transcript's row (status, final labels, version), and a rewritten
row's page is no longer all-visible: an index-only scan over it must read the table too. With
the defaults, autovacuum waits until a fifth of the rows changed, so a million imported records
with 50,000 reviewed (5%) never get vacuumed, while the planner, which counts the pages that
were all-visible when the table was last vacuumed, still plans the queue's counts as index-only
scans over ``tr_next``: they fetched 480,000 rows from the table. One ``VACUUM`` took the queue
page from 357 ms to some 200 ms there (the README's PostgreSQL section). At 1% a vacuum runs
after some 10,000 verdicts at a million records, and it only reads the pages changed since the
last. SQLite has no autovacuum of this kind and its index scans do not read the table: nothing
to do there.
"""

from django.db import migrations

OPTIONS = "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01"
NAMES = "autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor"


def tune(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE audit_transcript SET ({OPTIONS})", params=None)


def untune(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE audit_transcript RESET ({NAMES})", params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0020_transcript_repack"),
    ]

    operations = [migrations.RunPython(tune, untune)]
