"""Database triggers on ``audit_transcript`` and ``audit_transcript_text``: which exist.

The rollup (``audit.rollup``, on the transcripts) and the full-text index (``audit.search``, on
their text) are kept in step by triggers their migrations install. On SQLite a migration that
remakes a table (most ALTERs) drops them, so each checks after every ``migrate`` which of its
triggers are gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

TABLE = "audit_transcript"


def present(connection: BaseDatabaseWrapper, *, table: str = TABLE) -> set[str]:
    """The names of the user triggers on ``table``."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [table]
            )
        else:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = %s::regclass",
                [table],
            )
        return {name for (name,) in cursor.fetchall()}


@contextmanager
def insert_trigger_replaced(
    cursor: CursorWrapper, *, trigger: str, create: str, catch_up: str, table: str = TABLE
) -> Iterator[None]:
    """SQLite: the rows inserted into ``table`` inside run without its row trigger ``trigger``
    (an AFTER INSERT trigger); on leaving, ``catch_up`` (SQL with one parameter: the largest id
    before) does its work for all of them in one set statement, and ``create`` puts the trigger
    back.

    All in the caller's transaction: SQLite's DDL is transactional and it has one writer, so no
    other connection ever writes while the trigger is away, and a rollback (or a crash) puts it
    back with the rows gone. A per-row trigger that upserts a rollup row or adds one document to
    FTS5 costs ten times the set statement at import chunk sizes (issue 14). Nested uses each
    take their own trigger. Raises if the trigger is missing: writing without it would leave
    its table out of step (``migrate`` restores missing triggers).
    """
    cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
    (last,) = cursor.fetchone()
    cursor.execute(f"DROP TRIGGER {trigger}")
    yield
    cursor.execute(catch_up, [last])
    cursor.execute(create)
