"""PostgreSQL: the rollup's counts updated in place (heap-only tuples), so the table stays the
size of its rows (issue 14).

Every figure of the dashboard and every facet count of the queue reads the whole rollup (some
10,000 rows at a million records). Migration 0009 had its triggers delete the combinations
left with none through a partial index on ``transcripts = 0``; an index that names the count,
even in its condition, keeps PostgreSQL from updating a row within its page (a HOT update), so
each change of a count wrote a new row version elsewhere and a new entry in every index. An
import changes most combinations once per chunk, faster than autovacuum reclaims them: after a
million records the table took 6.2 MB for 2.6 MB of rows, and each scan of it took twice as
long as a scan of a compact copy (11.5 against 6.2 ms, in one interleaved run). Here the
triggers delete the combinations they emptied by id, the index goes, and the table leaves 30%
of each page free for the new versions (``fillfactor``), then is rewritten once (``CLUSTER``)
to drop the space it had taken. Simulated on a copy, 200,000 count changes in 60 transactions
grew the table by 10% with all of them in place, where the old table grew 2.7 times.

SQLite changes a row in place anyway and finds an emptied combination by its key: nothing to do
there. The SQL of 0009 stays as it was (it means the same forever); this one derives its
functions from it, each change of the text asserted, and ``audit.rollup`` installs these when
it rebuilds the rollup.
"""

import importlib
from typing import Any

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

ROLLUP = importlib.import_module("audit.migrations.0009_rollup")
# What ``audit.rollup`` reads of the rollup's SQL, the same as 0009's.
COLUMNS = ROLLUP.COLUMNS
SQLITE_TRIGGERS = ROLLUP.SQLITE_TRIGGERS
_key = ROLLUP._key
_sqlite_statements = ROLLUP._sqlite_statements

FILLFACTOR = 70
EMPTY_INDEX = "audit_rollup_empty"

# 0009's decrement, then what this migration makes of it: the update returns the rows it
# changed, and the delete takes those of them left with none.
_CHANGES = (
    (
        "DECLARE\n    wanted bigint;\n    found bigint;\n",
        "DECLARE\n    wanted bigint;\n    found bigint;\n    emptied bigint[];\n",
    ),
    (
        "\n        UPDATE audit_rollup SET transcripts = audit_rollup.transcripts + locked.n"
        "\n        FROM locked WHERE audit_rollup.id = locked.id;"
        "\n        GET DIAGNOSTICS found = ROW_COUNT;",
        ", changed AS ("
        "\n            UPDATE audit_rollup SET transcripts = audit_rollup.transcripts + locked.n"
        "\n            FROM locked WHERE audit_rollup.id = locked.id"
        "\n            RETURNING audit_rollup.id, audit_rollup.transcripts"
        "\n        )"
        "\n        SELECT count(*), array_agg(id) FILTER (WHERE transcripts = 0)"
        "\n        INTO found, emptied FROM changed;",
    ),
    (
        "DELETE FROM audit_rollup WHERE transcripts = 0;",
        "DELETE FROM audit_rollup WHERE id = ANY (emptied);",
    ),
)


def _is_function(statement: str) -> bool:
    return statement.lstrip().startswith("CREATE FUNCTION")


def _in_place(function: str) -> str:
    """One of 0009's trigger functions with this migration's changes (each found once where
    the function decrements; a function that only adds has none of them)."""
    if "DELETE FROM audit_rollup" not in function:
        return function
    for old, new in _CHANGES:
        if function.count(old) != 1:
            raise AssertionError(f"0009's trigger function no longer reads {old!r}")
        function = function.replace(old, new)
    return function


def pg_statements() -> list[str]:
    """0009's PostgreSQL statements with the functions updating in place and no index on the
    count: the functions, then the triggers."""
    return [
        _in_place(statement)
        for statement in ROLLUP._pg_statements()
        if EMPTY_INDEX not in statement
    ]


def install(connection: Any) -> None:
    """As 0009's ``install`` (the rollup filled from the rows, its triggers created), with
    this migration's functions on PostgreSQL."""
    if connection.vendor != "postgresql":
        ROLLUP.install(connection)
        return
    with connection.cursor() as cursor:
        for statement in [ROLLUP._backfill("postgresql"), *pg_statements()]:
            cursor.execute(statement)


def uninstall(connection: Any) -> None:
    """As 0009's: the triggers and their functions dropped (the index too, if still there)."""
    ROLLUP.uninstall(connection)


def _replaced(statements: list[str]) -> list[str]:
    return [
        statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
        for statement in statements
        if _is_function(statement)
    ]


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for statement in _replaced(pg_statements()):
            cursor.execute(statement)
        cursor.execute(f"DROP INDEX IF EXISTS {EMPTY_INDEX}")
        cursor.execute(f"ALTER TABLE audit_rollup SET (fillfactor = {FILLFACTOR})")
        # A rewrite in id order, leaving the free space the fillfactor asks for (within the
        # migration's transaction, which VACUUM FULL cannot run in).
        cursor.execute("CLUSTER audit_rollup USING audit_rollup_pkey")


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for statement in _replaced(ROLLUP._pg_statements()):
            cursor.execute(statement)
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {EMPTY_INDEX} ON audit_rollup (id) WHERE transcripts = 0"
        )
        cursor.execute("ALTER TABLE audit_rollup RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0026_review_auditor_verdict"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
