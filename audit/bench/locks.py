"""What auditors wait for while a large import inserts (issue 15, D2), measured for ``bench``.

A web process and an import share the database: on SQLite one write lock, which the importer
takes one chunk at a time (``audit.ingest.importer``). This runs a real import, committing chunk
by chunk as it does in production, while auditor threads claim an item and give a verdict in a
loop, and reports how long each of those writes took and whether any failed ("database is
locked"). It needs a database of its own: ``measure`` runs it in a child process on a scratch
database (``audit.bench.scratch``).

    python -m audit.bench.locks SEED.jsonl IMPORT.jsonl AUDITORS   (the child; prints JSON)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from audit.bench import scratch

# Between two verdicts of one auditor thread: a person takes far longer; this is a busy team.
THINK_SECONDS = 0.05


def measure(seed_file: Path, import_file: Path, *, auditors: int, tmp: Path) -> dict[str, Any]:
    """The figures of ``_run``, from a child process on a scratch database."""
    return scratch.run("locks", [str(seed_file), str(import_file), str(auditors)], tmp=tmp)


def _run(seed_file: Path, import_file: Path, *, auditors: int) -> dict[str, Any]:
    """In the child: migrate, import ``seed_file`` (the items to review), then import
    ``import_file`` while ``auditors`` threads claim and decide items; the wait of each verdict
    (claim + save) during the import, and the failures."""
    from django.contrib.auth.models import Group, User
    from django.db import connections

    from audit.ingest.importer import import_file as run_import
    from audit.permissions import AUDITOR
    from audit.review import leases
    from audit.review.workflow import submit_review

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


def _main(args: list[str]) -> dict[str, Any]:
    seed, source, count = args
    return _run(Path(seed), Path(source), auditors=int(count))


if __name__ == "__main__":
    scratch.child_main(_main)
