"""The queue's counts come from the rollup where it answers the filters, and from the viewer's
own rows (reviews, leases, marks) for "My work" and discussion (issue 14: no scan of the queue
per facet). Each must equal counting the transcripts the filters select, whatever the filters,
the viewer and the work done before."""

import random
from dataclasses import replace

import pytest
from django.db import connection
from django.db.models import Count, Q
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from audit import search
from audit.models import Flag, Lease, Status, Transcript
from audit.publish.selection import FILTERS
from audit.review import queue as queues
from audit.review.forms import QueueFilterForm
from audit.review.visibility import STATUS_MEMBERS, status_choices
from audit.team.discussion import needs_discussion_q
from tests.factories import confirm, confirmable, import_fixture, random_work

pytestmark = pytest.mark.django_db


def recounted(filters: queues.QueueFilters, choices) -> dict:
    """Every count of ``facet_counts``, counted on the transcripts the filters select."""

    def rows(without):
        return Transcript.objects.filter(queues.conditions(filters, without=without))

    out = {}
    flags = rows("flag").aggregate(
        **{f.value: Count("id", filter=Q(**{f"flag_{f.value}": True})) for f in Flag}
    )
    out["flag"] = [flags[f.value] for f in Flag]
    by_status = dict(rows("status").values_list("status").annotate(n=Count("id")).order_by())
    out["status"] = [
        sum(by_status.get(s, 0) for s in STATUS_MEMBERS[value])
        if STATUS_MEMBERS[value] is not None
        else sum(by_status.values())
        for value, _ in choices
    ]
    out["mine"] = [
        rows("mine")
        .filter(queues.mine_condition(value, filters.viewer, skipped=filters.skipped))
        .count()
        for value in queues.MINE
    ]
    if queues.oversees_queue(filters.viewer):
        both = rows("discussion").aggregate(
            all=Count("id"), yes=Count("id", filter=needs_discussion_q())
        )
        out["discussion"] = [both["yes"], both["all"] - both["yes"]]
    for name in queues.FACETS:
        column = FILTERS[name].column
        counts = rows(name).values_list(column).annotate(n=Count("id")).order_by("-n", column)
        out[name] = sorted(counts[: queues.FACET_LIMIT], key=lambda vn: (-vn[1], str(vn[0])))
    return out


def computed(filters: queues.QueueFilters, choices, *, match=None) -> dict:
    facets = queues.facet_counts(filters, status_choices=choices, match=match)
    out = {
        key: [item["n"] for item in facets.counts[key]]
        for key in ("flag", "status", "mine", "discussion")
        if key in facets.counts
    }
    for name in queues.FACETS:
        pairs = [
            ("" if item["value"] == queues.EMPTY else item["value"], item["n"])
            for item in facets.counts[name]
            if item["n"]  # a chosen value none of the rows has is listed with 0
        ]
        out[name] = sorted(pairs, key=lambda vn: (-vn[1], str(vn[0])))
    return out


FILTER_SETS = [
    "",
    "status=any",
    "status=any&scope=all",
    "flag=over_block",
    "flag=spot_check&status=settled",
    "task=basic_oversight",
    "worker=(empty)",
    "decision=BLOCK&status=any",
    "mine=reviewed",
    "mine=unsure&status=any",
    "mine=held",
    # A reviewed item is never unreviewed: its counts name the statuses without it.
    "status=unreviewed",
    "status=in_progress",
    "status=disputed&mine=reviewed",
    "discussion=yes",
    "discussion=no&status=any",
    "q=service",
    "q=service&mine=reviewed&status=any",
    "session=none-such",
]


def test_the_queue_counts_equal_a_recount_for_every_filter_and_viewer(
    tmp_path, auditor, auditor2, adjudicator, staff_user
):
    for name in ("noisy_s1", "block_s3", "approve_s2"):
        import_fixture(name)
    random_work(auditor, auditor2, adjudicator, random.Random(14))
    sessions = Transcript.objects.values_list("session_id", flat=True).distinct()
    sets = [
        *FILTER_SETS,
        f"session={sessions[0]}",
        f"session={sessions[1]}&status=any",
        f"session={sessions[0]}&q=service&status=any",
        f"session={sessions[1]}&flag=over_block&scope=all&status=any",
        f"session={sessions[0]}&mine=reviewed&status=any",
    ]
    checked = 0
    for viewer in (auditor, auditor2, adjudicator, staff_user):
        choices = status_choices(viewer)
        for query in sets:
            form = QueueFilterForm(QueryDict(query), viewer=viewer, skipped=())
            filters = form.filters()
            assert computed(filters, choices) == recounted(filters, choices), (
                viewer.username,
                query,
            )
            checked += 1
    assert checked == 4 * len(sets)
    # The work reached the figures: reviews, marks and leases of each kind.
    assert Transcript.objects.exclude(status=Status.UNREVIEWED).count() > 10
    assert Transcript.objects.filter(needs_discussion_q()).exists()
    assert Lease.objects.live().exists()


def test_rollup_answers_only_filters_on_its_columns(auditor):
    def answers(query, without=None):
        filters = QueueFilterForm(QueryDict(query), viewer=auditor, skipped=()).filters()
        return queues.rollup_answers(filters, without=without)

    assert answers("")
    assert answers("flag=over_block&task=t&worker=w&decision=BLOCK&mbtype=x&status=any")
    assert not answers("q=word")
    assert not answers("mine=reviewed")
    assert answers("mine=reviewed", without="mine")
    assert not answers("session=s")


SEARCHES = [
    "q=service",
    "q=service&status=any",
    "q=service&status=any&scope=all",
    "q=service&flag=over_block&status=any",
    "q=service&task=basic_oversight&worker=(empty)",
    "q=service&decision=BLOCK&status=settled",
    "q=service&mine=reviewed&status=any",
    "q=service&discussion=yes",
    "q=service&discussion=no&status=any",
    "q=service #1",
    "q=investigation",
]


def test_a_large_search_match_is_counted_from_its_rollup_as_the_transcripts_count(
    monkeypatch, auditor, auditor2, adjudicator, staff_user
):
    """With every match "large" (more than ``search.SMALL_MATCH`` rows), the queue rolls the
    match up once (``count_match``) and each facet sums it: the counts equal counting the
    transcripts, for every filter beside the words and every viewer."""
    for name in ("noisy_s1", "block_s3", "approve_s2"):
        import_fixture(name)
    random_work(auditor, auditor2, adjudicator, random.Random(15))
    monkeypatch.setattr(search, "SMALL_MATCH", 0)
    rolled_up = 0
    for viewer in (auditor, adjudicator, staff_user):
        choices = status_choices(viewer)
        for query in SEARCHES:
            filters = QueueFilterForm(QueryDict(query), viewer=viewer, skipped=()).filters()
            match = queues.compute_match(filters)
            assert match is not None and match.size > 0 and match.listed is None, query
            with CaptureQueriesContext(connection) as queries:
                counts = computed(filters, choices, match=match)
            assert counts == recounted(filters, choices), (viewer.username, query)
            summed = [q for q in queries if 'FROM "audit_queue_match_count"' in q["sql"]]
            rolls = "#" not in query  # not with #ids
            assert queues.count_match(filters, match) == rolls, query
            assert bool(summed) == rolls, query
            rolled_up += rolls
    assert rolled_up == 3 * (len(SEARCHES) - 1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's search documents")
def test_a_large_match_is_rolled_up_from_its_documents_and_never_written(
    monkeypatch, auditor, auditor2, adjudicator, staff_user
):
    """PostgreSQL: a match too large to list or rank is rolled up from the search documents
    (which carry copies of the facet columns, migration 0025) and never written to the match
    table; its counts equal counting the transcripts and its pages (the first, and the next
    through its cursor) equal those the self-contained full-text subquery selects."""
    for name in ("noisy_s1", "block_s3", "approve_s2"):
        import_fixture(name)
    random_work(auditor, auditor2, adjudicator, random.Random(16))
    monkeypatch.setattr(search, "SMALL_MATCH", 0)
    monkeypatch.setattr(search, "RANK_LIMIT", 0)
    monkeypatch.setattr(queues, "PAGE_SIZE", 3)
    unwritten = 0
    queries = [*SEARCHES, "q=service&scope=all&status=any", "q=service&sort=-priority"]
    for viewer in (auditor, adjudicator, staff_user):
        choices = status_choices(viewer)
        for query in queries:
            filters = QueueFilterForm(QueryDict(query), viewer=viewer, skipped=()).filters()
            match = queues.compute_match(filters)
            assert match is not None and match.listed is None, query
            by_documents = "#" not in query and "mine=" not in query
            assert (match.counted and not match.table) == by_documents, query
            unwritten += by_documents
            counts = computed(filters, choices, match=match)
            assert counts == recounted(filters, choices), (viewer.username, query)
            cursor = ""
            for _ in range(2):  # the first page and the next
                paged = replace(filters, after=cursor)
                page = queues.queue_page(paged, match=match, annotations={}, fields=("id",))
                alone = queues.queue_page(paged, match=None, annotations={}, fields=("id",))
                assert [t.pk for t in page.rows] == [t.pk for t in alone.rows], query
                cursor = page.after
                if not cursor:
                    break
            if by_documents:  # its size: the words' rows in the scope
                matched = Transcript.objects.filter(pk__in=search.matching_ids(filters.text_query))
                if filters.scope != "all":
                    matched = matched.filter(in_queue=True)
                assert match.size == matched.count() > 0, query
    assert unwritten == 3 * 11


def test_a_small_or_an_id_search_is_not_rolled_up(auditor):
    import_fixture("noisy_s1")

    def rolls_up(query):
        filters = QueueFilterForm(QueryDict(query), viewer=auditor, skipped=()).filters()
        return queues.count_match(filters, queues.compute_match(filters))

    assert not rolls_up("")  # no words: no match
    assert not rolls_up("q=service")  # fewer rows than search.SMALL_MATCH: counted by id list
    assert not rolls_up("q=%231")


def test_a_session_filter_names_its_rows_by_id_and_selects_what_its_column_does(
    monkeypatch, auditor
):
    """A session's rows go into the queue's queries as a list of ids (SQLite would otherwise
    test every queued wide row for the session); they select exactly the rows of the session,
    and a session of more than ``SESSION_LISTED`` rows keeps the column condition."""
    for name in ("noisy_s1", "block_s3"):
        import_fixture(name)
    sessions = list(Transcript.objects.values_list("session_id", flat=True).distinct())
    assert len(sessions) >= 2
    for listed in (queues.SESSION_LISTED, 1):
        monkeypatch.setattr(queues, "SESSION_LISTED", listed)
        for session in [*sessions, "none-such"]:
            for extra in ("", "&status=any&scope=all", "&flag=over_block&status=any"):
                query = f"session={session}{extra}"
                filters = QueueFilterForm(QueryDict(query), viewer=auditor, skipped=()).filters()
                rows = Transcript.objects.filter(session_id=session)
                by_column = rows.filter(queues.conditions(replace(filters, session="")))
                chosen = Transcript.objects.filter(queues.conditions(filters))
                assert set(chosen.values_list("pk", flat=True)) == set(
                    by_column.values_list("pk", flat=True)
                ), query
                size = rows.count()
                assert (filters.session_ids is not None) == (size <= listed), query
    assert Transcript.objects.filter(session_id=sessions[0]).count() > 1


@pytest.mark.parametrize("small_match", [search.SMALL_MATCH, 0])
def test_a_listed_session_is_rolled_up_and_counted_as_the_transcripts_count(
    monkeypatch, auditor, auditor2, adjudicator, staff_user, small_match
):
    """A session whose rows are listed by id is rolled up once (``count_match``), with the
    search's match when there are words, small or large, and each facet sums it: the counts
    equal counting the transcripts, for every viewer."""
    for name in ("noisy_s1", "block_s3"):
        import_fixture(name)
    random_work(auditor, auditor2, adjudicator, random.Random(16))
    monkeypatch.setattr(search, "SMALL_MATCH", small_match)
    sessions = list(Transcript.objects.values_list("session_id", flat=True).distinct()[:2])
    queries = [
        f"session={sessions[0]}",
        f"session={sessions[1]}&status=any&scope=all",
        f"session={sessions[0]}&q=service&status=any",
        f"session={sessions[1]}&q=service&flag=over_block&status=any",
    ]
    for viewer in (auditor, adjudicator, staff_user):
        choices = status_choices(viewer)
        for query in queries:
            filters = QueueFilterForm(QueryDict(query), viewer=viewer, skipped=()).filters()
            assert filters.session_ids, query
            match = queues.compute_match(filters)
            assert queues.count_match(filters, match), query
            assert computed(filters, choices, match=match) == recounted(filters, choices), (
                viewer.username,
                query,
            )
    # A session of no rows names none, words or not.
    for query in ("session=none-such", "session=none-such&q=service"):
        nothing = QueueFilterForm(QueryDict(query), viewer=auditor, skipped=()).filters()
        assert not queues.count_match(nothing, queues.compute_match(nothing)), query
        assert computed(nothing, status_choices(auditor), match=queues.compute_match(nothing)) == (
            recounted(nothing, status_choices(auditor))
        )
    # A session too large to list stays a filter.
    monkeypatch.setattr(queues, "SESSION_LISTED", 0)
    large = QueueFilterForm(
        QueryDict(f"session={sessions[0]}&q=service"), viewer=auditor, skipped=()
    ).filters()
    assert large.session_ids is None
    assert not queues.count_match(large, queues.compute_match(large))
    assert computed(large, status_choices(auditor), match=queues.compute_match(large)) == (
        recounted(large, status_choices(auditor))
    )


MY_WORK = [
    "mine=reviewed",
    "mine=reviewed&status=any",
    "mine=unsure&status=any&scope=all",
    "mine=held",
    "mine=skipped&status=any",
    "mine=reviewed&flag=over_block&status=any",
    "mine=reviewed&task=basic_oversight&decision=BLOCK&status=settled",
    "mine=reviewed&discussion=yes&status=any",
    "mine=reviewed&q=service&status=any",
]


def test_my_work_is_rolled_up_and_counted_as_the_transcripts_count(
    auditor, auditor2, adjudicator, staff_user
):
    """The viewer's own items under "My work" (their reviews, unsure ones, leases) are rolled
    up once (``count_match``), beside any other filter, and each facet sums them: the counts
    equal counting the transcripts, for every viewer, whatever their work (none included)."""
    for name in ("noisy_s1", "block_s3"):
        import_fixture(name)
    random_work(auditor, auditor2, adjudicator, random.Random(17))
    sessions = list(Transcript.objects.values_list("session_id", flat=True).distinct()[:1])
    skipped = tuple(Transcript.objects.order_by("pk").values_list("pk", flat=True)[:3])
    for viewer in (auditor, auditor2, adjudicator, staff_user):
        choices = status_choices(viewer)
        for query in [*MY_WORK, f"session={sessions[0]}&mine=reviewed&status=any"]:
            form = QueueFilterForm(QueryDict(query), viewer=viewer, skipped=skipped)
            filters = form.filters()
            match = queues.compute_match(filters)
            with CaptureQueriesContext(connection) as queries:
                counts = computed(filters, choices, match=match)
            assert counts == recounted(filters, choices), (viewer.username, query)
            # The skipped ones are a list of ids: counted by it, not rolled up.
            summed = any('FROM "audit_queue_match_count"' in q["sql"] for q in queries)
            assert summed == ("mine=skipped" not in query), query
    assert Transcript.objects.exclude(status=Status.UNREVIEWED).count() > 10


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL setting")
@pytest.mark.django_db(transaction=True)  # as a request runs: no transaction around it
@pytest.mark.parametrize(
    "query",
    [
        "q=service",  # rolled up from the documents (compute_match)
        "q=service&mine=reviewed&status=any",  # from the transcripts (count_match)
    ],
)
def test_the_roll_up_alone_runs_with_more_work_mem(auditor, monkeypatch, query):
    """PostgreSQL: the roll-up's statement runs with ``ROLL_UP_WORK_MEM`` (so that its join
    and grouping stay in memory) and JIT off, and the connection's settings are its own again
    afterwards (they are the roll-up's transaction's), whichever rows it rolls up."""
    import_fixture("noisy_s1")
    monkeypatch.setattr(search, "SMALL_MATCH", 0)
    confirm(confirmable(Transcript.objects.in_queue(), 1)[0], auditor)

    def settings() -> tuple[str, str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('work_mem'), current_setting('jit')")
            return cursor.fetchone()

    before = settings()
    assert before[0] != queues.ROLL_UP_WORK_MEM
    during = []

    def note(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "audit_queue_match_count"'):
            context["cursor"].execute("SELECT current_setting('work_mem'), current_setting('jit')")
            during.append(context["cursor"].fetchone())
        return execute(sql, params, many, context)

    filters = QueueFilterForm(QueryDict(query), viewer=auditor, skipped=()).filters()
    with connection.execute_wrapper(note):
        match = queues.compute_match(filters)
        assert queues.count_match(filters, match)
    assert during == [(queues.ROLL_UP_WORK_MEM, "off")]
    assert settings() == before
