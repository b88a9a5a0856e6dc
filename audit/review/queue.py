"""The review queue: which items a queue URL lists, in which order, a page of them, and the
counts beside each filter.

The filters are the selection vocabulary (``audit.publish.selection``) plus the queue's own
extras: free-text search (``audit.search``), scope (flagged items or all), the status groups a
viewer may use (``audit.review.visibility``), sort and position. Each facet's counts apply every
other filter, so an option says how many rows choosing it would give; the total is the status
facet's count of the chosen status, so it costs no query of its own.

Pages are keyset pages: a page starts after (or ends before) a cursor, the sort value and id of
the row at its edge, ``<value>~<id>`` in the URL (``?after=7~1248``; an empty value is a row
without a timestamp; the id sort's cursor is the id alone). So page 400 costs what page 1 costs,
and a page's rows stay put while items are reviewed around them. Old ``?page=N`` links are
redirected to the first page (``clean_query`` drops the parameter): page numbers of a queue that
changes under review never pointed at the same rows for long.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.db import connection, connections, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.db.models.expressions import BaseExpression, OrderBy
from django.db.models.functions import Coalesce
from django.http import QueryDict
from django.urls import reverse

from audit import rollup, search
from audit.metrics.summaries import flagged_q
from audit.models import (
    FLAG_PRIORITY,
    OPEN_STATUSES,
    DiscussionMark,
    Flag,
    Lease,
    MatchCount,
    Review,
    Rollup,
    SearchDocument,
    Status,
    Transcript,
    TranscriptQuerySet,
    Verdict,
    parse_id,
)
from audit.permissions import ADJUDICATOR, has_role, is_staff
from audit.publish.selection import FILTERS, Selection
from audit.review.visibility import ANY, OPEN, STATUS_MEMBERS, own_verdict_reviews
from audit.team.discussion import needs_discussion_q

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.backends.base.base import BaseDatabaseWrapper

SORTS = {
    "priority": ("priority", "Priority"),
    "step": ("step_number", "Step"),
    "session": ("session_id", "Session"),
    "timestamp": ("timestamp", "Time"),
    "id": ("id", "Import order"),
}
# The default sort: relevance when searching (and the matches are few enough to rank), else
# priority, highest first.
BEST = ""
FALLBACK_SORT = "-priority"
# The sort by relevance, which only the default stands for (never in a URL).
RANK = "rank"
SORT_CHOICES = [
    (BEST, "Best match"),
    *(
        (f"{sign}{key}", f"{label} {'↓' if sign else '↑'}")
        for key, (_field, label) in SORTS.items()
        for sign in ("-", "")
    ),
]
# Columns that may be NULL sort after every value, in both directions.
NULLABLE = {"timestamp"}
PAGE_SIZE = 50
# Longest cursor text looked at (a session id is at most 200 characters).
CURSOR_MAX_LENGTH = 300
INT_RANGE = (-(2**63), 2**63 - 1)
FACET_LIMIT = 60
# With scope "all", a match of at most this many rows is sorted whole for a page rather than
# read range by range (``_ranges_apart``): walking ranges to find a page costs about
# PAGE_SIZE x records / match entries, sorting the match about its size.
SORTED_MATCH = 10_000
# A session filter names its rows by id up to this many (``QueueFilters.session_ids``).
SESSION_LISTED = 1000
# The selection keys the queue offers as selects with counts, in display order.
FACETS = ("category", "task", "worker", "decision", "mbtype", "batch")
# A text facet's value for rows whose column is empty (the selection vocabulary has no value
# for "empty": it leaves empty values out). A stored value spelled exactly so cannot be
# chosen apart from the empty ones.
EMPTY = "(empty)"
# "My work": the viewer's own items, from their own reviews, leases and skips only (nothing of
# other auditors' work, so it is as blind as the rest of the queue).
MINE = {
    "reviewed": "Reviewed by me",
    "unsure": "My unsure",
    "skipped": "Skipped by me",
    "held": "Reserved by me",
}
# The "needs discussion" filter (``audit.team.discussion``): for those who oversee the queue
# (``oversees_queue``) only. A mark is not a verdict, but on an item a plain auditor has not
# reviewed yet it says someone found it contentious: a hint of disagreement they should not get
# before their own verdict.
DISCUSSION = {"yes": "Needs discussion", "no": "Not marked"}
# My-work filters "Next" walks through in queue order, opening each item in turn: their items
# carry the viewer's own review or skip, which "Next"'s claim never hands out again.
WALKED = ("reviewed", "unsure", "skipped")
# The options whose rows are the viewer's current reviews (``own_rows``).
FROM_REVIEWS = ("reviewed", "unsure")
ROW_FIELDS = (
    "id",
    "session_id",
    "step_number",
    "task_id",
    "worker_id",
    "action_type",
    "target",
    "decision_type",
    "alignment_category",
    "status",
    "priority",
    "review_count",
    "required_reviews",
    "timestamp",
    *(f"flag_{flag.value}" for flag in Flag),
)


@dataclass(frozen=True)
class QueueFilters:
    """A queue URL's filters, cleaned (``QueueFilterForm.filters``)."""

    q: str = ""
    flag: str = ""
    status: str = OPEN
    scope: str = "queue"
    category: str = ""
    task: str = ""
    worker: str = ""
    decision: str = ""
    mbtype: str = ""
    batch: int | None = None
    session: str = ""
    sort: str = BEST
    after: str = ""
    before: str = ""
    mine: str = ""
    discussion: str = ""
    # Whose work ``mine`` means, and the items they skipped in this session (not URL text).
    viewer: User | None = None
    skipped: tuple[int, ...] = ()

    def selection(self, *, without: str | None = None) -> Selection:
        """The part of the filters the selection vocabulary expresses (``without`` one key)."""
        values = {
            key: [getattr(self, key)]
            for key in (*FACETS, "flag", "session")
            if getattr(self, key) != EMPTY
        }
        return Selection.of(values).without(without or "")

    def empty_q(self, *, without: str | None = None) -> Q:
        """The text facets set to ``EMPTY``: their column is empty."""
        cond = Q()
        for name in FACETS:
            if name != without and getattr(self, name) == EMPTY:
                cond &= Q(**{FILTERS[name].column: ""})
        return cond

    @cached_property
    def text_query(self) -> search.SearchQuery:
        return search.parse(self.q)

    @cached_property
    def session_ids(self) -> tuple[int, ...] | None:
        """The ids of the chosen session's rows, read once through index ``tr_episode``, when
        there are at most ``SESSION_LISTED`` of them (None otherwise, or without a session).

        The queue's queries then name the rows: given ``session_id = %s`` beside the queue's
        own conditions, SQLite reads the queued rows through ``tr_queue_facets`` and tests each
        wide row for the session (13 s per queue page at 300,000 records, against 0.2 s)."""
        if not self.session or self.session == EMPTY:
            return None
        ids = tuple(
            Transcript.objects.filter(session_id=self.session)
            .order_by()
            .values_list("pk", flat=True)[: SESSION_LISTED + 1]
        )
        return ids if len(ids) <= SESSION_LISTED else None

    def with_status(self, status: str) -> QueueFilters:
        return replace(self, status=status)

    def as_dict(self) -> dict[str, Any]:
        """The filters as URL values (without the page position and the viewer)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("after", "before", "viewer", "skipped")
        }

    @property
    def walked(self) -> bool:
        """Whether "Next" walks through these filters rather than claiming (``WALKED``)."""
        return self.mine in WALKED


def search_condition(query: search.SearchQuery, match: search.Match | None = None) -> Q:
    """The rows a free-text query finds: by ``match`` when the request computed it, else by the
    self-contained full-text subquery."""
    if query.empty:
        return Q(pk__in=[])
    cond = Q()
    if query.ids:
        cond &= Q(pk__in=query.ids)
    if query.terms:
        cond &= Q(pk__in=match.ids() if match is not None else search.matching_ids(query))
    return cond


def conditions(
    filters: QueueFilters,
    *,
    without: str | None = None,
    match: search.Match | None = None,
    rolled_up: bool = False,
    reviewed: bool = False,
) -> Q:
    """The filters as one Q; ``without`` leaves one facet out (for that facet's counts).
    ``rolled_up``: on the rollup's columns (``rollup_answers`` says when it can), where "in the
    queue" is said by the flags (``rollup.QUEUED``). A session's rows are named by id where
    they are few (``QueueFilters.session_ids``). ``reviewed``: for rows that are items with a
    current review, which are never unreviewed (``workflow.derive_final_state``), so their
    statuses are named without it: the database then starts from the few items in progress
    or disputed, not from every open one (``_own_count``)."""
    selection = filters.selection(without=without)
    if "session" in selection.filters and filters.session_ids is not None:
        selection = selection.without("session")
        cond = Q(pk__in=filters.session_ids)
    else:
        cond = Q()
    cond &= selection.q() & filters.empty_q(without=without)
    if filters.mine and without != "mine":
        cond &= mine_condition(filters.mine, filters.viewer, skipped=filters.skipped)
    if filters.discussion in DISCUSSION and without != "discussion":
        cond &= discussion_condition(filters.discussion)
    if filters.scope != "all":
        cond &= rollup.QUEUED if rolled_up else Q(in_queue=True)
    if filters.q:
        cond &= search_condition(filters.text_query, match)
    if without != "status":
        members = STATUS_MEMBERS.get(filters.status, STATUS_MEMBERS[OPEN])
        if reviewed:
            members = tuple(s for s in members or Status.values if s != Status.UNREVIEWED)
        if members is not None:
            cond &= Q(status__in=members)
    return cond


def oversees_queue(viewer: User | None) -> bool:
    """Whether the viewer oversees the queue: adjudicators and staff, who may filter it on
    "needs discussion" (``DISCUSSION``) and act on many of its rows at once
    (``audit.team.bulk``)."""
    return viewer is not None and (is_staff(viewer) or has_role(viewer, ADJUDICATOR))


def discussion_condition(value: str) -> Q:
    """The items marked "needs discussion" now (``yes``), or the others (``no``)."""
    marked = needs_discussion_q()
    return marked if value == "yes" else ~marked


def own_rows(mine: str, viewer: User) -> QuerySet[Any, Any] | None:
    """The viewer's own rows behind one "My work" option (``MINE``), each with the item it is
    of (``transcript_id``): reviews or leases; None for "skipped" (the session's list)."""
    if mine == "reviewed":
        return own_verdict_reviews(viewer)
    if mine == "unsure":
        return Review.objects.current().filter(auditor_id=viewer.pk, verdict=Verdict.UNSURE)
    if mine == "held":
        return Lease.objects.live().filter(auditor=viewer)
    return None


def mine_condition(mine: str, viewer: User | None, *, skipped: tuple[int, ...] = ()) -> Q:
    """The viewer's own items of one "My work" option (``MINE``); nothing without a viewer."""
    if viewer is None or mine not in MINE:
        return Q(pk__in=[])
    # Each an id subquery of the viewer's own rows (reviews, leases, skips), never an EXISTS
    # probed for every row of the queue. Their counts start from those rows instead
    # (``_own_count``): SQLite may test every queued row against such a list.
    rows = own_rows(mine, viewer)
    return Q(pk__in=list(skipped) if rows is None else rows.values("transcript_id"))


def _on_visible_items(condition: Q) -> Q:
    """``condition`` (a transcript filter) on the items of rows that point at transcripts
    (reviews, leases, marks), as ``Transcript.objects`` sees them: rows of unfinished batches
    left out. For counts that start from those rows rather than from the transcripts."""
    return rollup.on_transcript(condition) & Q(transcript__batch__complete=True)


def _own_count(
    mine: str, viewer: User | None, condition: Q, *, skipped: tuple[int, ...] = ()
) -> int:
    """How many items meeting ``condition`` (a transcript filter) are the viewer's under one
    "My work" option: read from the viewer's own rows joined to their items by id, so it costs
    what the viewer's work numbers, whatever the table's size (issue 14). A count of
    ``mine_condition`` on the transcripts, which is what it equals (tests compare them)."""
    if viewer is None or mine not in MINE:
        return 0
    rows = own_rows(mine, viewer)
    if rows is None:  # the skipped ones: a short list of ids (none: no query)
        return Transcript.objects.filter(condition, pk__in=list(skipped)).count()
    return rows.filter(_on_visible_items(condition)).values("transcript_id").distinct().count()


def compute_match(filters: QueueFilters) -> search.Match | None:
    """The request's one evaluation of the full-text query (None without words to search),
    scored when the queue will be sorted by relevance.

    On PostgreSQL, where the counts would roll a large match up (``count_match``) and nothing
    but the words names rows, a match too large to be listed by id (``search.SMALL_MATCH``)
    or ranked (``search.RANK_LIMIT``, when the sort asks for it) is rolled up straight from
    the search documents, which carry the facet columns (migration 0025), and is never
    written out (``search.Match.unwritten``). At 1,000,000 records, a word in 612,000: 0.7 s
    of SQL where writing the match, indexing it and joining it to the queue took 2.1 s."""
    if not filters.q or not filters.text_query.terms:
        return None
    query, rank = filters.text_query, filters.sort == BEST
    if not _rolls_up_documents(filters):
        return search.Match.compute(query, rank=rank)
    # Small enough to be listed by id, or to be ranked: whole, as elsewhere.
    most = search.RANK_LIMIT if rank else search.SMALL_MATCH
    whole = search.Match.compute_at_most(query, rank=rank, most=most)
    if whole is not None:
        return whole
    _roll_up(_documents(filters))
    size = MatchCount.objects.aggregate(n=Coalesce(Sum("transcripts"), 0))["n"]
    # Asked to rank, it had more than RANK_LIMIT rows (``compute_at_most``).
    return search.Match.unwritten(query, size=size, too_many_to_rank=rank)


def _rolls_up_documents(filters: QueueFilters) -> bool:
    """Whether the match's roll-up is taken from the search documents: on PostgreSQL, for words
    alone (no ``#id``, no session listed by id, not "My work", whose rows ``count_match``
    rolls up from the transcripts), under filters the roll-up's columns answer."""
    return (
        connection.vendor == "postgresql"
        and not filters.text_query.ids
        and filters.session_ids is None
        and not _names_own_rows(filters)
        and rollup_answers(_unnamed(filters), without="discussion")
    )


def _documents(filters: QueueFilters) -> QuerySet[Any, Any]:
    """The search documents matching the words, in the queue unless the scope is "all",
    grouped by ``MatchCount``'s key."""
    rows = SearchDocument.objects.filter(search.document_matches(filters.text_query))
    if filters.scope != "all":
        rows = rows.filter(in_queue=True)
    return rows.order_by().values(*MATCH_COUNT_COLUMNS).annotate(transcripts=Count("pk"))


def effective_sort(filters: QueueFilters, match: search.Match | None = None) -> str:
    if filters.sort == BEST:
        return RANK if match is not None and match.ranked else FALLBACK_SORT
    return filters.sort if filters.sort.lstrip("-") in SORTS else FALLBACK_SORT


def _ids_descend(key: str, down: bool) -> bool:
    """Whether the id tie-break descends, given that the sort value does (``down``): in the
    same direction, except for priority, whose ties go oldest first when the highest priority
    comes first (the order "Next" hands items out, and the order of index ``tr_next``: in_queue,
    status, -priority, id), so that both directions of that sort walk the index."""
    return not down if key == "priority" else down


def _orderings(sort: str, *, forward: bool = True) -> list[OrderBy]:
    """ORDER BY for ``sort`` (its reverse when not ``forward``): the sort value, then the id
    (``_ids_descend``); NULLs last in the page's order, said only for a column that has them
    (an explicit NULLS clause on a column without would keep an index from serving the order)."""
    if sort == RANK:
        key, desc, nullable = "search_rank", False, True
    else:
        key, desc = SORTS[sort.lstrip("-")][0], sort.startswith("-")
        nullable = sort.lstrip("-") in NULLABLE
    down = desc == forward
    nulls = ({"nulls_last": True} if forward else {"nulls_first": True}) if nullable else {}
    first = F(key).desc(**nulls) if down else F(key).asc(**nulls)
    if key == "id":
        return [first]
    return [first, F("id").desc() if _ids_descend(key, down) else F("id").asc()]


def queue_queryset(filters: QueueFilters) -> TranscriptQuerySet:
    """Every row the filters select, in the queue's order (without relevance, which needs the
    request's match): for walking the whole selection."""
    return Transcript.objects.filter(conditions(filters)).order_by(
        *_orderings(effective_sort(filters))
    )


def for_next(filters: QueueFilters) -> Q:
    """The filters "Next" works through: it decides status and scope itself (open, queued)."""
    return conditions(replace(filters, status=ANY, scope="all"))


# --- keyset pages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """The edge of a page: the sort value and id of the row there."""

    value: int | float | str | None
    pk: int

    def text(self, sort: str) -> str:
        if sort.lstrip("-") == "id":
            return str(self.pk)
        value = "" if self.value is None else self.value
        return f"{float(value)!r}~{self.pk}" if isinstance(value, float) else f"{value}~{self.pk}"


def parse_cursor(text: str, sort: str) -> Cursor | None:
    """The cursor in ``text`` for ``sort``; None when it is not one (a hand-edited or stale
    link falls back to the first page, it never makes a 500)."""
    if not text or len(text) > CURSOR_MAX_LENGTH or "\x00" in text:
        return None
    key = sort.lstrip("-")
    raw, sep, pk_text = text.rpartition("~")
    if key == "id":
        raw, pk_text = "", text
    elif not sep:
        return None
    pk = parse_id(pk_text)
    if pk is None:
        return None
    value: int | float | str | None
    try:
        if key == "id":
            value = pk
        elif key == "session":
            value = raw
        elif key in ("priority", "step"):
            value = int(raw) if raw.lstrip("-").isascii() and raw.lstrip("-").isdigit() else None
            if value is None or not INT_RANGE[0] <= value <= INT_RANGE[1]:
                return None
        elif key in NULLABLE and raw == "":
            value = None
        else:  # a timestamp, or a relevance score
            value = float(raw)
            if not math.isfinite(value):
                return None
    except ValueError:
        return None
    return Cursor(value, pk)


def _beyond(sort: str, cursor: Cursor, *, forward: bool) -> Q:
    """The rows after ``cursor`` in ``sort`` order (before it when not ``forward``)."""
    if sort == RANK:
        name, desc, nullable = "search_rank", False, False
    else:
        key = sort.lstrip("-")
        name, desc, nullable = SORTS[key][0], sort.startswith("-"), key in NULLABLE
    op = "gt" if desc != forward else "lt"
    if name == "id":
        return Q(**{f"id__{op}": cursor.pk})
    down = desc == forward
    id_op = "lt" if _ids_descend(name, down) else "gt"
    if cursor.value is None:
        tail = Q(**{f"{name}__isnull": True, f"id__{id_op}": cursor.pk})
        return tail if forward else Q(**{f"{name}__isnull": False}) | tail
    # The redundant first bound lets an index on the sort column serve the range.
    bound = Q(**{f"{name}__{op}e": cursor.value})
    cond = bound & (
        Q(**{f"{name}__{op}": cursor.value}) | Q(**{name: cursor.value, f"id__{id_op}": cursor.pk})
    )
    if nullable and forward:
        cond |= Q(**{f"{name}__isnull": True})
    return cond


@dataclass(frozen=True)
class QueuePage:
    rows: list[Transcript]
    sort: str
    # Cursors of the neighbouring pages ("" when there is none); the first page has no cursor.
    after: str
    before: str
    is_first: bool


def queue_page(
    filters: QueueFilters,
    *,
    match: search.Match | None,
    annotations: dict[str, BaseExpression | F],
    fields: tuple[str, ...],
) -> QueuePage:
    """The page of rows the filters' cursor points at (the first page without one): one query,
    whose inner part finds the page's ids in index order and whose outer part reads only those
    rows (sorting whole rows would read every wide row of the selection)."""
    sort = effective_sort(filters, match)
    forward = bool(filters.after) or not filters.before
    cursor = parse_cursor(filters.after if forward else filters.before, sort)
    if cursor is None:
        forward = True  # no cursor (or not one): the first page
    rank = {"search_rank": match.rank()} if sort == RANK and match is not None else {}
    rows = _rows(filters, match, sort, cursor, forward, rank, annotations, fields)
    more = len(rows) > PAGE_SIZE
    if not forward and not more and len(rows) < PAGE_SIZE:
        # Back past the start (rows came and went since): show the first page instead.
        cursor, forward = None, True
        rows = _rows(filters, match, sort, None, True, rank, annotations, fields)
        more = len(rows) > PAGE_SIZE
    if forward:
        rows = rows[:PAGE_SIZE]
        has_next, has_prev = more, cursor is not None
    else:
        rows = rows[-PAGE_SIZE:]
        has_next, has_prev = True, more
    return QueuePage(
        rows=rows,
        sort=sort,
        after=_cursor_of(rows[-1], sort) if has_next and rows else "",
        before=_cursor_of(rows[0], sort) if has_prev and rows else "",
        is_first=not has_prev,
    )


def _rows(
    filters: QueueFilters,
    match: search.Match | None,
    sort: str,
    cursor: Cursor | None,
    forward: bool,
    rank: dict[str, Any],
    annotations: dict[str, BaseExpression | F],
    fields: tuple[str, ...],
) -> list[Transcript]:
    inner = Transcript.objects.filter(conditions(filters, match=match)).alias(**rank)
    if cursor is not None:
        inner = inner.filter(_beyond(sort, cursor, forward=forward))
    ordered = inner.order_by(*_orderings(sort, forward=forward))
    ranges = _ranges_apart(filters, sort, match)
    ids: Any
    if ranges is None:
        ids = ordered.values("pk")[: PAGE_SIZE + 1]
    else:
        # One range at a time (``_ranges_apart``: a status, and with scope "all" in the queue
        # or not), each an index range of tr_next read in order up to a page, then merged:
        # with "status IN (...)" both databases sort every open queued row to find the first
        # page (the queue's default, at a million records a third of them).
        down = sort.startswith("-") == forward
        heads = [
            head
            for part in ranges
            for head in ordered.filter(**part).values_list("priority", "pk")[: PAGE_SIZE + 1]
        ]
        heads.sort(key=lambda head: (-head[0], head[1]) if down else (head[0], -head[1]))
        ids = [pk for _, pk in heads[: PAGE_SIZE + 1]]
    return list(
        Transcript.objects.filter(pk__in=ids)
        .annotate(**rank, **annotations)
        .only(*fields)
        .order_by(*_orderings(sort))
    )


def _ranges_apart(
    filters: QueueFilters, sort: str, match: search.Match | None
) -> list[dict[str, Any]] | None:
    """The index ranges of ``tr_next`` (in_queue, status, then priority and id in the priority
    sort's order) that a page under that sort reads one at a time (``_rows``), each given as
    the filter that selects it; None for one query sorting the selection.

    In the queue: one range per status when the filters choose several. With scope "all":
    one per (in_queue, status) pair, which spares sorting every row of the table or of a
    broad match (200 ms at 200,000 records), but only when no filter is known to be narrow:
    rows named by id (``#1248``, a session's, a small match's), "My work", a discussion mark, or
    a match of at most ``SORTED_MATCH`` rows. Those few rows are cheaper sorted than found by
    walking ranges of every row."""
    if sort.lstrip("-") != "priority":
        return None
    members = STATUS_MEMBERS.get(filters.status, STATUS_MEMBERS[OPEN])
    statuses = tuple(Status) if members is None else members
    if filters.scope != "all":
        return [{"status": status} for status in statuses] if len(statuses) > 1 else None
    narrow = (
        filters.mine
        or filters.discussion
        or filters.text_query.ids
        or filters.session_ids is not None
        or (match is not None and (match.listed is not None or match.size <= SORTED_MATCH))
    )
    if narrow:
        return None
    return [
        {"in_queue": queued, "status": status} for queued in (True, False) for status in statuses
    ]


def _cursor_of(row: Transcript, sort: str) -> str:
    field = "search_rank" if sort == RANK else SORTS[sort.lstrip("-")][0]
    value = getattr(row, field)
    return Cursor(value, row.pk).text(sort)


# --- counts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facets:
    counts: dict[str, list[dict[str, Any]]]
    # Rows the filters select: the status facet's count of the chosen status.
    total: int
    # Of those, the flagged ones (``summaries.flagged_q``); None under a flag filter, which
    # chooses flagged rows itself.
    flagged: int | None = None


def rollup_answers(filters: QueueFilters, *, without: str | None = None) -> bool:
    """Whether the rollup can count ``conditions(filters, without=...)``: every filter it
    applies is one of the rollup's columns (no free text, no "My work", no discussion mark, no
    session: those read the transcripts, through the search index and the viewer's own rows)."""
    if filters.q:
        return False
    if filters.mine and without != "mine":
        return False
    if filters.discussion in DISCUSSION and without != "discussion":
        return False
    return rollup.answers(filters.selection(without=without))


@dataclass(frozen=True)
class _Counted:
    """What a count under the filters is taken over: the rollup, each of its rows counting its
    ``transcripts``, when it answers them; else the transcripts themselves."""

    rows: QuerySet[Any, Any]
    from_rollup: bool

    def n(self, condition: Q | None = None) -> Any:
        if self.from_rollup:
            return Coalesce(Sum("transcripts", filter=condition), 0)
        return Count("id", filter=condition)


def _counted(
    filters: QueueFilters,
    *,
    without: str | None,
    match: search.Match | None,
    match_counted: bool = False,
) -> _Counted:
    if rollup_answers(filters, without=without):
        return _Counted(
            Rollup.objects.filter(conditions(filters, without=without, rolled_up=True)), True
        )
    # Rows ``count_match`` rolled up: the words and the session already applied.
    unsearched = _unnamed(filters)
    if match_counted and rollup_answers(unsearched, without=without):
        return _Counted(
            MatchCount.objects.filter(conditions(unsearched, without=without, rolled_up=True)),
            True,
        )
    return _Counted(
        Transcript.objects.filter(conditions(filters, without=without, match=match)), False
    )


# The columns ``MatchCount`` groups a search's match by: its key, in the order of index
# ``tr_queue_facets``, which then serves the grouping in its own order (no sort).
MATCH_COUNT_COLUMNS: tuple[str, ...] = MatchCount._meta.pk.field_names  # type: ignore[attr-defined]


def _match_count_table(connection: BaseDatabaseWrapper) -> str:
    """``CREATE TEMP TABLE IF NOT EXISTS`` for ``MatchCount``, from the model's own columns."""
    sql, params = connection.SchemaEditorClass(connection).table_sql(MatchCount)
    if params:  # no column has a database default
        raise ValueError(f"unexpected parameters in {MatchCount._meta.db_table}'s definition")
    return sql.replace("CREATE TABLE", "CREATE TEMP TABLE IF NOT EXISTS", 1)


def _unnamed(filters: QueueFilters) -> QueueFilters:
    """``filters`` without the ones that name rows, which the rows ``count_match`` rolled up
    meet already: the words, "My work", and the session when its rows are listed by id (a
    larger session stays a filter, which no rolled-up count can apply)."""
    listed = filters.session_ids is not None
    mine = "" if _names_own_rows(filters) else filters.mine
    return replace(filters, q="", mine=mine, session="" if listed else filters.session)


def _names_own_rows(filters: QueueFilters) -> bool:
    """Whether the filters name the viewer's own items through their own rows ("My work" with
    a viewer: reviews or leases). Not the skipped ones: a short list of ids (at most
    ``views.MAX_SKIPPED``, none at all once decided), which the counts take as it is."""
    return filters.viewer is not None and filters.mine in MINE and filters.mine != "skipped"


def count_match(filters: QueueFilters, match: search.Match | None) -> bool:
    """Roll up the rows the filters name, once per request, into ``MatchCount``: True when it
    did, so that the facet counts sum its rows (``_counted``) rather than each reading them.

    The rows named are a large search match (``match.listed`` None: more than
    ``search.SMALL_MATCH`` rows; at 300,000 records a word in most of them cost 60-160 ms per
    facet, seven facets, against one pass of the covering index ``tr_queue_facets``), or a
    session's rows listed by id (``QueueFilters.session_ids``: each facet count walked the
    queued rows' covering index, 20 ms each at 200,000, against a look-up of each row by id),
    or the viewer's own items under "My work" (each facet count joined the viewer's reviews
    to the items: at 1,000,000 records a staff member's 10,000 reviewed items took 0.5 s per
    facet on PostgreSQL, which read the whole of ``tr_next`` for them), or several of these;
    out of the queue's rows when the queue shows only those. Not for words with ``#id``
    terms or a small match alone (their counts by id list are cheap already)."""
    if match is not None and match.counted:
        return True  # rolled up from the documents already (``compute_match``)
    named = filters.session_ids
    large = match is not None and match.listed is None
    own = _names_own_rows(filters)
    if filters.text_query.ids or named == () or not (large or named or own):
        return False  # ids, or a session of no rows: their counts by id list cost nothing
    if filters.text_query.terms and match is None:
        return False  # words whose match the caller did not compute: counted with them
    if not rollup_answers(_unnamed(filters), without="discussion"):
        return False
    rows = Transcript.objects.all()
    if match is not None:
        rows = rows.filter(pk__in=match.ids())
    if named:
        rows = rows.filter(pk__in=named)
    if own:
        rows = rows.filter(mine_condition(filters.mine, filters.viewer, skipped=filters.skipped))
    if filters.scope != "all":
        rows = rows.filter(in_queue=True)
    _roll_up(
        rows.order_by().values(*MATCH_COUNT_COLUMNS).annotate(transcripts=Count("pk")),
        hint="NOT INDEXED" if named or own else "INDEXED BY tr_queue_facets",
    )
    return True


def _roll_up(grouped: QuerySet[Any, Any], *, hint: str = "") -> None:
    """Fill ``MatchCount`` with ``grouped`` (rows grouped by its key, each with its count of
    ``transcripts``). ``hint``: SQLite's index hint for the transcripts' table. A match alone:
    the planner would read the rows through ``tr_batch`` (for the unfinished-batch filter), a
    table look-up per row; the covering index reads none of them. Rows listed by id (a
    session's, the viewer's own): each looked up by id (rowid), never through an index (which
    the planner prefers to the list, and walks whole)."""
    select, params = grouped.query.sql_with_params()
    db = connections[grouped.db]
    if db.vendor == "sqlite" and hint:
        table = db.ops.quote_name(Transcript._meta.db_table)
        select = select.replace(f"FROM {table}", f"FROM {table} {hint}", 1)
    columns = ", ".join(db.ops.quote_name(name) for name in (*MATCH_COUNT_COLUMNS, "transcripts"))
    name = db.ops.quote_name(MatchCount._meta.db_table)
    postgresql = db.vendor == "postgresql"
    # A transaction of its own on PostgreSQL only, for the settings below: on SQLite it would
    # take the database's one write lock (``transaction_mode`` IMMEDIATE) for a read.
    with (
        transaction.atomic(using=grouped.db) if postgresql else nullcontext(),
        db.cursor() as cursor,
    ):
        cursor.execute(_match_count_table(db))
        search.empty_temp_table(cursor, name)
        if postgresql:
            # JIT off: the documents' roll-up is a pass over up to every one of them, which
            # PostgreSQL would compile first (0.1-0.4 s a request), for a few µs a row.
            cursor.execute(
                "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
                [ROLL_UP_WORK_MEM],
            )
        cursor.execute(f"INSERT INTO {name} ({columns}) {select}", params)


# The memory PostgreSQL may give the roll-up's join and grouping (``count_match``), for that
# statement's transaction only. At the default (4 MB), a word in 614,000 of 1,000,000 records
# hashed its 359,000 queued rows in 8 batches and sorted the 211,000 it joined on disk to group
# them (2.4 s); with this, one hash in memory (32-51 MB) and a hashed grouping: 0.7-0.9 s,
# reading the rows from ``tr_queue_facets`` alone, which holds ``id`` for the join.
ROLL_UP_WORK_MEM = "64MB"


def facet_counts(
    filters: QueueFilters,
    *,
    status_choices: list[tuple[str, str]],
    match: search.Match | None = None,
) -> Facets:
    """Counts per value of each facet, with every other filter applied (one query each). The
    status options are the viewer's (``visibility.status_choices``), each counting the
    statuses it stands for, so a blind viewer gets one count for "settled", never one per way
    of settling.

    Each facet's counts come from the rollup when it answers the filters without that facet
    (``rollup_answers``): sums over its few thousand rows rather than a scan of the queue (at
    a million records the default queue counted 360,000 rows ten times over); with free text,
    "My work", a discussion mark or a session they count the transcripts the filters select,
    through the search match and the viewer's own rows; a large search match, a session
    listed by id and the viewer's own items are rolled up first (``count_match``) and counted
    like the rollup."""
    out: dict[str, list[dict[str, Any]]] = {}
    counted = count_match(filters, match)
    flags = _counted(filters, without="flag", match=match, match_counted=counted)
    flag_counts = flags.rows.aggregate(
        **{flag.value: flags.n(Q(**{f"flag_{flag.value}": True})) for flag in Flag},
        flagged=flags.n(flagged_q()),
    )
    out["flag"] = [
        {"value": flag.value, "label": flag.label, "n": flag_counts[flag.value]} for flag in Flag
    ]
    statuses = _counted(filters, without="status", match=match, match_counted=counted)
    by_status = dict(
        statuses.rows.order_by().values_list("status").annotate(n=statuses.n()).order_by()
    )
    out["status"] = [
        {"value": value, "label": label, "n": _status_count(by_status, STATUS_MEMBERS[value])}
        for value, label in status_choices
    ]
    # One count per option, each from the viewer's own rows (``_own_count``); an option with
    # none (no skips) costs no query. The options read from reviews count items that have one.
    others = {
        reviewed: conditions(filters, without="mine", match=match, reviewed=reviewed)
        for reviewed in (False, True)
    }
    out["mine"] = [
        {
            "value": value,
            "label": label,
            "n": _own_count(
                value, filters.viewer, others[value in FROM_REVIEWS], skipped=filters.skipped
            ),
        }
        for value, label in MINE.items()
    ]
    members = STATUS_MEMBERS.get(filters.status, STATUS_MEMBERS[OPEN])
    if oversees_queue(filters.viewer):
        shown = _status_count(by_status, members)
        out["discussion"] = discussion_counts(
            filters, match=match, shown=shown, match_counted=counted
        )
    for name in FACETS:
        column = FILTERS[name].column
        facet = _counted(filters, without=name, match=match, match_counted=counted)
        rows = (
            facet.rows.order_by()
            .values_list(column)
            .annotate(n=facet.n())
            .order_by("-n", column)[:FACET_LIMIT]
        )
        items = [
            {
                "value": EMPTY if value == "" else value,
                "label": f"#{value}" if name == "batch" else value or EMPTY,
                "n": n,
            }
            for value, n in rows
        ]
        selected = getattr(filters, name)
        if selected not in ("", None) and all(str(i["value"]) != str(selected) for i in items):
            items.append({"value": selected, "label": str(selected), "n": 0})
        out[name] = items
    return Facets(
        out,
        _status_count(by_status, members),
        flagged=None if filters.flag else flag_counts["flagged"],
    )


def discussion_counts(
    filters: QueueFilters,
    *,
    match: search.Match | None = None,
    shown: int,
    match_counted: bool = False,
) -> list[dict[str, Any]]:
    """The "needs discussion" options' counts, every other filter applied, given ``shown``:
    how many items the filters select, the discussion filter included. One query: without a
    discussion filter the marked items among them, read from the open marks (index
    ``dm_open_once``) joined to their items; with one, every item without it (``_counted``),
    of which ``shown`` are the chosen option's. Neither scans the queue."""
    if filters.discussion not in DISCUSSION:
        every = shown
        marked = (
            DiscussionMark.objects.open()
            .filter(_on_visible_items(conditions(filters, without="discussion", match=match)))
            .values("transcript_id")
            .distinct()
            .count()
        )
    else:
        counted = _counted(filters, without="discussion", match=match, match_counted=match_counted)
        every = counted.rows.aggregate(n=counted.n())["n"]
        marked = shown if filters.discussion == "yes" else every - shown
    n = {"yes": marked, "no": every - marked}
    return [{"value": value, "label": label, "n": n[value]} for value, label in DISCUSSION.items()]


def _status_count(by_status: dict[str, int], members: tuple[str, ...] | None) -> int:
    if members is None:
        return sum(by_status.values())
    return sum(by_status.get(status, 0) for status in members)


def facet_selects(
    filters: QueueFilters, counts: dict[str, list[dict[str, Any]]], defaults: dict[str, str]
) -> list[dict[str, Any]]:
    """One select per facet, each option with its count, the current value selected."""
    specs = [
        ("mine", "My work", "Everyone's"),
        ("flag", "Flag", "Any flag"),
        ("status", "Status", None),
        ("discussion", "Discussion", "Any"),
        *((name, FILTERS[name].label, "Any") for name in FACETS),
    ]
    selects = []
    for name, label, blank in specs:
        if name not in counts:
            continue  # an option the viewer does not get ("discussion": ``oversees_queue``)
        value = getattr(filters, name)
        current = "" if value is None else str(value)
        options = [
            {
                "value": str(item["value"]),
                "label": item["label"],
                "n": item["n"],
                "selected": str(item["value"]) == current,
            }
            for item in counts[name]
        ]
        selects.append(
            {
                "name": name,
                "label": label,
                "blank": blank,
                "options": options,
                "active": current not in ("", defaults[name]),
                "default": defaults[name],
            }
        )
    return selects


def widens(query: QueryDict | dict[str, Any] | None) -> bool:
    """Whether a query's status and scope default to any status and all transcripts: a "My
    work" filter (one's reviewed items are mostly settled), or a search that names items by
    id only (``#1248`` finds item 1248 wherever it is)."""
    if not query:
        return False
    if query.get("mine") in MINE:
        return True
    q = query.get("q") or ""
    parsed = search.parse(str(q))
    return bool(parsed.ids) and not parsed.terms


def defaults(query: QueryDict | dict[str, Any] | None = None) -> dict[str, str]:
    """What each filter of ``query`` means when it is left out, as URL text."""
    base = QueueFilters(status=ANY, scope="all") if widens(query) else QueueFilters()
    return {name: "" if value is None else str(value) for name, value in base.as_dict().items()}


def clean_query(query: QueryDict, defaults: dict[str, str]) -> QueryDict:
    """The query without empty parameters or ones set to their default: the URL worth showing
    and bookmarking (a plain GET form submits every field, filled or not)."""
    clean = QueryDict(mutable=True)
    for name, values in query.lists():
        if name == "page":
            continue  # old page numbers: the first page (see the module docstring)
        kept = [v for v in values if v.strip() and v != defaults.get(name, "")]
        if kept:
            clean.setlist(name, kept)
    return clean


# The parameters that say where in the selection a page is.
POSITION = ("after", "before", "page")
# The columns whose header sorts the queue: sort key -> the direction a first click sorts in.
HEADER_SORTS = {"id": "", "step": "", "session": "", "priority": "-"}


def sort_headers(query: QueryDict, sort: str) -> dict[str, dict[str, str]]:
    """Per sortable column, the link its header is (the same column again reverses it) and its
    ``aria-sort`` under the page's effective ``sort``."""
    headers = {}
    for key, first in HEADER_SORTS.items():
        if sort.lstrip("-") == key:
            aria = "descending" if sort.startswith("-") else "ascending"
            following = key if sort.startswith("-") else f"-{key}"
        else:
            aria, following = "none", f"{first}{key}"
        params = query.copy()
        params["sort"] = following
        headers[key] = {"url": page_url(params), "aria": aria}
    return headers


# How much of a row's search text the queue reads for its reasoning excerpt: the parts before
# the reasoning (session, task, action, target, worker) are at most about 1,300 characters.
EXCERPT_HEAD = 1600
EXCERPT_LENGTH = 160
# The record fields the importer writes into ``search_text`` before the worker's reasoning,
# as the row's columns hold them (``audit.ingest.records``: parts joined by " \n").
_BEFORE_REASONING = ("session_id", "task_id", "action_type", "target", "worker_id")


def reasoning_excerpt(row: Transcript, head: str) -> str:
    """The start of the worker's reasoning, from the first ``EXCERPT_HEAD`` characters of the
    row's search text (lower-cased, as the index holds it); "" when the record has none."""
    parts = head.split(" \n")
    skip = sum(1 for name in _BEFORE_REASONING if getattr(row, name))
    if len(parts) <= skip:
        return ""
    text = parts[skip]
    if text == (row.decision_type or "").lower():
        return ""  # no reasoning: the next part is the decision
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_LENGTH else text[:EXCERPT_LENGTH].rstrip() + "…"


def priority_legend() -> str:
    """How an item's priority is computed, in words (the importer's ``FLAG_PRIORITY``)."""
    weights = sorted(FLAG_PRIORITY.items(), key=lambda item: -item[1])
    parts = ", ".join(f"{Flag(flag).label.lower()} {weight}" for flag, weight in weights)
    return (
        f"Priority is the sum of the item's flag weights ({parts}), set at import; "
        "Next hands out the highest first."
    )


def url(query: QueryDict) -> str:
    """The queue's URL for ``query``."""
    encoded = query.urlencode()
    return f"{reverse('queue')}?{encoded}" if encoded else reverse("queue")


def page_url(query: QueryDict, *, after: str = "", before: str = "") -> str:
    """The URL of ``query``'s first page, or of its page after or before a cursor."""
    params = query.copy()
    for name in POSITION:
        params.pop(name, None)
    if after:
        params["after"] = after
    elif before:
        params["before"] = before
    return url(params)


# --- "Next" through a filter, and how far it has got ----------------------------------------------


def _status_words(value: str) -> str:
    from audit.review.visibility import status_label

    return {OPEN: "Open", ANY: "Any status"}.get(value) or status_label(value)


def describe(filters: QueueFilters | None) -> str:
    """The filters in words ("My work: My unsure · Flag: Over-block"), "" for the whole queue
    (the default filters)."""
    if filters is None:
        return ""
    base = defaults(filters.as_dict())
    parts = []
    if filters.mine:
        parts.append(f"My work: {MINE.get(filters.mine, filters.mine)}")
    if filters.q:
        parts.append(f"Search: {filters.q}")
    if filters.flag:
        parts.append(f"Flag: {dict(Flag.choices).get(filters.flag, filters.flag)}")
    if filters.discussion:
        parts.append(f"Discussion: {DISCUSSION.get(filters.discussion, filters.discussion)}")
    if filters.status != base["status"]:
        parts.append(f"Status: {_status_words(filters.status)}")
    if filters.scope != base["scope"]:
        parts.append("All transcripts" if filters.scope == "all" else "In the queue")
    for name in FACETS:
        value = getattr(filters, name)
        if value not in ("", None):
            parts.append(f"{FILTERS[name].label}: {'#' if name == 'batch' else ''}{value}")
    if filters.session:
        parts.append(f"Session: {filters.session}")
    return " · ".join(parts)


def _sort_value(sort: str, pk: int) -> Cursor | None:
    field = SORTS[sort.lstrip("-")][0]
    row = Transcript.objects.filter(pk=pk).values_list(field, flat=True).first()
    if row is None and not Transcript.objects.filter(pk=pk).exists():
        return None
    return Cursor(row, pk)


def walk_next(filters: QueueFilters, *, after: int | None) -> Transcript | None:
    """The item after ``after`` in the filters' queue order (the first without it): how "Next"
    works through a ``WALKED`` filter. Opening it reserves it as opening any item does."""
    sort = effective_sort(filters)
    rows = Transcript.objects.filter(conditions(filters))
    if after is not None:
        cursor = _sort_value(sort, after)
        if cursor is not None:
            rows = rows.filter(_beyond(sort, cursor, forward=True))
    return rows.order_by(*_orderings(sort)).only("pk").first()


@dataclass(frozen=True)
class Progress:
    """Where the viewer is in the filters "Next" works through, and their own count today.

    ``walked``: the item's ``position`` of ``total`` in the filters' order (None when the item
    is not among them); otherwise ``left``: the open, queued items under the filters the viewer
    has given no current review (reserved ones included). ``today``: the viewer's reviews since
    midnight (the server's time zone), an unsure included, superseded ones too."""

    name: str
    walked: bool
    today: int
    position: int | None = None
    total: int = 0
    left: int = 0


# "Left for you" finds the viewer's reviewed items among the queue's items in progress when
# there are at most this many of them (``_own_in_progress``).
IN_PROGRESS_PROBED = 5000


def _own_in_progress(viewer: User, *, in_progress: int) -> int:
    """How many of the queue's ``in_progress`` items in progress (visible ones) ``viewer``
    has a current review of, read from the smaller side: those items (an index range of
    ``tr_next``, each probed for a review of the viewer's through ``rv_current``) while they
    are at most ``IN_PROGRESS_PROBED``; otherwise the viewer's current reviews (index
    ``rv_auditor``) joined to their items by id. With K = 1 almost nothing waits in progress,
    while an auditor's reviews grow without bound: at a million records, 10,000 reviews each
    made this count the verdict's slowest query."""
    if in_progress <= IN_PROGRESS_PROBED:
        theirs = Review.objects.current().filter(auditor=viewer, transcript=OuterRef("pk"))
        return (
            Transcript.objects.filter(in_queue=True, status=Status.IN_PROGRESS)
            .filter(Exists(theirs))
            .count()
        )
    return (
        Review.objects.current()
        .filter(_on_visible_items(Q(in_queue=True, status__in=OPEN_STATUSES)), auditor=viewer)
        .values("transcript")
        .distinct()
        .count()
    )


def reviews_today(viewer: User) -> QuerySet[Review]:
    """The viewer's reviews since midnight (the server's time zone), an unsure included,
    superseded ones too, adjudications not: counted from index ``rv_auditor`` alone."""
    from django.utils import timezone

    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Review.objects.filter(auditor=viewer, created_at__gte=midnight).exclude(
        verdict=Verdict.ADJUDICATE
    )


def progress(filters: QueueFilters | None, *, item: Transcript, viewer: User) -> Progress:
    """The viewer's progress through ``filters`` (None: the whole queue), at ``item``: two
    counts, three for a walked filter, whatever the data size."""
    today = reviews_today(viewer).count()
    name = describe(filters)
    if filters is not None and filters.walked:
        sort = effective_sort(filters)
        rows = Transcript.objects.filter(conditions(filters))
        total = rows.count()
        cursor = Cursor(getattr(item, SORTS[sort.lstrip("-")][0]), item.pk)
        before = rows.filter(_beyond(sort, cursor, forward=False)).count()
        inside = rows.filter(pk=item.pk).exists()
        return Progress(name, True, today, position=before + 1 if inside else None, total=total)
    rows = Transcript.objects.in_queue().open()
    if filters is None:
        # The whole queue: its size from the rollup, less the viewer's own reviewed items in
        # it, rather than counting the open rows (which SQLite does for "id IN (their
        # reviews)"). An open item with a current review is in progress (workflow's
        # derive_final_state), so those are queued items in progress that the viewer reviewed.
        queued = rollup.queued_open()
        reviewed = _own_in_progress(viewer, in_progress=queued[Status.IN_PROGRESS])
        return Progress(name, False, today, left=sum(queued.values()) - reviewed)
    mine = Review.objects.current().filter(auditor=viewer)
    rows = rows.filter(for_next(filters), rollup.none_of("pk", mine, key="transcript"))
    return Progress(name, False, today, left=rows.count())
