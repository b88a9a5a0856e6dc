"""Which records a filter means: the one selection vocabulary every surface parses.

The queue, the dashboard, the admin changelist, exports, releases, background tasks and the
commands all name records with these keys, and all parse them here, with one error type:

    batch     import batch id            session   session id
    task      task id                    worker    worker id
    status    review status              flag      why it is in the queue
    decision  decision type (any case)   category  alignment category as imported
    mbtype    misbehavior type as imported

A key given twice matches either value; different keys must all match. Values outside the
vocabularies are kept (the data holds them), except for ``status`` and ``flag``, which name
columns and states of this app, and ``batch``, which is an id.

Screens add their own extras on top (the queue's search, scope and sort, the dashboard's date
range); what a blind viewer may filter on is ``audit.review.visibility``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import CommandError
from django.db import connections, router
from django.db.models import Q
from django.db.models.expressions import RawSQL

from audit.models import Flag, ImportBatch, Status, Transcript, TranscriptQuerySet, parse_id


class SelectionError(ValueError):
    """A filter that does not parse; the message names the key or value and what is allowed."""


@dataclass(frozen=True)
class Filter:
    key: str
    column: str
    label: str

    def condition(self, values: Iterable[str]) -> Q:
        if self.key == "flag":
            condition = Q()
            for flag in values:
                condition |= Q(**{f"flag_{Flag(flag).value}": True})
            return condition
        return Q(**{f"{self.column}__in": list(values)})


FILTERS: dict[str, Filter] = {
    f.key: f
    for f in (
        Filter("batch", "batch_id", "Batch"),
        Filter("session", "session_id", "Session"),
        Filter("task", "task_id", "Task"),
        Filter("worker", "worker_id", "Worker"),
        Filter("status", "status", "Status"),
        Filter("decision", "decision_type", "Decision"),
        Filter("category", "alignment_category", "Category (as imported)"),
        Filter("mbtype", "misbehavior_type", "Misbehavior type"),
        Filter("flag", "flag", "Flag"),
    )
}
KEYS = tuple(FILTERS)


def clean_value(key: str, value: Any) -> str:
    """The value as the filter compares it; SelectionError names what is wrong with it."""
    if key not in FILTERS:
        raise SelectionError(f"unknown filter {key!r}; use one of: {', '.join(sorted(KEYS))}")
    text = str(value).strip()
    if key == "flag" and text not in Flag.values:
        raise SelectionError(f"unknown flag {text!r}; use one of: {', '.join(Flag.values)}")
    if key == "status" and text not in Status.values:
        raise SelectionError(f"unknown status {text!r}; use one of: {', '.join(Status.values)}")
    if key == "batch" and parse_id(text) is None:
        raise SelectionError(f"batch must be an import batch id, got {text!r}")
    if key == "decision":
        text = text.upper()
    return text


@dataclass(frozen=True)
class Selection:
    """A parsed filter: ``{key: values}``, keys and values sorted, each value cleaned."""

    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, mapping: Mapping[str, Iterable[Any]]) -> Selection:
        """From ``{key: [values]}``; empty values (None, "") are left out."""
        filters: dict[str, set[str]] = {}
        for key, values in mapping.items():
            for value in values:
                if value is None or str(value).strip() == "":
                    continue
                filters.setdefault(key, set()).add(clean_value(key, value))
        return cls({key: tuple(sorted(values)) for key, values in sorted(filters.items())})

    @classmethod
    def parse(cls, pairs: Iterable[str]) -> Selection:
        """From ``["task=basic_oversight", "flag=spot_check"]`` (command lines)."""
        mapping: dict[str, list[str]] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise SelectionError(f"filter {pair!r} is not key=value")
            mapping.setdefault(key, []).append(value)
        return cls.of(mapping)

    def __bool__(self) -> bool:
        return bool(self.filters)

    def as_dict(self) -> dict[str, list[str]]:
        """JSON form, as releases record it and tasks receive it."""
        return {key: list(values) for key, values in self.filters.items()}

    def without(self, key: str) -> Selection:
        return Selection({k: v for k, v in self.filters.items() if k != key})

    def q(self) -> Q:
        condition = Q()
        for key, values in self.filters.items():
            condition &= FILTERS[key].condition(values)
        return condition

    def apply(self, queryset: TranscriptQuerySet) -> TranscriptQuerySet:
        return queryset.filter(self.q()) if self else queryset


def records(spec: Mapping[str, Any]) -> TranscriptQuerySet:
    """The transcripts a JSON selection names: ``{"filter": {key: [values]}}`` (checked again:
    it may have been queued by an older version) or ``{"pks": [ids]}``. Background tasks get
    these."""
    queryset = Transcript.objects.all()
    if "filter" in spec:
        return Selection.of(spec["filter"]).apply(queryset)
    if "pks" in spec:
        pks = [int(pk) for pk in spec["pks"]]
        vendor = connections[router.db_for_read(Transcript)].vendor
        # One bound parameter, not one per id: "select all" may name a million rows, more than
        # SQLite (250,000) or PostgreSQL's protocol (65,535) take as separate parameters.
        if vendor == "sqlite":
            return queryset.filter(
                pk__in=RawSQL("SELECT value FROM json_each(%s)", [json.dumps(pks)])
            )
        if vendor == "postgresql":
            return queryset.filter(pk__in=RawSQL("SELECT unnest(%s::bigint[])", [pks]))
        return queryset.filter(pk__in=pks)
    raise SelectionError(f"a selection names 'filter' or 'pks', got {sorted(spec)}")


# --- the admin changelist ------------------------------------------------------------------------

# Transcript changelist parameters that select exactly what a filter key does.
CHANGELIST_FILTERS = {
    "status__exact": "status",
    "flag": "flag",
    "task_id__exact": "task",
    "task_id": "task",
    "worker_id__exact": "worker",
    "worker_id": "worker",
    "decision_type__exact": "decision",
    "decision_type": "decision",
    "alignment_category__exact": "category",
    "alignment_category": "category",
    "batch__id__exact": "batch",
}
# Changelist parameters that change how the list looks, not which rows it holds.
CHANGELIST_DISPLAY = {"o", "p", "all", "_facets", "_changelist_filters"}


def from_changelist(params: Mapping[str, list[str]]) -> Selection | None:
    """The selection these changelist parameters make, or None when some parameter has no
    equivalent here (a search, in_queue, K, ...)."""
    mapping: dict[str, list[str]] = {}
    for key, values in params.items():
        if key in CHANGELIST_DISPLAY or (key == "q" and not "".join(values).strip()):
            continue
        if key not in CHANGELIST_FILTERS or len(values) != 1:
            return None
        mapping.setdefault(CHANGELIST_FILTERS[key], []).append(values[0])
    try:
        return Selection.of(mapping)
    except SelectionError:
        return None


# --- commands ------------------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """The ``--filter KEY=VALUE`` option every command that takes a selection offers."""
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"restrict the selection; keys: {', '.join(KEYS)} (repeatable)",
    )


def from_command(options: Mapping[str, Any], **shorthands: str) -> Selection:
    """``from_options`` for a command: CommandError naming the problem, a batch id that names
    no import batch included (an empty selection would pass for a typo otherwise)."""
    try:
        chosen = from_options(options, **shorthands)
    except SelectionError as exc:
        raise CommandError(str(exc)) from None
    for batch in chosen.filters.get("batch", ()):
        if not ImportBatch.objects.filter(pk=int(batch)).exists():
            raise CommandError(f"there is no import batch #{batch}")
    return chosen


def from_options(options: Mapping[str, Any], **shorthands: str) -> Selection:
    """The selection of a command's ``--filter`` pairs plus its shorthand options, e.g.
    ``from_options(options, batch="batch", session="session_id")`` reads ``--batch`` and
    ``--session-id`` as ``batch=`` and ``session=`` filters."""
    pairs = list(options.get("filter") or [])
    for key, option in shorthands.items():
        if options.get(option) is not None:
            pairs.append(f"{key}={options[option]}")
    return Selection.parse(pairs)
