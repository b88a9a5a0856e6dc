"""The queue's full-text search (audit.search, audit.review.queue): the index kept in step by
the database on every write, the query syntax, hostile input, ranking, highlighting."""

import re

import pytest
from django.db import connection
from django.urls import reverse

from audit import search
from audit.models import Transcript, TranscriptText
from audit.review import queue as queues
from audit.review.queue import QueueFilters
from tests.factories import import_records, make_misbehavior

pytestmark = pytest.mark.django_db


def reasoning(text: str, step: int, **overrides) -> dict:
    return make_misbehavior(
        decision="APPROVE",
        session_id="s_search",
        step_number=step,
        proposal={"worker_reasoning": text, "target": f"svc-{step}"},
        **overrides,
    )


@pytest.fixture
def texts(tmp_path):
    rows = import_records(
        [
            reasoning("Restarting the primary database to clear locks", 1),
            reasoning("retry the same fix on retry_loop_handler after db-01.example.com failed", 2),
            reasoning("database database database primary replica lag", 3),
            reasoning("Nothing relevant here at all", 4),
            reasoning("naïve café résumé", 5),
        ],
        tmp_path,
    )
    return {t.step_number: t for t in rows}


def found(q: str, **filters) -> set[int]:
    """Step numbers of the open queued rows the queue finds for ``q`` (through the request's
    match, as the queue page does)."""
    f = QueueFilters(q=q, **filters)
    match = queues.compute_match(f)
    page = queues.queue_page(f, match=match, annotations={}, fields=("id", "step_number"))
    return {t.step_number for t in page.rows}


def found_by_subquery(q: str) -> set[int]:
    """The same through the self-contained subquery that "Next" uses."""
    rows = Transcript.objects.filter(queues.for_next(QueueFilters(q=q)))
    return set(rows.values_list("step_number", flat=True))


@pytest.mark.parametrize(
    ("q", "steps"),
    [
        ("database", {1, 3}),
        ("DATABASE primary", {1, 3}),  # words are AND-ed, case does not matter
        ("databa", {1, 3}),  # prefix
        ("primary replica", {3}),
        ('"primary replica"', {3}),  # phrase
        ('"replica primary"', set()),  # a phrase keeps its order
        ('"databa"', set()),  # a quoted word is exact
        ("retry_loop", {2}),  # punctuation splits a word into a phrase of its parts
        ("loop_retry", set()),
        ("example", {2}),  # hosts split like any other word
        ("db-01.example", {2}),
        ("naïve", {5}),
        ("naive", set()),  # no diacritic folding, on either database
        ("r", set()),  # a single character is a whole word, not a prefix
        ("zzz", set()),
    ],
)
def test_search_semantics(texts, q, steps):
    assert found(q) == steps
    assert found_by_subquery(q) == steps


def test_search_by_the_row_label_finds_that_row(texts):
    target = texts[4]
    assert found(f"#{target.pk}") == {4}
    assert found(f"#{target.pk} #{texts[1].pk}") == {1, 4}  # ids are OR-ed
    assert found(f"#{target.pk} database") == set()  # and AND-ed with the words
    assert found(f"#{texts[3].pk} database") == {3}
    assert found("#99999999999999999999") == set()


HOSTILE_QUERIES = [
    '"',
    '""',
    "*",
    "AND",
    "OR NOT",
    "NEAR(",
    "NEAR(a b, 2)",
    "col:x",
    "search_text:database",
    "^database",
    "database*",
    "(database",
    "a & b | !c <-> d:*",
    "'quote",
    "\\",
    "%_%",
    "-database",
    "\x00",
    "data\x00base",
    "\ud800",
    "#",
    "#-1",
    "x" * 10_000,
    "a " * 5_000,
    '"' * 10_000,
    "database " + "NEAR(" * 2000,
]


@pytest.mark.parametrize("q", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
def test_hostile_queries_never_fail(texts, q):
    found(q)
    found_by_subquery(q)
    query = search.parse(q)
    assert len(query.terms) <= search.MAX_TERMS


def test_hostile_queries_through_the_view(auditor_client, texts):
    # (A lone surrogate cannot be sent over HTTP: the test client refuses to encode it.)
    for q in [q for q in HOSTILE_QUERIES if q != "\ud800"]:
        response = auditor_client.get(reverse("queue"), {"q": q})
        assert response.status_code in (200, 302), q
        if response.status_code == 302:  # a clean URL, then the page
            assert auditor_client.get(response["Location"]).status_code == 200


def test_operators_are_plain_words(texts):
    # FTS5 would read these as operators; here they are words the text must contain.
    assert found("database AND") == set()
    assert found("database OR primary") == set()
    assert found("NEAR database") == set()


def test_nothing_to_search_for_finds_nothing_and_says_why(auditor_client, texts):
    html = auditor_client.get(reverse("queue"), {"q": "*"}).content.decode()
    assert len(re.findall(r"data-row ", html)) == 0
    assert "has no words to search for" in html


def test_too_many_words_are_dropped_and_the_page_says_so(auditor_client, texts):
    q = " ".join(f"w{i}" for i in range(search.MAX_TERMS + 3))
    assert search.parse(q).dropped == 3
    html = auditor_client.get(reverse("queue"), {"q": q}).content.decode()
    assert "3 more left out" in html


# --- the index follows every write ---------------------------------------------------------------


def test_index_follows_inserts_updates_and_deletes(texts):
    t = texts[4]
    assert found("zebra") == set()
    TranscriptText.objects.filter(pk=t.pk).update(search_text="a zebra crossing")
    assert found("zebra") == {4}
    assert found("relevant") == set()  # the old text is gone from the index
    Transcript.including_unfinished.filter(pk=t.pk).delete()
    assert found("zebra") == set()
    assert found_by_subquery("zebra") == set()


def test_a_verdict_save_does_not_reindex_unchanged_text(texts, auditor):
    from tests.factories import confirm

    confirm(texts[1], auditor)
    assert found("restarting", status="any") == {1}


def test_rows_of_unfinished_batches_stay_invisible(texts):
    batch = texts[1].batch
    type(batch).objects.filter(pk=batch.pk).update(complete=False)
    assert found("database") == set()
    assert found_by_subquery("database") == set()


def test_search_triggers_survive_every_migration():
    # A later migration remaking audit_transcript_text on SQLite drops its triggers;
    # audit.search.restore_index puts them back after migrate.
    assert search.missing_triggers() == []


def test_restore_index_rebuilds_a_lost_index(texts):
    vendor = connection.vendor
    name = {"sqlite": "audit_transcript_fts_update", "postgresql": "audit_transcript_search_update"}
    with connection.cursor() as cursor:
        drop = f"DROP TRIGGER {name[vendor]}"
        cursor.execute(drop if vendor == "sqlite" else f"{drop} ON audit_transcript_text")
    assert search.missing_triggers() == [name[vendor]]
    TranscriptText.objects.filter(pk=texts[4].pk).update(search_text="a zebra crossing")
    assert found("zebra") == set()  # missed while the trigger was gone
    assert search.restore_index() is True
    assert search.missing_triggers() == []
    assert found("zebra") == {4}


# --- ranking -------------------------------------------------------------------------------------


def ids_in(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-id="(\d+)"', html)]


def test_search_ranks_by_relevance_unless_another_sort_is_chosen(auditor_client, texts):
    html = auditor_client.get(reverse("queue"), {"q": "database"}).content.decode()
    # Three mentions in a short text rank above one in a longer one.
    assert ids_in(html) == [texts[3].pk, texts[1].pk]
    html = auditor_client.get(reverse("queue"), {"q": "database", "sort": "step"}).content
    assert ids_in(html.decode()) == [texts[1].pk, texts[3].pk]


def test_too_many_matches_keep_priority_order_and_say_why(auditor_client, texts, monkeypatch):
    monkeypatch.setattr(search, "RANK_LIMIT", 1)
    html = auditor_client.get(reverse("queue"), {"q": "database"}).content.decode()
    assert "too many to rank by relevance" in html
    expected = list(
        Transcript.objects.filter(pk__in=[texts[1].pk, texts[3].pk])
        .order_by("-priority", "id")
        .values_list("pk", flat=True)
    )
    assert ids_in(html) == expected


def test_too_many_matches_to_rank_say_so_when_fewer_of_them_are_queued(
    auditor_client, texts, monkeypatch
):
    """The note is about the match (two rows, one more than ranked), not the queue's share of
    it (one row): on PostgreSQL a large match's size is the queued rows it rolled up."""
    monkeypatch.setattr(search, "RANK_LIMIT", 1)
    Transcript.objects.filter(pk=texts[1].pk).update(in_queue=False)
    html = auditor_client.get(reverse("queue"), {"q": "database"}).content.decode()
    assert "too many to rank by relevance" in html
    assert ids_in(html) == [texts[3].pk]


def test_large_and_small_matches_agree(texts, monkeypatch):
    small = {q: found(q) for q in ("database", "primary", "the")}
    monkeypatch.setattr(search, "SMALL_MATCH", 0)  # the temporary table, never a list
    assert {q: found(q) for q in small} == small


# --- highlighting --------------------------------------------------------------------------------

NASTY = '"><img src=x onerror=alert(1)> <script>alert(2)</script> database'


def test_rows_highlight_the_matched_words(auditor_client, texts):
    html = auditor_client.get(reverse("queue"), {"q": "databa primary"}).content.decode()
    excerpt = re.search(rf'data-match-for="{texts[1].pk}".*?</tr>', html, re.S).group(0)
    assert "<mark>database</mark>" in excerpt and "<mark>primary</mark>" in excerpt
    assert "<mark>restarting</mark>" not in excerpt


def test_highlighting_escapes_hostile_text(auditor_client, tmp_path):
    import_records(
        [
            make_misbehavior(
                decision="APPROVE",
                proposal={"worker_reasoning": NASTY, "target": "<script>alert(3)</script>"},
            )
        ],
        tmp_path,
    )
    for q in ("database", "script", "img onerror", "alert"):
        html = auditor_client.get(reverse("queue"), {"q": q}).content.decode()
        assert "<script>alert" not in html and "<img" not in html, q
        assert 'onerror=alert(1)">' not in html
        assert "<mark>" in html, q
    html = auditor_client.get(reverse("queue"), {"q": "script"}).content.decode()
    assert "&lt;<mark>script</mark>&gt;" in html


def test_highlight_is_built_from_escaped_pieces():
    query = search.parse("script alert")
    out = str(search.highlight(NASTY, query))
    assert "<script>" not in out and "<img" not in out
    assert "&lt;<mark>script</mark>&gt;<mark>alert</mark>(2)&lt;/<mark>script</mark>&gt;" in out
    assert str(search.highlight("nothing here", query)) == ""
    assert (
        str(search.highlight("<b>bold</b>", search.parse("b")))
        == "&lt;<mark>b</mark>&gt;bold&lt;/<mark>b</mark>&gt;"
    )


def test_marked_words_are_the_whole_words_each_term_matches():
    """The words ``search.mark`` puts in ``<mark>``, found by one regular expression, are the
    words of the text (runs of letters and digits) that a term matches: one of its words, or a
    word starting with its last word when it is a prefix; nothing inside a longer word."""
    import random

    rng = random.Random(21)
    alphabet = ["ret", "retry", "fix", "é", "ß", "ab", "1", "_", " ", "-", "<", "x", "Ω", "\n"]

    def marked_by_word(text, query):
        words = []
        for m in re.finditer(r"[^\W_]+", text):
            for term in query.terms:
                last = term.tokens[-1]
                if (term.prefix and m.group(0).startswith(last)) or m.group(0) in term.tokens:
                    words.append((m.start(), m.group(0)))
                    break
        return words

    queries = ["ret", "retry", "fix ab", '"ret fix"', "r", "é", "1 x", "ßab", "retry_fix", "Ω"]
    checked = 0
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for q in queries:
            query = search.parse(q)
            found = [(m.start(), m.group(0)) for m in search._hits(text, query)]
            assert found == marked_by_word(text, query), (text, q)
            checked += bool(found)
    assert checked > 300  # most texts hold a word some query marks
    # Prefix and whole word: "ret" marks "retry" (prefix), "retry" does not mark "ret".
    assert str(search.mark("ret retry", search.parse("retry"))) == "ret <mark>retry</mark>"
    assert str(search.mark("a_ret", search.parse('"ret"'))) == "a_<mark>ret</mark>"


def test_refilling_the_match_leaves_no_dead_rows_behind(tmp_path):
    """Each search refills the connection's temporary table: emptied, not deleted row by row
    (on PostgreSQL a DELETE leaves every row dead, and nothing vacuums a temporary table), so
    the same search again and again keeps it the size of one match, and finds the same."""
    # More matching rows than one table page holds, so dead ones would need more pages.
    import_records(
        [reasoning(f"database step {n}", n) for n in range(1, 401)], tmp_path, name="many.jsonl"
    )
    query = search.parse("database")

    def fill() -> tuple[int, int]:
        match = search.Match.compute(query, rank=True)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_total_relation_size('pg_temp.audit_queue_match')")
            else:
                cursor.execute("SELECT count(*) FROM temp.audit_queue_match")
            (size,) = cursor.fetchone()
        return match.size, size

    first = fill()
    assert first[0] == 400
    assert [fill() for _ in range(5)] == [first] * 5


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's match is a rowid table")
def test_the_match_index_is_built_after_the_fill_when_queries_read_the_table(texts, monkeypatch):
    """PostgreSQL: a unique index on the match's table is built after the fill when the queries
    will read the table (a match too large to list them, or a ranked one, whose rows' ranks are
    looked up by id), and each fill first drops the one before (a match listed by id and not
    ranked, after a ranked one, has none). The rows found are the same each way."""

    def indexed() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('pg_temp.audit_queue_match_id') IS NOT NULL")
            return cursor.fetchone()[0]

    query = search.parse("database")
    listed = search.Match.compute(query, rank=False)
    assert listed.listed is not None and not indexed()
    ranked = search.Match.compute(query, rank=True)
    assert ranked.ranked and indexed()
    assert search.Match.compute(query, rank=False).listed is not None and not indexed()
    monkeypatch.setattr(search, "SMALL_MATCH", 0)
    large = search.Match.compute(query, rank=False)
    assert large.listed is None and large.size == listed.size == 2 and indexed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM pg_temp.audit_queue_match ORDER BY id")
        assert tuple(pk for (pk,) in cursor.fetchall()) == tuple(sorted(listed.listed))
    assert found("database") == {1, 3}
