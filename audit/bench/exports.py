"""Export throughput and peak memory in a child process, for ``bench``: on the scratch database
the import child filled and the pages child reviewed (``scratch.database``), the first N records
by id and then all of them, each written as the admin's export writes them. A fresh process per
size, so its peak RSS is the export's own: flat from N/10 to N is what streaming looks like, at
any N (``bench`` keeps tracemalloc, which slows Python code several times, for small N). Then
``publish_release`` of every record (``--include-unreviewed``), in a process of its own too: the
export of both data files, their read-back (profile and digests), the summary, the card.

    python -m audit.bench.exports LIMIT|all TARGET      (the child; prints JSON)
    python -m audit.bench.exports publish DIR
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from audit.bench import scratch


def measure(tmp: Path, *, env: dict[str, str], limits: list[int | None]) -> list[dict[str, Any]]:
    """The figures of an export of the first ``limit`` records (None: all), for each limit."""
    found = []
    for limit in limits:
        label = "all" if limit is None else str(limit)
        target = tmp / f"export-child-{label}.jsonl"
        try:
            found.append(scratch.run("exports", [label, str(target)], tmp=tmp, env=env))
        finally:
            target.unlink(missing_ok=True)
    return found


def _run(limit: str, target: Path) -> dict[str, Any]:
    from audit.models import Review, Transcript
    from audit.publish.export import processes_for, write_jsonl

    records = Transcript.objects.all()
    if limit != "all":
        records = Transcript.objects.filter(
            pk__in=records.order_by("pk").values("pk")[: int(limit)]
        )
    clock = scratch.CpuClock()
    with _helper_peaks() as helper_peaks:
        written, figures = scratch.measured(clock, lambda: write_jsonl(records, target))
    return {
        **figures,
        "records": written.records,
        "mb": written.size / (1024 * 1024),
        "reviews": Review.objects.filter(transcript__in=records).count(),
        "peak_rss_mb": scratch.peak_rss_mb(),
        "processes": processes_for(records),
        "helper_peak_rss_mb": max(helper_peaks, default=None),
    }


@contextmanager
def _helper_peaks() -> Iterator[list[float]]:
    """The peak RSS (MB) of each export helper process started in the block, read from /proc
    as it is stopped (``audit.publish.parallel``)."""
    from audit.publish import parallel

    peaks: list[float] = []
    stop = parallel.Helper.stop

    def stop_and_note(self: parallel.Helper) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        stop(self)

    parallel.Helper.stop = stop_and_note  # type: ignore[method-assign]
    try:
        yield peaks
    finally:
        parallel.Helper.stop = stop  # type: ignore[method-assign]


# The version the bench's release is published as, in a directory of its own.
BENCH_VERSION = "1.0.0"


def publish(tmp: Path, *, env: dict[str, str]) -> dict[str, Any]:
    """The figures of ``publish_release --include-unreviewed`` of every record."""
    target = tmp / "publish-child"
    try:
        return scratch.run("exports", ["publish", str(target)], tmp=tmp, env=env)
    finally:
        # A release is read-only: make it writable again to remove it.
        shutil.rmtree(target, onexc=_writable_again)


def _writable_again(function: Any, path: str, _exc: BaseException) -> None:
    if not os.path.exists(path):
        return
    os.chmod(os.path.dirname(path), stat.S_IRWXU)
    os.chmod(path, stat.S_IRWXU)
    function(path)


def _publish(target: Path) -> dict[str, Any]:
    from django.core.management import call_command

    from audit.models import Transcript
    from audit.publish.export import processes_for

    clock = scratch.CpuClock()
    with _helper_peaks() as helper_peaks:
        _, figures = scratch.measured(
            clock,
            lambda: call_command(
                "publish_release",
                f"--version={BENCH_VERSION}",
                "--include-unreviewed",
                f"--output={target}",
                stdout=io.StringIO(),
            ),
        )
    manifest = json.loads((target / BENCH_VERSION / "manifest.json").read_text())
    return {
        **figures,
        "records": manifest["counts"]["records"],
        "mb": sum(entry["size"] for entry in manifest["files"]) / (1024 * 1024),
        "peak_rss_mb": scratch.peak_rss_mb(),
        "processes": processes_for(Transcript.objects.all()),
        "helper_peak_rss_mb": max(helper_peaks, default=None),
    }


def _main(args: list[str]) -> dict[str, Any]:
    if args[0] == "publish":
        return _publish(Path(args[1]))
    limit, target = args
    return _run(limit, Path(target))


if __name__ == "__main__":
    scratch.child_main(_main)
