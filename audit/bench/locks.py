"""What auditors wait for while a large import inserts (issue 15, D2), measured for ``bench``.

A web process and an import share the database: on SQLite one write lock, which the importer
takes one chunk at a time (``audit.ingest.importer``). This runs a real import, committing chunk
by chunk as it does in production, while auditor threads claim an item and give a verdict in a
loop, and reports how long each of those writes took and whether any failed ("database is
locked"). It needs a database of its own: ``measure`` runs it in a child process against a
scratch SQLite file or a scratch PostgreSQL database, created and dropped here, so the
development database is never touched.

    python -m audit.bench.locks SEED.jsonl IMPORT.jsonl AUDITORS   (the child; prints JSON)
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Between two verdicts of one auditor thread: a person takes far longer; this is a busy team.
THINK_SECONDS = 0.05


def measure(seed_file: Path, import_file: Path, *, auditors: int, tmp: Path) -> dict[str, Any]:
    """Run the measurement in a child process on a scratch database like the current one; its
    figures (``_run``), or ``{"error": ...}`` when the child failed."""
    from django.db import connection

    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    # Production settings: DEBUG would keep every statement in memory. The key signs nothing
    # that outlives the child.
    env["AUDIT_DEBUG"] = "false"
    for key in ("AUDIT_SECRET_KEY", "AUDIT_PSEUDONYM_KEY"):
        env.setdefault(key, secrets.token_urlsafe(50))
    scratch_pg = None
    if connection.vendor == "postgresql":
        scratch_pg = f"audit_bench_locks_{os.getpid()}"
        url = urlsplit(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{scratch_pg}"))
        _admin_sql(f'CREATE DATABASE "{scratch_pg}"')
    else:
        env["AUDIT_SQLITE_PATH"] = str(tmp / "locks.sqlite3")
    try:
        child = subprocess.run(
            [sys.executable, "-m", "audit.bench.locks", str(seed_file), str(import_file)]
            + [str(auditors)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
    finally:
        if scratch_pg is not None:
            _admin_sql(f'DROP DATABASE IF EXISTS "{scratch_pg}"')
    if child.returncode != 0:
        return {"error": (child.stderr.strip().splitlines() or ["no output"])[-1]}
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def _admin_sql(sql: str) -> None:
    """CREATE/DROP DATABASE: outside any transaction, on a connection of its own."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["dbname"] = "postgres"
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(sql)


def _run(seed_file: Path, import_file: Path, *, auditors: int) -> dict[str, Any]:
    """In the child: migrate, import ``seed_file`` (the items to review), then import
    ``import_file`` while ``auditors`` threads claim and decide items; the wait of each verdict
    (claim + save) during the import, and the failures."""
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connections

    from audit.ingest.importer import import_file as run_import
    from audit.permissions import AUDITOR
    from audit.review import leases
    from audit.review.workflow import submit_review

    call_command("migrate", verbosity=0)
    seeded = run_import(seed_file)
    if seeded.failed:
        raise SystemExit("the seed file did not import")
    group, _ = Group.objects.get_or_create(name=AUDITOR)
    users = []
    for n in range(auditors):
        user = User.objects.create_user(username=f"lock-bench-{n}")
        user.groups.add(group)
        users.append(user)

    importing = threading.Event()
    stop = threading.Event()
    waits: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def auditor(user: User) -> None:
        try:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    item = leases.claim_next(user)
                    if item is None:
                        break
                    # "Unsure" needs no labels, so every item takes it; it is as much a write
                    # as a confirm (a review row, the item's status and version, the lease).
                    submit_review(
                        item,
                        auditor=user,
                        verdict="unsure",
                        rationale="The bench cannot tell.",
                        based_on_version=item.version,
                    )
                except Exception as exc:  # noqa: BLE001 - every failure is a figure here
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}")
                else:
                    if importing.is_set():
                        with lock:
                            waits.append(time.perf_counter() - started)
                time.sleep(THINK_SECONDS)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=auditor, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    importing.set()
    started = time.perf_counter()
    result = run_import(import_file)
    seconds = time.perf_counter() - started
    importing.clear()
    stop.set()
    for thread in threads:
        thread.join()
    waits.sort()

    def at(fraction: float) -> float | None:
        return waits[min(len(waits) - 1, int(fraction * len(waits)))] * 1000 if waits else None

    return {
        "imported": result.imported,
        "import_seconds": seconds,
        "auditors": auditors,
        "verdicts": len(waits),
        "p50_ms": at(0.5),
        "p95_ms": at(0.95),
        "max_ms": waits[-1] * 1000 if waits else None,
        "failures": len(failures),
        "first_failure": failures[0] if failures else "",
    }


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audit.settings")
    import django

    django.setup()
    seed, source, count = sys.argv[1:4]
    print(json.dumps(_run(Path(seed), Path(source), auditors=int(count))))
