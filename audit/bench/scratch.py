"""Run a measurement in a child process against a scratch database like the current one.

Some of ``bench``'s figures need real commits (concurrent writers, an import's chunks) or a
fresh process (peak memory), which its rolled-back transaction cannot give. ``run`` starts
``python -m audit.bench.<module> ARGS`` with production settings (no query log) against a
scratch SQLite file in ``tmp``, or a scratch PostgreSQL database it creates and drops, so the
development database is never touched. The child prints one JSON object as its last line.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def database(tmp: Path) -> Iterator[dict[str, str]]:
    """A scratch database like the current one (a SQLite file in ``tmp``, or a PostgreSQL
    database created here), dropped at the end: the child environment that points at it, with
    production settings. Several children may use it in turn (``run(..., env=...)``), so
    that one imports N records and the next measures pages over them, instead of importing N
    again (at a million records an import takes half an hour)."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["AUDIT_DEBUG"] = "false"
    # Production settings need keys; they sign nothing that outlives the database.
    for key in ("AUDIT_SECRET_KEY", "AUDIT_PSEUDONYM_KEY"):
        env.setdefault(key, secrets.token_urlsafe(50))
    scratch_pg = None
    if connection.vendor == "postgresql":
        scratch_pg = f"audit_bench_{os.getpid()}_{secrets.token_hex(3)}"
        url = urlsplit(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{scratch_pg}"))
        _admin_sql(f'CREATE DATABASE "{scratch_pg}"')
    else:
        sqlite_file = tmp / f"scratch-{secrets.token_hex(3)}.sqlite3"
        env["AUDIT_SQLITE_PATH"] = str(sqlite_file)
    try:
        yield env
    finally:
        if scratch_pg is not None:
            _admin_sql(f'DROP DATABASE IF EXISTS "{scratch_pg}"')
        else:
            for path in tmp.glob(f"{sqlite_file.name}*"):
                path.unlink(missing_ok=True)


def run(
    module: str, args: list[str], *, tmp: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The child's JSON result, or ``{"error": its last line of stderr}`` when it failed. The
    child runs with ``env`` (a shared scratch database's, from ``database()``), or else on a
    scratch database of its own."""
    if env is None:
        with database(tmp) as own:
            return run(module, args, tmp=tmp, env=own)
    child = subprocess.run(
        [sys.executable, "-m", f"audit.bench.{module}", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if child.returncode != 0:
        return {"error": (child.stderr.strip().splitlines() or ["no output"])[-1]}
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def _admin_sql(sql: str) -> None:
    """CREATE/DROP DATABASE: outside any transaction, on a connection of its own."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["dbname"] = "postgres"
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(sql)


def child_main(work: Callable[[list[str]], dict[str, Any]]) -> None:
    """The child's entry point: set Django up, migrate the scratch database, run ``work`` with
    the arguments, print its result as JSON."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audit.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(json.dumps(work(sys.argv[1:])))


class CpuClock:
    """CPU seconds of this process plus, on PostgreSQL, of its server backend (read from
    /proc: the server runs on this machine), so the database's share of the work counts."""

    def __init__(self) -> None:
        self.backend: int | None = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.backend = cursor.fetchone()[0]

    def _backend_seconds(self) -> float:
        if self.backend is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.backend}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def now(self) -> tuple[float, float]:
        """(this process's CPU seconds, the backend's)."""
        return time.process_time(), self._backend_seconds()


def measured[T](clock: CpuClock, work: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """``work()``'s result and its wall, client CPU and database CPU seconds, and the whole
    machine's CPU seconds (``machine_cpu``: what an export's helper processes and their
    database backends spent counts too; the bench runs alone)."""
    client, backend = clock.now()
    machine = machine_cpu_seconds()
    started = time.perf_counter()
    result = work()
    wall = time.perf_counter() - started
    client_end, backend_end = clock.now()
    return result, {
        "wall": wall,
        "cpu": client_end - client,
        "db_cpu": backend_end - backend,
        "machine_cpu": machine_cpu_seconds() - machine,
    }


def machine_cpu_seconds() -> float:
    """CPU seconds every process of the machine has spent, all cores together (/proc/stat's
    first line: user, nice, system, irq and softirq time); 0 where there is no /proc."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` of /proc/self/status, which is of
    this program alone, where ``ru_maxrss`` survives ``exec`` and so reports a child started by
    a large parent (``bench`` at some 250 MB) as at least that large."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
