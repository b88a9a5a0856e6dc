"""Helper processes that write parts of an export while reading the exporting transaction's own
snapshot (issue 14's export goal: 20,000 records a second).

One process writes some 10,000-15,000 records a second on a 2-core machine, and most of that is
Python's work on one core (parsing each stored line, building its review block, writing it);
the database server's work is a fifth of it. So a large export (``export.write_jsonl``) is split
into contiguous ranges of its order, one per process: the exporting process writes the first
range into the file itself, each helper writes one range into a part file beside it, and the
exporting process appends the parts in order, reading each back once for the file's digest. The
file is byte for byte the one a single process writes (a test compares them).

The helpers read exactly what the exporting transaction reads:

- **PostgreSQL**: the exporting transaction (REPEATABLE READ, ``export.snapshot``) exports its
  snapshot (``pg_export_snapshot()``) and each helper's transaction adopts it (``SET
  TRANSACTION SNAPSHOT``) before anything else; the snapshot stays valid while the exporting
  transaction is open, which it is until the helpers are stopped.
- **SQLite** (WAL): a snapshot cannot be handed over, but a read transaction sees the last
  commit before its first read. So another connection holds the write lock (``BEGIN
  IMMEDIATE``, writing nothing) while the exporting transaction and the helpers make their first
  reads: no commit can land in between. The helpers have loaded Django and connected before it,
  so writers wait (busy_timeout) only the few milliseconds the first reads take. An in-memory
  database has no file another process could open, so it gets no helpers.

A helper is a fresh interpreter (``python -c``), not a fork: a forked child would inherit the
exporting process's open connections (SQLite's library keeps per-process state about its open
files and locks, which a fork corrupts; libpq would end the parent's session when the child
dropped its copy). Starting one (loading Django) costs some 1 s of CPU, so a helper is started
only for an export of at least ``MIN_RECORDS_PER_PROCESS`` records per process
(``export_processes``). The helper gets the exporting process's database settings (a test
database's name included) and the settings an export reads (``INHERITED_SETTINGS``) from it, not
from its own environment, so both write the same lines.

The protocol, pickled messages over a socket pair: the helper says ``booted`` once connected;
the exporting process sends ``begin`` (with PostgreSQL's snapshot id), and the helper answers
``ready`` once its transaction has read; then ``export`` (a pickled queryset, a path, a chunk
size) is answered by ``written`` (records, bytes), until ``stop``. A failure is answered by
``failed`` with the exception (when it pickles) and its traceback, which the exporting process
raises with the helper's traceback as a note. When the exporting process fails, or is
interrupted, its helpers are killed and their part files removed. A helper whose exporting
process is killed finds its socket closed and exits when it next reads it, which is after the
part it is writing; that part file stays (a release's is in its staging folder, which the next
publish removes; the export command's is a hidden ``.<file>.*.part`` beside its output).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from socket import socketpair
from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper

if TYPE_CHECKING:  # the helper imports this module before Django is set up
    from audit.models import TranscriptQuerySet

# Below this many records for each process, a helper's start (loading Django: some 1 s of CPU)
# costs about what it saves: at some 10,000-15,000 records a second, 25,000 take 2 s or so.
MIN_RECORDS_PER_PROCESS = 25_000
# What an export reads from the settings besides the database: helpers use the exporting
# process's values (a test's overrides included), so their lines are the same.
INHERITED_SETTINGS = ("AUDIT_PSEUDONYM_KEY",)
# How long a stopped helper may take to end its transaction and exit before it is killed.
STOP_TIMEOUT_SECONDS = 30
# The helper's command: a fresh interpreter that imports this module and serves one socket.
_HELPER_CODE = "import sys; from audit.publish.parallel import serve; serve(int(sys.argv[1]))"


class HelperError(RuntimeError):
    """A helper process failed in a way that left no exception to re-raise (it died, or its
    exception could not be pickled)."""


def pickled(queryset: TranscriptQuerySet) -> bytes:
    """``queryset`` for a helper: its query, never its rows (pickling a queryset itself runs it
    and pickles every row)."""
    return pickle.dumps((type(queryset), queryset.model, queryset.query, queryset.db))


def unpickled(payload: bytes) -> TranscriptQuerySet:
    kind, model, query, using = pickle.loads(payload)
    return kind(model=model, query=query, using=using)


def export_processes(records: int) -> int:
    """How many processes should export ``records`` records: up to
    ``settings.AUDIT_EXPORT_PROCESSES``, one per ``MIN_RECORDS_PER_PROCESS`` records, and at
    least one."""
    return max(1, min(settings.AUDIT_EXPORT_PROCESSES, records // MIN_RECORDS_PER_PROCESS))


def can_share(connection: BaseDatabaseWrapper) -> bool:
    """Whether other processes can read what ``connection`` reads: not an in-memory SQLite
    database."""
    if connection.vendor == "sqlite":
        # is_in_memory_db exists on the SQLite wrapper only (the stubs know the base).
        return not getattr(connection, "is_in_memory_db")()  # noqa: B009
    return connection.vendor == "postgresql"


class Helper:
    """One helper process and its end of the socket pair."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        ours, theirs = socketpair()
        root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
            # (settings.SETTINGS_MODULE is None while a test overrides settings.)
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE")
            or settings.SETTINGS_MODULE,
        }
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _HELPER_CODE, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                # Nothing to say but through the socket: a command's output stays its own.
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.channel = Connection(ours.detach())
        self.busy = False
        # Answers due before the next one asked for: sent without waiting for them.
        self.due: list[str] = []
        self.due.append("booted")
        self.send(
            "start",
            connection.alias,
            dict(connection.settings_dict),
            {name: getattr(settings, name) for name in INHERITED_SETTINGS},
        )

    def send(self, *message: Any) -> None:
        try:
            self.channel.send(message)
        except OSError as exc:  # it died: say what it said, if anything
            self._failed(exc)

    def receive(self, expected: str) -> tuple[Any, ...]:
        """The helper's next message, which must be ``expected`` (after the answers still
        ``due``); its failure raised."""
        while self.due:
            due = self.due.pop(0)
            answer = self._receive(due)
            if due == expected:
                return answer
        return self._receive(expected)

    def _receive(self, expected: str) -> tuple[Any, ...]:
        try:
            kind, *rest = self.channel.recv()
        except (EOFError, OSError) as exc:
            self._failed(exc)
        if kind == "failed":
            error, text = rest
            if error is None:
                error = HelperError(text.strip().splitlines()[-1])
            error.add_note(f"in an export helper process (pid {self.process.pid}):\n{text}")
            raise error
        if kind != expected:
            raise HelperError(f"an export helper sent {kind!r} where {expected!r} was due")
        return tuple(rest)

    def _failed(self, cause: BaseException) -> NoReturn:
        # Its end of the socket closes as it exits: its status follows within moments.
        try:
            code: int | None = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        raise HelperError(
            f"an export helper process (pid {self.process.pid}) stopped answering"
            + (f": it exited with status {code}" if code is not None else "")
        ) from cause

    def export(self, payload: bytes, path: Path, chunk_size: int) -> None:
        self.send("export", payload, str(path), chunk_size)
        self.busy = True

    def written(self) -> tuple[int, int]:
        """(records, bytes) of the part the helper was given, once it is written."""
        count, size = self.receive("written")
        self.busy = False
        return count, size

    def stop(self) -> None:
        """Ask the helper to end its transaction and exit; kill it if it does not."""
        with contextlib.suppress(OSError):
            self.channel.send(("stop",))
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
        self.channel.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.channel.close()


@contextlib.contextmanager
def helpers_for(connection: BaseDatabaseWrapper, count: int) -> Iterator[list[Helper]]:
    """``count`` helpers started, stopped when the block ends (killed if it raises)."""
    started: list[Helper] = []
    try:
        for _ in range(count):
            started.append(Helper(connection))
        yield started
    except BaseException:
        for helper in started:
            helper.kill()
        raise
    for helper in started:
        helper.stop()


@contextlib.contextmanager
def write_lock(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Hold SQLite's write lock on a connection of its own, writing nothing: no commit lands
    while the block runs (others wait for it, as for any writer)."""
    timeout = float(connection.settings_dict.get("OPTIONS", {}).get("timeout", 20))
    locker = sqlite3.connect(
        connection.settings_dict["NAME"], timeout=timeout, isolation_level=None
    )
    try:
        locker.execute("BEGIN IMMEDIATE")
        yield
    finally:
        locker.close()  # ends the empty transaction: a rollback


def begin(helpers: list[Helper], snapshot_id: str | None, *, wait: bool) -> None:
    """Have every helper begin its transaction (with PostgreSQL's ``snapshot_id``); with
    ``wait``, until each has read, else their answers are taken before their first part's."""
    for helper in helpers:
        helper.send("begin", snapshot_id)
        helper.due.append("ready")
    if wait:
        for helper in helpers:
            helper.receive("ready")


def await_boot(helpers: list[Helper]) -> None:
    """Wait until every helper has loaded Django and connected."""
    for helper in helpers:
        helper.receive("booted")


# The helper's side.


def serve(fd: int) -> None:
    """A helper's life: set up Django as the exporting process says, then write the parts it is
    sent, in one transaction, until told to stop."""
    channel = Connection(fd)
    try:
        _serve(channel)
    except BaseException as exc:  # reported to the exporting process, which raises it
        with contextlib.suppress(OSError):
            channel.send(("failed", _picklable(exc), traceback.format_exc()))
    finally:
        channel.close()


def _picklable(exc: BaseException) -> BaseException | None:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return None
    return exc


def _serve(channel: Connection) -> None:
    import django

    kind, alias, settings_dict, inherited = channel.recv()
    assert kind == "start", kind
    django.setup()
    for name, value in inherited.items():
        setattr(settings, name, value)

    from django.db import connections, transaction
    from django.db.utils import load_backend

    connection = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)
    connections[alias] = connection
    connection.ensure_connection()
    channel.send(("booted",))
    kind, snapshot_id = channel.recv()
    if kind == "stop":
        return
    assert kind == "begin", kind
    if connection.vendor == "sqlite":
        # Deferred, as the exporting transaction's: a read snapshot from the first read.
        setattr(connection, "transaction_mode", "DEFERRED")  # noqa: B010
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if not snapshot_id or not snapshot_id.replace("-", "").isalnum():
                raise HelperError(f"not a snapshot id: {snapshot_id!r}")
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
            cursor.execute("SET LOCAL jit = off")
        else:
            cursor.execute("SELECT count(*) FROM sqlite_master")  # the snapshot begins
        channel.send(("ready",))
        _write_parts(channel)


def _write_parts(channel: Connection) -> None:
    from audit.publish import export

    while True:
        kind, *rest = channel.recv()
        if kind == "stop":
            return
        assert kind == "export", kind
        payload, path, chunk_size = rest
        queryset = unpickled(payload)
        count = size = 0
        with open(path, "wb", buffering=export.WRITE_BUFFER) as handle:
            for line in export.encoded_lines_now(queryset, chunk_size=chunk_size):
                handle.write(line)
                count += 1
                size += len(line)
        channel.send(("written", count, size))
