"""Ingest throughput over HTTP beside the file import's (issue 13), for ``bench``.

``measure`` runs the child below on a scratch database (``audit.bench.scratch``). At two sizes
(a tenth of the file, at least ``RUN_REQUEST`` records, and the whole file) it imports the
records three ways, emptying the database in between so each way stores every record:

- ``import_file``, as ``import_transcripts`` does (no HTTP);
- one ``POST /api/v1/transcripts`` of the whole body, gzip, through gunicorn
  (``audit.api.client.post_records``);
- a run's stream: requests of ``RUN_REQUEST`` records under one run key, which fold into one
  batch (each request pays the scan, the lock and the fold).

Wall seconds include everything a caller waits for (compression and the HTTP round trips).

    python -m audit.bench.ingest_http SOURCE TMP   (the child; prints JSON)
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import requests

from audit.bench import scratch

RUN_REQUEST = 500
# As ``audit.bench.http`` reaches gunicorn: as if from behind a TLS proxy (production settings
# redirect plain HTTP).
PROXY = {"X-Forwarded-Proto": "https"}


def measure(source: Path, *, tmp: Path) -> dict[str, Any]:
    """``{"sizes": [{"records": n, "file": s, "http": s, "run": s}, ...]}`` (wall seconds), or
    ``{"error": ...}``."""
    return scratch.run("ingest_http", [str(source), str(tmp)], tmp=tmp)


def lines(figures: dict[str, Any]) -> list[str]:
    if "error" in figures:
        return [_line("ingest over HTTP", f"not measured: {figures['error']}")]
    out = []
    for size in figures["sizes"]:
        n = size["records"]
        file_rate = n / size["file"]
        out.append(_line(f"ingest, file import ({n})", f"{file_rate:,.0f} records/s"))
        for way, label in (("http", "HTTP, 1 request"), ("run", f"HTTP, run of {RUN_REQUEST}s")):
            rate = n / size[way]
            out.append(
                _line(
                    f"ingest, {label} ({n})",
                    f"{rate:,.0f} records/s ({rate / file_rate:.0%} of the file import's)",
                )
            )
    return out


def _line(name: str, value: str) -> str:
    return f"{name:<34} {value}"


def _empty(*, stored: int, way: str) -> None:
    """Check that ``way`` stored all ``stored`` records, then remove them for the next way."""
    from audit.models import ImportBatch, IngestRun, Transcript

    if (count := Transcript.objects.count()) != stored:
        raise SystemExit(f"{way} stored {count} of {stored} records")
    IngestRun.objects.all().delete()
    Transcript.objects.all().delete()
    ImportBatch.objects.all().delete()


def _timed(work: Any) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def _main(args: list[str]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from audit.api.client import post_records
    from audit.api.tokens import issue_token
    from audit.bench import http
    from audit.ingest.importer import import_file

    source, tmp = Path(args[0]), Path(args[1])
    records = source.read_text(encoding="utf-8").splitlines()
    sizes = sorted({min(len(records), max(RUN_REQUEST, len(records) // 10)), len(records)})
    staff = get_user_model().objects.create_user("bench-ingest", is_staff=True)
    token = issue_token(staff, scopes=["ingest"]).secret
    work = tmp / f"ingest-{secrets.token_hex(3)}"
    work.mkdir(parents=True)
    figures = []
    try:
        env = http.server_env(work / "var")
        http.collect_static(env)
        connection.close()
        with http.serving(env, log=work / "gunicorn.log") as server:
            # Each worker loads the API's modules on its first request: not part of a figure.
            for _ in range(2 * http.WORKERS):
                requests.get(f"{server.url}/api/v1/openapi.json", headers=PROXY, timeout=60)
            for n in sizes:
                part = records[:n]
                path = work / f"part-{n}.jsonl"
                path.write_text("\n".join(part) + "\n", encoding="utf-8")
                file_seconds = _timed(lambda path=path: import_file(path))
                _empty(stored=n, way="the file import")
                http_seconds = _timed(
                    lambda part=part: post_records(server.url, token, part, headers=PROXY)
                )
                _empty(stored=n, way="one request")

                def stream(part: list[str] = part, n: int = n) -> None:
                    for start in range(0, len(part), RUN_REQUEST):
                        chunk = part[start : start + RUN_REQUEST]
                        post_records(server.url, token, chunk, run=f"bench-{n}", headers=PROXY)

                run_seconds = _timed(stream)
                _empty(stored=n, way="the run's requests")
                connection.close()
                figures.append(
                    {"records": n, "file": file_seconds, "http": http_seconds, "run": run_seconds}
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"sizes": figures}


if __name__ == "__main__":
    scratch.child_main(_main)
