"""``audit.bench.http.measure`` runs end to end through gunicorn at a tiny size (300 records: a
queue of more than one page, so the deep page is a followed link) and reports every
figure with no HTTP error (no timing assertions)."""

from audit.bench import http
from audit.demo.generator import write_jsonl as generate


def test_measure_reports_every_page_and_verdict_figure_without_errors(tmp_path):
    source = tmp_path / "records.jsonl"
    generate(source, count=300, seed=1)

    figures = http.measure(source, tmp=tmp_path, clients=2, requests_per_page=3)

    assert "error" not in figures, figures.get("error")
    assert figures["records"] == 300
    assert figures["reviewed"] == 15  # 5%
    for name in http.PAGES:
        for mode in ("sequential", "concurrent"):
            figure = figures["pages"][name][mode]
            assert figure["n"] == 3, (name, mode, figure)
            assert 0 < figure["p50_ms"] <= figure["p95_ms"], (name, mode, figure)
    # The deep page is reached through the pager's links, at least one of them.
    assert figures["deep_page"]["hops"] >= 1
    assert figures["deep_page"]["walk"]["n"] == figures["deep_page"]["hops"]
    verdicts = figures["verdicts"]
    assert verdicts["sequential"]["n"] == 3 and verdicts["sequential"]["per_s"] > 0
    assert verdicts["concurrent"]["n"] == 2 * 3 and verdicts["concurrent"]["per_s"] > 0
    assert verdicts["refused"] == 0 and not verdicts["ran_out"]
    requests = figures["requests"]
    assert (requests["server_errors"], requests["failed"], requests["unexpected"]) == (0, 0, 0), (
        requests
    )
    assert requests["total"] > 0 and requests["first_error"] == ""

    printed = "\n".join(http.lines(figures))
    # The server's memory for its pages, which the figures depend on, is said (PostgreSQL).
    if figures["database"] == "postgresql":
        assert figures["shared_buffers"] and (
            f"PostgreSQL shared_buffers {figures['shared_buffers']}" in printed.splitlines()[0]
        )
    else:
        assert figures["shared_buffers"] is None and "shared_buffers" not in printed
    for name in http.PAGES:
        assert f"{name} (1 client)" in printed and f"{name} (2 clients)" in printed
    assert "verdicts/s" in printed and "0 5xx, 0 without an answer" in printed


def test_lines_say_when_the_measure_failed():
    assert http.lines({"error": "gunicorn did not start"}) == [
        f"{'pages through gunicorn':<34} not measured: gunicorn did not start"
    ]


def test_a_page_that_fails_while_resolving_is_counted_not_fatal(monkeypatch):
    from types import SimpleNamespace

    from audit.bench import http

    tally = http.Tally()
    client = http.Client("http://127.0.0.1:9", tally)

    def failing(method, url, *, expected=(200,), **kwargs):
        tally.note(f"{method} {url}", 500, expected=expected)
        return SimpleNamespace(status_code=500, headers={}), 0.01

    monkeypatch.setattr(client, "request", failing)
    assert client.resolve("/dashboard/") == "/dashboard/"
    assert tally.figures()["server_errors"] == 1
    assert tally.figures()["first_error"] == "GET /dashboard/: 500"


def test_measure_on_a_database_an_earlier_child_filled_reviews_its_records(tmp_path):
    # bench imports N once, in the import child, and measures pages on that same database:
    # the pages child finds every line stored and reviews 5% of the records already there.
    from audit.bench import imports, scratch

    source = tmp_path / "records.jsonl"
    generate(source, count=300, seed=1)
    with scratch.database(tmp_path) as shared:
        found = imports.measure(source, tmp=tmp_path, env=shared)
        assert found["app"]["records"] == 300, found
        figures = http.measure(source, tmp=tmp_path, clients=2, requests_per_page=2, env=shared)
    assert "error" not in figures, figures.get("error")
    assert (figures["records"], figures["reviewed"]) == (300, 15)
    assert figures["requests"]["server_errors"] == 0
    assert not list(tmp_path.glob("scratch-*"))
