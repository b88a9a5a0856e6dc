"""The bench command runs end to end and prints its figures (no timing assertions)."""

import re

import pytest
from django.core.management import call_command

from audit.models import ImportBatch, Review, Transcript

FIGURES = (
    "generate",
    "import ",
    "import chunk size",
    "import peak memory",
    "reviews recorded",
    "export ",
    "export chunk size",
    "export peak memory",
    "summary.json metrics",
    "queue page",
    "item page",
    "nested record page (62 levels)",
    "2.6 MB record page",
    "ordinary record page",
    "evaluate_monitors (",
    "claim next item",
    "gzip bomb refused",
    "verdicts during an import",
    "import CPU, floor",
    "import CPU, app",
    "import vs floor",
    "re-import (all duplicates)",
    "import peak RSS",
    "export, child (",
    "publish_release, child (",
    "gunicorn",
    "dashboard monitors",
    "ingest, file import (",
    "ingest, HTTP, 1 request (",
    "process max RSS",
)


@pytest.mark.django_db
def test_bench_prints_every_figure_and_leaves_no_data(capsys):
    call_command("bench", "--count", "40", "--quick")
    out = capsys.readouterr().out
    for name in FIGURES:
        assert name in out, name
    assert "records: 40" in out
    assert "HTTP 200" in out
    assert "refused" in out and "NOT refused" not in out
    assert "verdicts during an import" in out and "not measured" not in out
    assert re.search(r"HTTP errors\s+0 5xx", out), out
    assert not Transcript.objects.exists()
    assert not Review.objects.exists()
    assert not ImportBatch.objects.exists()


@pytest.mark.django_db
def test_bench_compares_export_memory_at_sizes_of_several_chunks(capsys):
    # Two sizes inside one chunk would show growth that is not there; both must span chunks.
    call_command("bench", "--count", "40", "--quick", "--no-scratch")
    out = capsys.readouterr().out
    chunk = int(re.search(r"export chunk size\s+(\d+) records", out).group(1))
    sizes = [int(n) for n in re.findall(r"export peak memory \((\d+)\)", out)]
    assert len(sizes) == 2 and sizes[0] < sizes[1] == 40
    assert all(size >= 2 * chunk for size in sizes), (chunk, sizes)


@pytest.mark.django_db
def test_bench_compares_import_memory_at_sizes_of_several_chunks(capsys):
    # As for export: one figure says nothing about growth; N/10 and N, each several chunks.
    call_command("bench", "--count", "40", "--quick", "--no-scratch")
    out = capsys.readouterr().out
    chunk = int(re.search(r"import chunk size\s+(\d+) rows per insert", out).group(1))
    figures = re.findall(r"import peak memory \((\d+)\)\s+[\d.]+ MB .*, (\d+) chunks", out)
    sizes = [int(size) for size, _ in figures]
    assert len(sizes) == 2 and sizes[0] < sizes[1] == 40, out
    assert all(size >= 2 * chunk for size in sizes), (chunk, sizes)
    assert [int(chunks) for _, chunks in figures] == [size // chunk for size in sizes]


@pytest.mark.django_db
def test_bench_rejects_a_zero_count():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="at least 1"):
        call_command("bench", "--count", "0")


@pytest.mark.django_db
def test_bench_past_the_traced_size_imports_once_and_leaves_memory_to_the_children(
    capsys, monkeypatch
):
    # At a million records tracemalloc would take hours: past TRACED_MAX the in-process import
    # is timed once and kept (rolled back with the rest), and memory comes from child RSS.
    from audit.management.commands import bench

    monkeypatch.setattr(bench, "TRACED_MAX", 30)
    imports = []
    real = bench.import_file
    monkeypatch.setattr(bench, "import_file", lambda *a, **k: imports.append(a) or real(*a, **k))
    call_command("bench", "--count", "40", "--quick", "--no-scratch")
    out = capsys.readouterr().out
    assert re.search(r"import peak memory\s+past 30 records, measured as child", out), out
    assert re.search(r"export peak memory\s+past 30 records, measured as child", out), out
    assert "MB (tracemalloc)" not in out
    # The bench file once, then the monitors' 10 x N file, and the 62-level hostile record.
    assert [a[0].name for a in imports][:2] == ["bench.jsonl", "monitors-10n.jsonl"], imports
    assert not Transcript.objects.exists()
