"""SQLite tuning so several auditors writing at once do not hit "database is locked".

WAL lets readers proceed while one writer commits, and busy_timeout makes a writer wait for the
lock instead of failing at once. Settings also open write transactions with BEGIN IMMEDIATE
(``transaction_mode``), so a transaction never has to upgrade a read lock mid-way, which is the
case busy_timeout cannot rescue.

busy_timeout is not a queue: a waiting writer polls the lock, sleeping up to ``BUSY_POLL_SECONDS``
between tries, so a process that commits and at once begins again can starve it. Long jobs
(imports) therefore write in short transactions with a pause longer than that between them
(``WRITER_PAUSE_SECONDS``). SQLite has no advisory locks either; ``file_lock`` stands in for
PostgreSQL's where a job must run alone across many transactions.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver

BUSY_TIMEOUT_MS = 20000
# The longest sleep of SQLite's busy handler between two tries at the lock
# (sqliteDefaultBusyCallback).
BUSY_POLL_SECONDS = 0.1
# Between two write transactions of a long job: a waiting writer wakes within the gap and gets in.
WRITER_PAUSE_SECONDS = BUSY_POLL_SECONDS + 0.02

# In-memory databases have no file to lock; one process is all that can reach them.
_memory_locks: dict[str, threading.Lock] = {}


@receiver(connection_created)
def configure_sqlite(
    sender: type[BaseDatabaseWrapper], connection: BaseDatabaseWrapper, **kwargs: Any
) -> None:
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")


@contextmanager
def file_lock(connection: BaseDatabaseWrapper, name: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock called ``name`` on the database: an ``flock`` on
    ``<database>.<name>.lock``, which every process and thread on the machine sees (as SQLite
    needs them all on one machine) and which the kernel releases if the holder dies. (Not on the
    database file itself: closing any descriptor of that file drops SQLite's own locks.)

    Yields True once it holds the lock, waiting for it; with ``wait=False`` it yields False at
    once, holding nothing, when someone else holds it."""
    database = str(connection.settings_dict["NAME"])
    if database == ":memory:" or "mode=memory" in database:
        lock = _memory_locks.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=wait):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
        return
    path = f"{database}.{name}.lock"
    while True:
        handle = open(path, "ab")  # noqa: SIM115 - closed below, after the lock is released
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            yield False
            return
        # The holder before us removes the file as it finishes: locking that removed file
        # excludes no one, so try again with the one now at the path.
        try:
            if os.path.samestat(os.fstat(handle.fileno()), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield True
    finally:
        # Removed while still held, so no lock files pile up (one per test database) and whoever
        # waits on this one sees it is gone; closing releases the lock.
        os.unlink(path)
        handle.close()
