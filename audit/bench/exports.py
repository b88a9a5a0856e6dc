"""Export throughput and peak memory in a child process, for ``bench``: on the scratch database
the import child filled and the pages child reviewed (``scratch.database``), the first N records
by id and then all of them, each written as the admin's export writes them. A fresh process per
size, so its peak RSS is the export's own: flat from N/10 to N is what streaming looks like, at
any N (``bench`` keeps tracemalloc, which slows Python code several times, for small N).

    python -m audit.bench.exports LIMIT|all TARGET      (the child; prints JSON)
"""

from __future__ import annotations

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
    from audit.publish.export import write_jsonl

    records = Transcript.objects.all()
    if limit != "all":
        records = Transcript.objects.filter(
            pk__in=records.order_by("pk").values("pk")[: int(limit)]
        )
    clock = scratch.CpuClock()
    written, figures = scratch.measured(clock, lambda: write_jsonl(records, target))
    return {
        **figures,
        "records": written.records,
        "mb": written.size / (1024 * 1024),
        "reviews": Review.objects.filter(transcript__in=records).count(),
        "peak_rss_mb": scratch.peak_rss_mb(),
    }


def _main(args: list[str]) -> dict[str, Any]:
    limit, target = args
    return _run(limit, Path(target))


if __name__ == "__main__":
    scratch.child_main(_main)
