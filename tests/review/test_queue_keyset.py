"""The queue's keyset pages (audit.review.queue): walking every page, forwards and back, under
every sort, gives every row exactly once, in the order of a plain ORDER BY; cursors that are not
cursors fall back to the first page."""

import random
import re
from dataclasses import replace

import pytest
from django.db.models import F
from django.http import QueryDict
from django.urls import reverse

from audit.models import Transcript
from audit.review import queue as queues
from audit.review.forms import QueueFilterForm
from audit.review.queue import PAGE_SIZE, QueueFilters
from tests.factories import import_fixture, import_records, make_misbehavior, random_work

pytestmark = pytest.mark.django_db

N = 260


@pytest.fixture
def many(tmp_path):
    """N queued rows with many equal sort values: 7 sessions, 9 step numbers, a sixth of the
    timestamps missing and the rest drawn from 11 values."""
    rng = random.Random(14)
    records = []
    for i in range(N):
        records.append(
            make_misbehavior(
                decision="APPROVE",
                session_id=f"s{rng.randrange(7)}",
                step_number=rng.randrange(9),
                timestamp=None if rng.random() < 1 / 6 else 1_700_000_000 + rng.randrange(11) / 4,
                proposal={
                    "target": f"t{i}",
                    "worker_reasoning": "common " + "word " * rng.randrange(1, 6) + f"n{i}",
                },
                # Suspicious reasoning on some: a second flag, so priorities differ.
                cot_analysis={"is_suspicious": rng.random() < 0.3},
            )
        )
    rows = import_records(records, tmp_path)
    assert sum(t.in_queue for t in rows) == N
    assert any(t.timestamp is None for t in rows)
    return rows


def plain_order(sort: str) -> list:
    """The order a sort means: its value (NULLs last), then the id in the same direction,
    except under priority, whose ties go oldest first when the highest comes first (the order
    "Next" hands items out in)."""
    key = sort.lstrip("-")
    field = queues.SORTS[key][0]
    desc = sort.startswith("-")
    first = F(field).desc(nulls_last=True) if desc else F(field).asc(nulls_last=True)
    ids_desc = not desc if key == "priority" else desc
    return [first] if field == "id" else [first, "-id" if ids_desc else "id"]


def walk(filters: QueueFilters, *, backwards_from_end: bool = False) -> list[int]:
    match = queues.compute_match(filters)
    page = queues.queue_page(filters, match=match, annotations={}, fields=("id",))
    pages = [page]
    while page.after:
        filters = replace(filters, after=page.after, before="")
        page = queues.queue_page(filters, match=match, annotations={}, fields=("id",))
        pages.append(page)
    if not backwards_from_end:
        return [t.pk for p in pages for t in p.rows]
    back = [page]
    while page.before:
        filters = replace(filters, after="", before=page.before)
        page = queues.queue_page(filters, match=match, annotations={}, fields=("id",))
        back.append(page)
    return [t.pk for p in reversed(back) for t in p.rows]


SORTS = [value for value, _label in queues.SORT_CHOICES if value]


@pytest.mark.parametrize("sort", SORTS)
def test_walking_every_page_gives_every_row_once_in_order(many, sort):
    filters = QueueFilters(sort=sort)
    expected = list(
        Transcript.objects.in_queue().order_by(*plain_order(sort)).values_list("pk", flat=True)
    )
    forward = walk(filters)
    assert len(forward) == len(set(forward)) == N
    assert forward == expected
    assert walk(filters, backwards_from_end=True) == expected


def test_walking_relevance_pages_follows_the_ranking(many):
    filters = QueueFilters(q="common word")
    match = queues.compute_match(filters)
    assert match is not None and match.ranked and match.size == N
    expected = list(
        Transcript.objects.filter(pk__in=match.ids())
        .annotate(r=match.rank())
        .order_by("r", "id")
        .values_list("pk", flat=True)
    )
    assert (
        len(
            {
                round(r, 9)
                for r in Transcript.objects.annotate(r=match.rank())
                .filter(pk__in=match.ids())
                .values_list("r", flat=True)
            }
        )
        > 1
    )
    assert walk(filters) == expected
    assert walk(filters, backwards_from_end=True) == expected


def test_walking_a_large_match_through_the_temporary_table(many, monkeypatch):
    from audit import search

    monkeypatch.setattr(search, "SMALL_MATCH", 10)
    filters = QueueFilters(q="common", sort="-timestamp")
    expected = list(
        Transcript.objects.in_queue()
        .order_by(*plain_order("-timestamp"))
        .values_list("pk", flat=True)
    )
    assert walk(filters) == expected


def next_link(html: str) -> str:
    found = re.search(r'id="page-next" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else ""


def test_pages_through_the_view_keep_filters_and_offer_first_and_previous(auditor_client, many):
    url = reverse("queue") + "?sort=-timestamp&session=s1"
    seen: list[int] = []
    pages = 0
    while url:
        html = auditor_client.get(url).content.decode()
        ids = [int(pk) for pk in re.findall(r'data-id="(\d+)"', html)]
        assert len(ids) <= PAGE_SIZE
        seen += ids
        if pages:
            assert 'id="page-first"' in html and 'id="page-prev"' in html
            assert "session=s1" in url and "sort=-timestamp" in url
        pages += 1
        url = next_link(html)
    expected = list(
        Transcript.objects.in_queue()
        .filter(session_id="s1")
        .order_by(*plain_order("-timestamp"))
        .values_list("pk", flat=True)
    )
    assert seen == expected


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("-priority", "x~y"),
        ("-priority", "1.5~3"),
        ("-priority", "99999999999999999999999~3"),
        ("-priority", "3~99999999999999999999999"),
        ("step", "~"),
        ("step", "3"),
        ("timestamp", "nan~3"),
        ("timestamp", "inf~3"),
        ("timestamp", "1e400~3"),
        ("session", "s\x00~3"),
        ("session", "x" * 400 + "~3"),
        ("id", "-1"),
        ("id", "abc"),
        ("", "~~~"),
    ],
)
def test_cursors_that_are_not_cursors_fall_back_to_the_first_page(
    auditor_client, many, sort, cursor
):
    first = auditor_client.get(reverse("queue"), {"sort": sort} if sort else {})
    for name in ("after", "before"):
        params = {name: cursor, **({"sort": sort} if sort else {})}
        response = auditor_client.get(reverse("queue"), params)
        assert response.status_code == 200
        ids = re.findall(r'data-id="(\d+)"', response.content.decode())
        assert ids == re.findall(r'data-id="(\d+)"', first.content.decode())


def test_a_null_timestamp_cursor_pages_among_undated_rows(many):
    undated = list(
        Transcript.objects.filter(timestamp__isnull=True)
        .order_by("id")
        .values_list("pk", flat=True)
    )
    cursor = f"~{undated[0]}"
    page = queues.queue_page(
        QueueFilters(sort="timestamp", after=cursor), match=None, annotations={}, fields=("id",)
    )
    assert [t.pk for t in page.rows] == undated[1 : PAGE_SIZE + 1]


@pytest.mark.parametrize("query", ["scope=all", "scope=all&status=any", "scope=all&q=service"])
def test_every_row_pages_in_order_when_scope_all_is_read_range_by_range(
    monkeypatch, auditor, auditor2, adjudicator, query
):
    """With scope "all" the priority sort reads one index range per (in_queue, status) pair
    and merges them (``queues._ranges_apart``): walking its pages gives every selected row,
    queued or not, once, in the order of one ORDER BY over the selection."""
    from audit import search

    for name in ("noisy_s1", "block_s3", "approve_s2"):
        import_fixture(name)
    random_work(auditor, auditor2, adjudicator, random.Random(3))
    # Every match large and unranked (in priority order), so the words' match is read range by
    # range too.
    monkeypatch.setattr(search, "SMALL_MATCH", 0)
    monkeypatch.setattr(search, "RANK_LIMIT", 0)
    monkeypatch.setattr(queues, "SORTED_MATCH", 0)
    filters = QueueFilterForm(QueryDict(query), viewer=auditor, skipped=()).filters()
    match = queues.compute_match(filters)
    ranges = queues._ranges_apart(filters, queues.effective_sort(filters, match), match)
    assert ranges is not None and {part["in_queue"] for part in ranges} == {True, False}
    expected = list(
        Transcript.objects.filter(queues.conditions(filters, match=match))
        .order_by(*plain_order("-priority"))
        .values_list("pk", flat=True)
    )
    assert len(expected) > 2 * PAGE_SIZE
    assert Transcript.objects.filter(pk__in=expected, in_queue=False).exists()
    assert len({status for part in ranges for status in [part["status"]]}) > 1
    assert walk(filters) == expected
    assert walk(filters, backwards_from_end=True) == expected


@pytest.mark.parametrize(
    "query",
    [
        "scope=all&q=%231",
        "scope=all&mine=reviewed",
        "scope=all&session={session}",
        "scope=all&q=service&sort=-priority",
    ],
)
def test_scope_all_sorts_rows_it_knows_are_few(auditor, query):
    """Rows named by id, the viewer's own, and a match of at most ``SORTED_MATCH`` rows are
    sorted whole: walking ranges of every row to find them would cost more."""
    import_fixture("noisy_s1")
    session = Transcript.objects.values_list("session_id", flat=True).first()
    query = query.format(session=session)
    filters = QueueFilterForm(QueryDict(query), viewer=auditor, skipped=()).filters()
    assert filters.session_ids or "session" not in query
    match = queues.compute_match(filters)
    assert queues._ranges_apart(filters, queues.effective_sort(filters, match), match) is None
