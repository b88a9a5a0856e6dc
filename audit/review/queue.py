"""The review queue: which items a queue URL lists, in which order, and the counts beside each
filter.

The filters are the selection vocabulary (``audit.publish.selection``) plus the queue's own
extras: free-text search, scope (flagged items or all), the status groups a viewer may use
(``audit.review.visibility``), sort and page. Each facet's counts apply every other filter,
so an option says how many rows choosing it would give.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from django.db.models import Count, Q
from django.http import QueryDict
from django.urls import reverse

from audit.models import Flag, Transcript, TranscriptQuerySet
from audit.publish.selection import FILTERS, Selection
from audit.review.visibility import ANY, OPEN, STATUS_MEMBERS

SORTS = {
    "priority": ("priority", "Priority"),
    "step": ("step_number", "Step"),
    "session": ("session_id", "Session"),
    "timestamp": ("timestamp", "Time"),
    "id": ("id", "Import order"),
}
SORT_CHOICES = [
    (f"{sign}{key}", f"{label} {'↓' if sign else '↑'}")
    for key, (_field, label) in SORTS.items()
    for sign in ("-", "")
]
PAGE_SIZE = 50
# Offsets are bounded: deep pages cost a bounded OFFSET scan; beyond it, narrow the filters.
MAX_PAGE = 400
FACET_LIMIT = 60
# The selection keys the queue offers as selects with counts, in display order.
FACETS = ("category", "task", "worker", "decision", "mbtype", "batch")
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
    sort: str = "-priority"
    page: int = 1

    def selection(self, *, without: str | None = None) -> Selection:
        """The part of the filters the selection vocabulary expresses (``without`` one key)."""
        values = {key: [getattr(self, key)] for key in (*FACETS, "flag", "session")}
        return Selection.of(values).without(without or "")

    def with_status(self, status: str) -> QueueFilters:
        return replace(self, status=status)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def conditions(filters: QueueFilters, *, without: str | None = None) -> Q:
    """The filters as one Q; ``without`` leaves one facet out (for that facet's counts)."""
    cond = filters.selection(without=without).q()
    if filters.scope != "all":
        cond &= Q(in_queue=True)
    if filters.q:
        cond &= Q(search_text__contains=filters.q.lower())
    if without != "status":
        members = STATUS_MEMBERS.get(filters.status, STATUS_MEMBERS[OPEN])
        if members is not None:
            cond &= Q(status__in=members)
    return cond


def order_for(sort: str) -> list[str]:
    key = sort.lstrip("-")
    field = SORTS.get(key, SORTS["priority"])[0]
    desc = sort.startswith("-")
    first = f"-{field}" if desc else field
    return [first] if field == "id" else [first, "-id" if desc else "id"]


def queue_queryset(filters: QueueFilters) -> TranscriptQuerySet:
    return Transcript.objects.filter(conditions(filters)).order_by(*order_for(filters.sort))


def for_next(filters: QueueFilters) -> Q:
    """The filters "Next" works through: it decides status and scope itself (open, queued)."""
    return conditions(replace(filters, status=ANY, scope="all"))


def facet_counts(
    filters: QueueFilters, *, status_choices: list[tuple[str, str]]
) -> dict[str, list[dict[str, Any]]]:
    """Counts per value of each facet, with every other filter applied (one query each). The
    status options are the viewer's (``visibility.status_choices``), each counting the
    statuses it stands for, so a blind viewer gets one count for "settled", never one per way
    of settling."""
    out: dict[str, list[dict[str, Any]]] = {}
    flag_counts = Transcript.objects.filter(conditions(filters, without="flag")).aggregate(
        **{flag.value: Count("id", filter=Q(**{f"flag_{flag.value}": True})) for flag in Flag}
    )
    out["flag"] = [
        {"value": flag.value, "label": flag.label, "n": flag_counts[flag.value]} for flag in Flag
    ]
    by_status = dict(
        Transcript.objects.filter(conditions(filters, without="status"))
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    out["status"] = [
        {"value": value, "label": label, "n": _status_count(by_status, STATUS_MEMBERS[value])}
        for value, label in status_choices
    ]
    for name in FACETS:
        column = FILTERS[name].column
        rows = (
            Transcript.objects.filter(conditions(filters, without=name))
            .order_by()
            .values_list(column)
            .annotate(n=Count("id"))
            .order_by("-n", column)[:FACET_LIMIT]
        )
        items = [
            {
                "value": value,
                "label": f"#{value}" if name == "batch" else value or "(empty)",
                "n": n,
            }
            for value, n in rows
        ]
        selected = getattr(filters, name)
        if selected not in ("", None) and all(str(i["value"]) != str(selected) for i in items):
            items.append({"value": selected, "label": str(selected), "n": 0})
        out[name] = items
    return out


def _status_count(by_status: dict[str, int], members: tuple[str, ...] | None) -> int:
    if members is None:
        return sum(by_status.values())
    return sum(by_status.get(status, 0) for status in members)


def facet_selects(
    filters: QueueFilters, counts: dict[str, list[dict[str, Any]]], defaults: dict[str, str]
) -> list[dict[str, Any]]:
    """One select per facet, each option with its count, the current value selected."""
    specs = [
        ("flag", "Flag", "Any flag"),
        ("status", "Status", None),
        *((name, FILTERS[name].label, "Any") for name in FACETS),
    ]
    selects = []
    for name, label, blank in specs:
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


def defaults() -> dict[str, str]:
    """What each filter means when it is left out, as URL text."""
    return {
        name: "" if value is None else str(value)
        for name, value in QueueFilters().as_dict().items()
    }


def clean_query(query: QueryDict, defaults: dict[str, str]) -> QueryDict:
    """The query without empty parameters or ones set to their default: the URL worth showing
    and bookmarking (a plain GET form submits every field, filled or not)."""
    clean = QueryDict(mutable=True)
    for name, values in query.lists():
        kept = [v for v in values if v.strip() and v != defaults.get(name, "")]
        if kept:
            clean.setlist(name, kept)
    return clean


def url(query: QueryDict, *, page: int | None = None) -> str:
    """The queue's URL for ``query`` (on ``page``)."""
    params = query.copy()
    if page is not None:
        params["page"] = str(page)
    encoded = params.urlencode()
    return f"{reverse('queue')}?{encoded}" if encoded else reverse("queue")
