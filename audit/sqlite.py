"""SQLite tuning so several auditors writing at once do not hit "database is locked".

WAL lets readers proceed while one writer commits, and busy_timeout makes a writer wait for the
lock instead of failing at once. Settings also open write transactions with BEGIN IMMEDIATE
(``transaction_mode``), so a transaction never has to upgrade a read lock mid-way, which is the
case busy_timeout cannot rescue.
"""

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver


@receiver(connection_created)
def configure_sqlite(
    sender: type[BaseDatabaseWrapper], connection: BaseDatabaseWrapper, **kwargs: Any
) -> None:
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=20000")
        cursor.execute("PRAGMA foreign_keys=ON")
