"""python manage.py bench [--count N] [--quick] [--seed S]

Prints figures, never pass/fail: import throughput and peak memory, export streaming throughput
and peak memory, summary time, the queue and item pages' render time and query counts through
the test client, and issue 15's effects: the item page of a record nested 62 levels deep (size
and time), "Next" at this size, how fast a 256 MB gzip bomb is refused, and what auditors'
verdicts wait for while the N-record file imports; the import's CPU against a floor
(``audit.bench.imports``); and every page and the verdict flow through gunicorn with real HTTP
clients, sequential and 4 at once (``audit.bench.http``). Those last three run in child
processes on scratch databases.

Import and export memory are each measured at two sizes that both span several chunks (a tenth
of N, at least two chunks, and N), since a size within one chunk says nothing about streaming:
a flat figure from N/10 to N is what "memory does not grow with the file" looks like. Import
chunks are ``audit.ingest.importer.CHUNK_SIZE`` rows per insert (its scan stages rows in a temporary
file, so only the insert chunk is held in memory); export chunks are
``audit.publish.export.CHUNK_SIZE`` records per query. When N is under ten chunks (``--quick``) the
chunk is scaled down to N/10 for those measurements, and said so.

Everything happens inside one transaction that is rolled back at the end, so the database is
left as it was; on SQLite that transaction holds the write lock, so run it against a development
database, not one people are using.
"""

from __future__ import annotations

import gzip
import io
import json
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any
from unittest import mock

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import NoReverseMatch, reverse

from audit import rollup
from audit.bench import exports, imports, ingest_http, locks, scratch
from audit.bench import http as http_bench
from audit.demo.generator import write_jsonl as generate_jsonl
from audit.ingest import importer as importers
from audit.ingest.importer import ImportResult, import_file
from audit.models import Status, Transcript, TranscriptQuerySet
from audit.permissions import ADJUDICATOR, AUDITOR
from audit.publish import export as exporters
from audit.publish.selection import Selection
from audit.review import leases

MB = 1024 * 1024
# Up to this N, import and export memory are measured in this process under tracemalloc (which
# slows Python code several times: hours at a million records); past it, as the peak RSS of
# the child processes that import and export N/10 and N records.
TRACED_MAX = 200_000


def _by_rss(what: str) -> str:
    return f"past {TRACED_MAX:,} records, measured as child processes' peak RSS (see '{what}')"


# evaluate_monitors is measured at N and at 10 x N records while 10 x N stays under this.
MONITORS_LARGER_MAX = 2_000_000
PAGE_RUNS = 5
# The lock-wait measure (D2): auditors giving verdicts on the items of a seed import of a tenth
# of N (within these bounds), so they do not run out of items while the N records go in.
LOCK_AUDITORS = 4
LOCK_SEED_RECORDS = (200, 20000)


class _Rollback(Exception):
    pass


def _cpu(figures: dict[str, Any]) -> float:
    """An export child's CPU seconds: the whole machine's when it has helper processes (theirs
    and their database backends' count too; the bench runs alone), else its own and its
    backend's."""
    if figures.get("processes", 1) > 1 and figures.get("machine_cpu"):
        return float(figures["machine_cpu"])
    return float(figures["cpu"] + figures["db_cpu"])


def _processes(figures: dict[str, Any]) -> str:
    count = figures.get("processes", 1)
    return "1 process" if count == 1 else f"{count} processes"


def _helper_rss(figures: dict[str, Any]) -> str:
    peak = figures.get("helper_peak_rss_mb")
    return "" if peak is None else f" (each helper at most {peak:.0f} MB)"


def _timed[T](function: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def _chunking(count: int, chunk_size: int) -> tuple[int, int]:
    """(chunk, smaller size): a chunk of at most a tenth of ``count``, and a tenth of ``count``
    but at least two chunks, so both measured sizes span several chunks."""
    chunk = max(1, min(chunk_size, count // 10))
    return chunk, min(count, max(count // 10, 2 * chunk))


def _traced[T](function: Callable[[], T]) -> tuple[T, float, float]:
    """Result, seconds and peak traced Python memory (MB) of one call."""
    tracemalloc.start()
    try:
        start = time.perf_counter()
        result = function()
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, seconds, peak / MB


class Command(BaseCommand):
    help = "Measure import, export, summary and page speed and memory (prints figures only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=20000, help="records (default 20000)")
        parser.add_argument("--quick", action="store_true", help="2000 records, fewer page runs")
        parser.add_argument("--seed", type=int, default=1, help="generator seed")
        parser.add_argument(
            "--no-scratch",
            action="store_true",
            help="leave out the figures measured on a scratch database (import against the "
            "floor, verdicts during an import, pages through gunicorn)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count = 2000 if options["quick"] and options["count"] == 20000 else options["count"]
        if count < 1:
            raise CommandError("--count must be at least 1")
        self.runs = 2 if options["quick"] else PAGE_RUNS
        # DEBUG keeps every SQL statement in memory, which would swamp the memory figures.
        with (
            override_settings(DEBUG=False),
            tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp,
        ):
            try:
                with transaction.atomic():
                    self.run(Path(tmp), count=count, seed=options["seed"])
                    raise _Rollback
            except _Rollback:
                pass
            if not options["no_scratch"]:
                # One scratch database for the app's import, then the pages over those
                # records, then exports of them: N is imported once for the three.
                with scratch.database(Path(tmp)) as shared:
                    self.against_floor(Path(tmp), count=count, env=shared)
                    self.lock_waits(Path(tmp), count=count, seed=options["seed"])
                    # Pages and verdicts over HTTP, through gunicorn (audit.bench.http).
                    pages = http_bench.measure(
                        Path(tmp) / "bench.jsonl",
                        tmp=Path(tmp),
                        requests_per_page=5 if options["quick"] else 30,
                        budget_seconds=5.0 if options["quick"] else 30.0,
                        env=shared,
                    )
                    for line in http_bench.lines(pages):
                        self.stdout.write(line)
                    self.export_children(Path(tmp), count=count, env=shared)
                # Ingest over HTTP beside the file import, at two sizes (audit.bench.ingest_http).
                ingest = ingest_http.measure(Path(tmp) / "bench.jsonl", tmp=Path(tmp))
                for line in ingest_http.lines(ingest):
                    self.stdout.write(line)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.figure("process max RSS", f"{rss:.0f} MB")
        self.stdout.write("(bench data rolled back)")

    def figure(self, name: str, value: str) -> None:
        self.stdout.write(f"{name:<34} {value}")

    def run(self, tmp: Path, *, count: int, seed: int) -> None:
        self.stdout.write(f"database: {connection.vendor}, records: {count}")
        source = tmp / "bench.jsonl"
        _, seconds = _timed(lambda: generate_jsonl(source, count=count, seed=seed))
        size = source.stat().st_size
        self.figure("generate", f"{seconds:.2f} s ({size / MB:.1f} MB of JSONL)")

        traced = count <= TRACED_MAX
        # Timed without tracemalloc (which slows Python code several times), in a savepoint
        # rolled back; then imported again under tracemalloc for the memory figure. Past
        # TRACED_MAX the timed import is kept, and memory is the child processes' peak RSS.
        try:
            with transaction.atomic():
                result, seconds = _timed(lambda: import_file(source))
                if traced:
                    raise _Rollback
        except _Rollback:
            pass
        if result.failed:
            raise CommandError(
                "the generated file did not import: " + "; ".join(result.report_lines())
            )
        self.figure(
            "import",
            f"{seconds:.2f} s, {result.imported / seconds:.0f} records/s, "
            f"{size / MB / seconds:.1f} MB/s",
        )
        if traced:
            result = self.import_memory(source, tmp, count=count)
        else:
            self.figure("import peak memory", _by_rss("import peak RSS"))

        user = self.bench_user()
        reviewed = http_bench.review_share(
            [user], batch_id=result.batch_id, n=max(1, min(500, count // 20))
        )
        self.figure("reviews recorded", str(reviewed))
        self.monitors(tmp, batch_id=result.batch_id, count=count, seed=seed)

        # Only the bench's own records, whatever else the database holds.
        everything = Transcript.objects.filter(batch_id=result.batch_id)
        written, seconds = _timed(lambda: exporters.write_jsonl(everything, tmp / "all.jsonl"))
        self.figure(
            "export",
            f"{seconds:.2f} s, {written.records / seconds:.0f} records/s, "
            f"{written.size / MB / seconds:.1f} MB/s",
        )
        if traced:
            self.export_memory(everything, tmp, count=written.records)
        else:
            self.figure("export peak memory", _by_rss("export, child"))

        # As publish_release reads it: the counts from the rollup rows of the bench's batch.
        found = rollup.scope(Selection.of({"batch": [result.batch_id]}))
        counts = found.rollup_rows
        _, seconds = _timed(
            lambda: exporters.build_summary(
                found.records,
                files={"all.jsonl": found.records},
                counts=counts,
                file_counts=None if counts is None else {"all.jsonl": counts},
            )
        )
        self.figure(
            "summary.json metrics",
            f"{seconds * 1000:.0f} ms (counts from the {'rollup' if counts else 'records'})",
        )

        self.pages(user)
        self.hostile(user, tmp)

    def monitors(self, tmp: Path, *, batch_id: int | None, count: int, seed: int) -> None:
        """``evaluate_monitors`` at N and at 10 x N records, over the same number of settled
        items (a fifth of them spot checks, settled by a bulk update: the evaluation reads
        labels, not reviews), each in a savepoint rolled back."""
        settled = max(10, min(2000, count // 10))
        sizes: list[tuple[int, Path | None]] = [(count, None)]
        if count * 10 <= MONITORS_LARGER_MAX:
            sizes.append((count * 10, tmp / "monitors-10n.jsonl"))
        else:
            self.figure(
                f"evaluate_monitors ({count * 10})",
                f"not measured: 10 x N is past {MONITORS_LARGER_MAX:,} records (hours to "
                "generate and import); the figure at N is the one at this size",
            )
        for records, source in sizes:
            try:
                with transaction.atomic():
                    batch = batch_id
                    if source is not None:
                        generate_jsonl(source, count=records, seed=seed + 3)
                        batch = import_file(source).batch_id
                    rows = Transcript.objects.filter(batch_id=batch, status=Status.UNREVIEWED)
                    spot = rows.filter(flag_spot_check=True)
                    flagged = rows.in_queue().filter(flag_spot_check=False)
                    # The reviews bench recorded count: both sizes end with ``settled``.
                    already = Transcript.objects.filter(batch_id=batch).settled().count()
                    more = max(0, settled - settled // 5 - already)
                    picked = [
                        *spot.values_list("id", flat=True)[: settled // 5],
                        *flagged.values_list("id", flat=True)[:more],
                    ]
                    Transcript.objects.filter(id__in=picked).update(status=Status.CONFIRMED)
                    out = io.StringIO()
                    _, seconds = _timed(
                        partial(
                            call_command,
                            "evaluate_monitors",
                            f"--batch={batch}",
                            "--json",
                            stdout=out,
                        )
                    )
                    found = json.loads(out.getvalue())["settled"]
                    self.figure(
                        f"evaluate_monitors ({records})",
                        f"{seconds:.2f} s over {found['total']} settled items "
                        f"({found['spot_checks']} spot checks)",
                    )
                    raise _Rollback
            except _Rollback:
                pass

    def hostile(self, user: User, tmp: Path) -> None:
        """The effects issue 15 measures: what a deeply nested record costs its item page (D1),
        what "Next" costs at this size (D3), and how fast a gzip bomb is refused (D6)."""
        deep: Any = "leaf"
        for _ in range(30):  # 60 levels of objects and arrays: under the import limit of 64
            deep = {"k": [deep, "x" * 20]}
        record = json.loads(self.sample_raw())
        record["proposal"]["parameters"] = deep
        hostile_file = tmp / "hostile.jsonl"
        hostile_file.write_text(json.dumps(record) + "\n", encoding="utf-8")
        result = import_file(hostile_file)
        if result.batch_id is None:
            self.figure("nested record page", "not imported: " + "; ".join(result.report_lines()))
        else:
            item = Transcript.objects.get(batch_id=result.batch_id)
            client = Client(SERVER_NAME="localhost")
            client.force_login(user)
            response, seconds = _timed(
                partial(client.get, reverse("item", args=[item.pk]), secure=True)
            )
            self.figure(
                "nested record page (62 levels)",
                f"{len(response.content) / 1024:.0f} KB in {seconds * 1000:.0f} ms, "
                f"HTTP {response.status_code}",
            )
        self.long_record_page(user, tmp)
        timings = []
        for _ in range(self.runs):
            claimed, seconds = _timed(partial(leases.claim_next, user))
            timings.append(seconds)
            if claimed is not None:
                leases.release_lease(claimed, auditor=user)
        timings.sort()
        self.figure("claim next item", f"{timings[len(timings) // 2] * 1000:.1f} ms median")
        bomb = tmp / "bomb.jsonl.gz"
        with gzip.open(bomb, "wb") as out:
            for _ in range(256):
                out.write(b"\n" * MB)
        refused, seconds = _timed(partial(import_file, bomb))
        self.figure(
            "gzip bomb refused",
            f"{bomb.stat().st_size / 1024:.0f} KB of gzip (256 MB inflated) in {seconds:.2f} s, "
            f"{'refused' if refused.failed else 'NOT refused'}",
        )

    def long_record_page(self, user: User, tmp: Path) -> None:
        """The item page of a record whose CoT thinking text is 2.6 MB (issue 10), beside an
        ordinary record's: the page cuts long fields on the server, so both should cost alike.
        """
        record = json.loads(self.sample_raw())
        record["session_id"] = "bench-long-record"
        record["cot_analysis"]["thinking_text"] = "Checking the rollback plan again. " * 80_000
        long_file = tmp / "long.jsonl"
        long_file.write_text(json.dumps(record) + "\n", encoding="utf-8")
        result = import_file(long_file)
        if result.batch_id is None:
            self.figure("2.6 MB record page", "not imported: " + "; ".join(result.report_lines()))
            return
        long_item = Transcript.objects.get(batch_id=result.batch_id)
        ordinary = Transcript.objects.exclude(batch_id=result.batch_id).order_by("pk").first()
        client = Client(SERVER_NAME="localhost")
        client.force_login(user)
        for name, item in (("2.6 MB record page", long_item), ("ordinary record page", ordinary)):
            if item is None:
                continue
            timings, size = [], 0
            for _ in range(self.runs):
                response, seconds = _timed(
                    partial(client.get, reverse("item", args=[item.pk]), secure=True)
                )
                timings.append(seconds)
                size = len(response.content)
            timings.sort()
            self.figure(
                name,
                f"{size / 1024:.0f} KB in {timings[len(timings) // 2] * 1000:.0f} ms median "
                f"of {len(timings)}, HTTP {response.status_code}",
            )

    def against_floor(self, tmp: Path, *, count: int, env: dict[str, str]) -> None:
        """Import CPU against the floor (``audit.bench.imports``), each in its own process on a
        scratch database (the app's is ``env``'s, kept for the pages): records per CPU-second
        (client, plus the server's on PostgreSQL), the ratio, a re-import's share, and the
        import process's peak RSS at N/10 and N."""
        source = tmp / "bench.jsonl"
        part = tmp / "bench-rss-part.jsonl"
        with source.open("rb") as whole, part.open("wb") as out:
            out.writelines(islice(whole, max(1, count // 10)))
        found = imports.measure(source, tmp=tmp, env=env, part=part)
        floor, app = found["floor"], found["app"]
        for name, figures in (("floor", floor), ("app", app)):
            if "error" in figures:
                self.figure(f"import vs floor ({name})", f"not measured: {figures['error']}")
                return

        def cpu(figures: dict[str, float]) -> float:
            return figures["cpu"] + figures["db_cpu"]

        server = " + server" if connection.vendor == "postgresql" else ""
        for name, figures in (("floor", floor), ("app", app)):
            self.figure(
                f"import CPU, {name} ({figures['records']})",
                f"{figures['records'] / cpu(figures):,.0f} records per CPU-s (client{server}: "
                f"{figures['cpu']:.2f} + {figures['db_cpu']:.2f} s), "
                f"{figures['records'] / figures['wall']:,.0f} records/s wall, "
                f"peak RSS {figures['peak_rss_mb']:.0f} MB",
            )
        self.figure(
            "import vs floor",
            f"{cpu(floor) / cpu(app):.0%} of the floor's records per CPU-s (goal: 50%)",
        )
        self.figure(
            "re-import (all duplicates)",
            f"{cpu(app['reimport']) / cpu(app):.1%} of the import's CPU (goal: at most 10%)",
        )
        smaller = found["app_part"]
        if "error" in smaller:
            self.figure("import peak RSS", f"not measured at N/10: {smaller['error']}")
        else:
            self.figure(
                "import peak RSS",
                f"{smaller['peak_rss_mb']:.0f} MB at {smaller['records']:,} records, "
                f"{app['peak_rss_mb']:.0f} MB at {app['records']:,} (a process each, "
                "production settings)",
            )

    def export_children(self, tmp: Path, *, count: int, env: dict[str, str]) -> None:
        """Export throughput and peak RSS in processes of their own, over the records the
        import child stored and the pages child reviewed, then ``publish_release`` of them all
        (``audit.bench.exports``)."""
        for figures in exports.measure(tmp, env=env, limits=[max(1, count // 10), None]):
            if "error" in figures:
                self.figure("export, child", f"not measured: {figures['error']}")
                continue
            self.figure(
                f"export, child ({figures['records']})",
                f"{figures['records'] / figures['wall']:,.0f} records/s wall by "
                f"{_processes(figures)}, {figures['records'] / _cpu(figures):,.0f} per CPU-s, "
                f"{figures['mb'] / figures['wall']:.1f} MB/s, peak RSS "
                f"{figures['peak_rss_mb']:.0f} MB{_helper_rss(figures)} "
                f"({figures['reviews']} reviews)",
            )
        figures = exports.publish(tmp, env=env)
        if "error" in figures:
            self.figure("publish_release, child", f"not measured: {figures['error']}")
            return
        self.figure(
            f"publish_release, child ({figures['records']})",
            f"{figures['wall']:.1f} s (goal at 1,000,000: under 120 s), "
            f"{figures['records'] / figures['wall']:,.0f} records/s wall by "
            f"{_processes(figures)}, {figures['records'] / _cpu(figures):,.0f} per CPU-s, "
            f"{figures['mb']:,.0f} MB written, peak RSS {figures['peak_rss_mb']:.0f} MB"
            f"{_helper_rss(figures)}",
        )

    def lock_waits(self, tmp: Path, *, count: int, seed: int) -> None:
        """D2: verdicts of LOCK_AUDITORS auditors while an import of ``count`` records inserts,
        in a scratch database (``audit.bench.locks``)."""
        seed_file = tmp / "lock-seed.jsonl"
        low, high = LOCK_SEED_RECORDS
        generate_jsonl(seed_file, count=min(high, max(low, count // 10)), seed=seed + 1)
        found = locks.measure(seed_file, tmp / "bench.jsonl", auditors=LOCK_AUDITORS, tmp=tmp)
        if "error" in found:
            self.figure("verdicts during an import", f"not measured: {found['error']}")
            return
        if not found["verdicts"]:
            self.figure("verdicts during an import", "none was saved while it ran")
            return
        self.figure(
            f"verdicts during an import ({found['imported']})",
            f"{found['auditors']} auditors, {found['verdicts']} claims + verdicts in "
            f"{found['import_seconds']:.1f} s: {found['p50_ms']:.0f} ms median, "
            f"{found['p95_ms']:.0f} ms p95, {found['max_ms']:.0f} ms max; "
            f"{found['failures']} failed",
        )
        if found["first_failure"]:
            self.figure("  first failure", found["first_failure"][:200])

    def sample_raw(self) -> str:
        transcript = Transcript.objects.select_related("text").order_by("id").first()
        if transcript is None:
            raise CommandError("no record to build the hostile record from")
        return transcript.text.raw

    def import_memory(self, source: Path, tmp: Path, *, count: int) -> ImportResult:
        """Peak import memory at two sizes of several chunks each (the first lines of the file,
        imported in a savepoint rolled back, then all of it, kept): flat means streaming.
        Returns the result of the full import."""
        chunk, small_n = _chunking(count, importers.CHUNK_SIZE)
        part = tmp / "bench-part.jsonl"
        with source.open("rb") as whole, part.open("wb") as out:
            out.writelines(islice(whole, small_n))
        note = "" if chunk == importers.CHUNK_SIZE else f", scaled down from {importers.CHUNK_SIZE}"
        self.figure("import chunk size", f"{chunk} rows per insert{note}")
        # The importer takes no chunk size; its module constant is read on each call, so both
        # sizes are measured with the same (possibly scaled-down) chunk.
        with mock.patch.object(importers, "CHUNK_SIZE", chunk):
            try:
                with transaction.atomic():
                    partial, _, peak = _traced(lambda: import_file(part))
                    self.import_peak(partial, peak, chunk=chunk)
                    raise _Rollback
            except _Rollback:
                pass
            result, _, peak = _traced(lambda: import_file(source))
        self.import_peak(result, peak, chunk=chunk)
        return result

    def import_peak(self, result: ImportResult, peak: float, *, chunk: int) -> None:
        if result.failed:
            raise CommandError("the bench file did not import: " + "; ".join(result.report_lines()))
        self.figure(
            f"import peak memory ({result.imported})",
            f"{peak:.1f} MB (tracemalloc), {result.imported / chunk:.0f} chunks",
        )

    def export_memory(self, everything: TranscriptQuerySet, tmp: Path, *, count: int) -> None:
        """Peak export memory at two sizes of several chunks each: flat means streaming."""
        chunk, small_n = _chunking(count, exporters.CHUNK_SIZE)
        some = Transcript.objects.filter(pk__in=everything.order_by("pk").values("pk")[:small_n])
        note = "" if chunk == exporters.CHUNK_SIZE else f", scaled down from {exporters.CHUNK_SIZE}"
        self.figure("export chunk size", f"{chunk} records{note}")
        for label, queryset in (("part", some), ("all", everything)):
            written, _, peak = _traced(
                partial(exporters.write_jsonl, queryset, tmp / f"{label}.jsonl", chunk_size=chunk)
            )
            self.figure(
                f"export peak memory ({written.records})",
                f"{peak:.1f} MB (tracemalloc), {written.records / chunk:.0f} chunks",
            )

    def bench_user(self) -> User:
        user = get_user_model().objects.create_user(username="bench-auditor", is_staff=True)
        for name in (AUDITOR, ADJUDICATOR):
            group, _ = Group.objects.get_or_create(name=name)
            user.groups.add(group)
        return user

    def pages(self, user: User) -> None:
        # SERVER_NAME: "testserver" is not an allowed host outside the test runner.
        client = Client(SERVER_NAME="localhost")
        client.force_login(user)
        item = Transcript.objects.filter(status=Status.UNREVIEWED).order_by("id").first()
        pages = [("queue page", "queue", ()), ("item page", "item", (item.pk,) if item else ())]
        for label, name, args in pages:
            try:
                url = reverse(name, args=args)
            except NoReverseMatch:
                self.figure(label, "not available")
                continue
            timings, queries, status = [], 0, 0
            for _ in range(self.runs):
                with CaptureQueriesContext(connection) as captured:
                    response, seconds = _timed(partial(client.get, url, secure=True))
                timings.append(seconds)
                queries, status = len(captured), response.status_code
            timings.sort()
            self.figure(
                label,
                f"{timings[len(timings) // 2] * 1000:.0f} ms median of {self.runs}, "
                f"{queries} queries, HTTP {status}",
            )
