"""Import cost against a floor, in the same run (issue 14), measured for ``bench``.

The floor is the least any importer of this format must do: ``json.loads`` of each line, a
sha256 of the line, a search text, and a bare ``executemany`` of 1,000-row chunks in one
transaction into two tables with the same columns and the same b-tree indexes as
``audit_transcript`` and ``audit_transcript_text`` (tables of its own, so it competes with
nothing). The app's import is ``audit.ingest.importer.import_file`` as a command runs it,
production settings, then the same file again (every line a duplicate). Each runs in a child
process of its own on a scratch database (``audit.bench.scratch``), so peak memory is the
import's own.

    python -m audit.bench.imports floor|app FILE      (the child; prints JSON)
"""

from __future__ import annotations

import hashlib
import json
from itertools import islice
from pathlib import Path
from typing import Any

from audit.bench import scratch

FLOOR_TABLE = "bench_floor"
FLOOR_TEXT_TABLE = "bench_floor_text"
FLOOR_CHUNK = 1000


def measure(
    source: Path, *, tmp: Path, env: dict[str, str] | None = None, part: Path | None = None
) -> dict[str, Any]:
    """``{"floor": figures, "app": figures}`` for importing ``source`` (and ``"app_part"`` for
    the smaller file ``part``, on a scratch database of its own: the peak RSS at two sizes);
    each figures dict has wall/cpu/db_cpu seconds, records and peak_rss_mb (the app's also
    ``reimport``), or is ``{"error": ...}``. The app imports into ``env``'s database when
    given (``scratch.database``), where the records stay for the children after it."""
    found = {
        "floor": scratch.run("imports", ["floor", str(source)], tmp=tmp),
        "app": scratch.run("imports", ["app", str(source)], tmp=tmp, env=env),
    }
    if part is not None:
        found["app_part"] = scratch.run("imports", ["app", str(part)], tmp=tmp)
    return found


def _floor_tables() -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The columns (id first) of the floor's two tables, created like ``audit_transcript`` and
    ``audit_transcript_text`` with their indexes, on PostgreSQL the columns' compression (lz4
    for the text, migration 0024: pglz costs some 30 µs a record more) and, on SQLite, the
    text's foreign key (not their triggers or full-text index: those are the app's own work)."""
    from django.db import connection

    from audit.models import Transcript, TranscriptText

    names = {
        Transcript._meta.db_table: FLOOR_TABLE,
        TranscriptText._meta.db_table: FLOOR_TEXT_TABLE,
    }
    with connection.cursor() as cursor:
        for table, floor in names.items():
            if connection.vendor == "postgresql":
                cursor.execute(
                    f'CREATE TABLE {floor} (LIKE "{table}" INCLUDING DEFAULTS '
                    "INCLUDING IDENTITY INCLUDING INDEXES INCLUDING COMPRESSION)"
                )
                continue
            cursor.execute(
                "SELECT type, sql FROM sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL "
                "AND type IN ('table', 'index')",
                [table],
            )
            for kind, sql in cursor.fetchall():
                for name, floor_name in names.items():
                    sql = sql.replace(f'"{name}"', f'"{floor_name}"')
                if kind == "index":
                    sql = sql.replace('INDEX "', f'INDEX "{floor}_', 1)
                cursor.execute(sql)
    return tuple(  # type: ignore[return-value]
        [(str(f.column), _default(f)) for f in model._meta.local_concrete_fields]
        for model in (Transcript, TranscriptText)
    )


def _floor_values(pk: int, line: bytes, batch_id: int) -> dict[str, Any]:
    """The values the floor extracts from a record, by column: of either floor table."""
    record = json.loads(line)
    proposal = record.get("proposal") or {}
    decision = record.get("decision") or {}
    truth = record.get("ground_truth") or {}
    values: dict[str, Any] = {
        "id": pk,
        "batch_id": batch_id,
        "fingerprint": hashlib.sha256(line).hexdigest(),
        "raw": line.decode(),
        "session_id": record.get("session_id"),
        "step_number": record.get("step_number"),
        "task_id": record.get("task_id") or "",
        "action_type": proposal.get("action_type") or "",
        "target": str(proposal.get("target") or ""),
        "worker_id": proposal.get("worker_id") or "",
        "decision_type": str(decision.get("type") or ""),
        "is_misbehavior": bool(truth.get("is_misbehavior")),
        "misbehavior_type": str(truth.get("misbehavior_type") or ""),
        "search_text": " ".join(
            str(part or "") for part in (proposal.get("reasoning"), decision.get("reason"))
        ).lower(),
        "problems": "[]",
        "final_alignment_category": "",
    }
    return values


def _default(field: Any) -> Any:
    """A plain value of the column's type for the columns the floor does not extract."""
    if field.null:
        return None
    kind = field.get_internal_type()
    if kind == "BooleanField":
        return False
    if kind in ("CharField", "TextField", "JSONField"):
        return "[]" if kind == "JSONField" else ""
    if kind == "DateTimeField":
        return "2026-01-01 00:00:00+00:00"
    return 0


def _floor(source: Path) -> dict[str, Any]:
    from django.db import connection, transaction

    from audit.models import ImportBatch, Transcript, TranscriptText

    columns, text_columns = _floor_tables()
    batch_id = ImportBatch.objects.create(source="command", file_name="floor").pk
    # PostgreSQL binds text parameters as text: casts to the columns' types (jsonb, timestamptz).
    types = {
        str(f.column): f.db_type(connection)
        for model in (Transcript, TranscriptText)
        for f in model._meta.local_concrete_fields
    }

    def insert(table: str, names: list[tuple[str, Any]]) -> str:
        placeholders = [
            f"%s::{types[c]}" if connection.vendor == "postgresql" else "%s" for c, _ in names
        ]
        return "INSERT INTO {} ({}) VALUES ({})".format(
            table, ", ".join(f'"{c}"' for c, _ in names), ", ".join(placeholders)
        )

    sql, text_sql = insert(FLOOR_TABLE, columns), insert(FLOOR_TEXT_TABLE, text_columns)
    clock = scratch.CpuClock()

    def load() -> int:
        count = 0
        with transaction.atomic(), connection.cursor() as cursor, source.open("rb") as lines:
            while chunk := list(islice(lines, FLOOR_CHUNK)):
                records = [
                    _floor_values(count + n + 1, line.rstrip(b"\n"), batch_id)
                    for n, line in enumerate(line for line in chunk if line.strip())
                ]
                for statement, names in ((sql, columns), (text_sql, text_columns)):
                    rows = [[v.get(c, default) for c, default in names] for v in records]
                    cursor.executemany(statement, rows)
                count += len(records)
        return count

    records, figures = scratch.measured(clock, load)
    return {**figures, "records": records, "peak_rss_mb": scratch.peak_rss_mb()}


def _app(source: Path) -> dict[str, Any]:
    from audit.ingest.importer import import_file

    clock = scratch.CpuClock()
    result, figures = scratch.measured(clock, lambda: import_file(source))
    if result.failed:
        raise SystemExit("the file did not import: " + "; ".join(result.report_lines()))
    again, reimport = scratch.measured(clock, lambda: import_file(source))
    if again.imported or again.duplicates != result.imported:
        raise SystemExit(f"re-importing stored {again.imported} records again")
    return {
        **figures,
        "records": result.imported,
        "reimport": reimport,
        "peak_rss_mb": scratch.peak_rss_mb(),
    }


def _main(args: list[str]) -> dict[str, Any]:
    which, source = args
    return _floor(Path(source)) if which == "floor" else _app(Path(source))


if __name__ == "__main__":
    scratch.child_main(_main)
