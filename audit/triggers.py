"""Database triggers on ``audit_transcript``: which exist.

The rollup (``audit.rollup``) and the full-text index (``audit.search``) are kept in step by
triggers their migrations install. On SQLite a migration that remakes the table (most ALTERs)
drops them, so each checks after every ``migrate`` which of its triggers are gone.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

TABLE = "audit_transcript"


def present(connection: BaseDatabaseWrapper) -> set[str]:
    """The names of the user triggers on ``audit_transcript``."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE]
            )
        else:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = %s::regclass",
                [TABLE],
            )
        return {name for (name,) in cursor.fetchall()}
