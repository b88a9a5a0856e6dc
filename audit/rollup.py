"""The rollup: how many transcripts share each combination of the columns the dashboard's
figures and the admin's filter choices read, kept in step by database triggers (migration
0008), and which selections it can answer.

The grain is every column a figure groups or filters by (``DIMENSIONS``): the batch, task,
worker and decision; the imported ground truth and labels; the final labels; the status; the
flags; K. A figure over a selection sums the rows of the matching combinations instead of
scanning the transcripts: at 100k transcripts the rollup holds a few thousand rows.

A selection is answered from the rollup when every filter is one of its columns (batch, task,
worker, status, decision, category, misbehavior type, flag). A session or a date range is not:
those read the transcripts through their indexes (``tr_episode``, ``tr_time``), and give the
same figures (``tests/metrics/test_rollup.py`` compares the two).

Rows of unfinished batches are counted like any other and left out when read (the default
manager, as for transcripts), so an import in progress never shows.

SQLite alters a table by rebuilding it, which drops its triggers: after every ``migrate``,
``restore_triggers`` puts back any that a migration removed and rebuilds the rollup from the
rows, in one transaction.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.db.models.signals import post_migrate

from audit import triggers
from audit.models import (
    OPEN_STATUSES,
    ImportBatch,
    Review,
    ReviewQuerySet,
    Rollup,
    RollupQuerySet,
    Transcript,
    TranscriptQuerySet,
    any_flag,
)
from audit.publish.selection import Selection

DIMENSIONS = (
    "batch_id",
    "required_reviews",
    "task_id",
    "worker_id",
    "decision_type",
    "misbehavior_type",
    "correct_decision",
    "alignment_category",
    "final_misbehavior_type",
    "final_correct_decision",
    "final_alignment_category",
    "status",
    "is_misbehavior",
    "was_true_positive",
    "was_false_positive",
    "was_false_negative",
    "oversight_correct",
    "final_is_misbehavior",
    "flag_missed_misbehavior",
    "flag_over_block",
    "flag_label_inconsistency",
    "flag_debate_disagrees",
    "flag_suspicious_reasoning",
    "flag_unknown_vocabulary",
    "flag_missing_fields",
    "flag_spot_check",
)
# Selection keys whose column is not in the rollup.
NOT_ROLLED_UP = frozenset({"session"})


def answers(selection: Selection) -> bool:
    """Whether the rollup can count ``selection``: every filter is one of its columns."""
    return not NOT_ROLLED_UP & set(selection.filters)


@dataclass(frozen=True)
class Scope:
    """One selection in the forms its figures read.

    ``records`` are the transcripts (sessions, and anything row by row); ``counts`` is what
    counts are taken over: the rollup when it answers the selection, else ``records``;
    ``reviews`` are the reviews of the records.
    """

    records: TranscriptQuerySet
    counts: TranscriptQuerySet | RollupQuerySet
    reviews: ReviewQuerySet

    @property
    def from_rollup(self) -> bool:
        return isinstance(self.counts, RollupQuerySet)

    @property
    def rollup_rows(self) -> RollupQuerySet | None:
        """The rollup's rows of the selection when it answers it, else None (summary.json's
        ``counts``, ``audit.publish.export.build_summary``)."""
        return self.counts if isinstance(self.counts, RollupQuerySet) else None


def scope(selection: Selection, *, narrower: Q | None = None, rollup: bool = True) -> Scope:
    """The records ``selection`` names, further narrowed by ``narrower`` (a date range), with
    their counts read from the rollup where it answers (and ``rollup`` is not turned off)."""
    records = selection.apply(Transcript.objects.all())
    narrowed = narrower is not None and narrower != Q()
    if narrowed:
        records = records.filter(narrower)
    counts: TranscriptQuerySet | RollupQuerySet = records
    if rollup and not narrowed and answers(selection):
        counts = Rollup.objects.filter(selection.q())
    condition = selection.q() & narrower if narrower is not None and narrowed else selection.q()
    return Scope(records=records, counts=counts, reviews=_reviews(condition))


def _reviews(condition: Q) -> ReviewQuerySet:
    """The reviews of visible transcripts that meet ``condition``: the filter on each review's
    own transcript (a join costs one lookup per review; reviews are the few), never a list of
    every matching transcript, and nothing at all when unfiltered."""
    # Every review but those of unfinished batches' rows (there are none, as nobody sees such
    # a row to review it; said in SQL anyway, through the batch index).
    unfinished = Transcript.including_unfinished.filter(
        batch__in=ImportBatch.including_unfinished.unfinished().values("pk")
    )
    reviews = Review.objects.filter(none_of("transcript_id", unfinished, key="pk"))
    return reviews.filter(on_transcript(condition)) if condition else reviews


def none_of(column: str, rows: QuerySet[Any], *, key: str) -> Q:
    """Rows whose ``column`` equals the ``key`` of none of ``rows``, in the form the database
    of ``rows`` plans well.

    PostgreSQL: NOT EXISTS, an anti-join. It cannot turn NOT IN into one (a NULL in the list
    would change its answer), and when it expects the list to outgrow work_mem it runs the
    subquery again for every row instead of hashing it once: a count of the reviews of rows
    of unfinished batches, a list it expected to hold half of 1,000,000 transcripts, took 110 s
    at 50,000 reviews (25 ms as an anti-join), so the dashboard and auditors pages timed out.
    SQLite: NOT IN, whose list it builds once and probes (5 ms there, where NOT EXISTS looks
    up each row's match: 28 ms)."""
    if connections[rows.db].vendor == "postgresql":
        return Q(~Exists(rows.order_by().filter(**{key: OuterRef(column)})))
    return ~Q(**{f"{column}__in": rows.order_by().values(key)})


def on_transcript(condition: Q) -> Q:
    """``condition`` on a review's transcript (each lookup prefixed with ``transcript__``)."""
    prefixed = Q(_connector=condition.connector, _negated=condition.negated)
    children: list[Any] = list(condition.children)
    for child in children:
        if isinstance(child, Q):
            prefixed.children.append(on_transcript(child))
        else:
            lookup, value = child
            prefixed.children.append((f"transcript__{lookup}", value))
    return prefixed


# "In the queue" said on the rollup's columns: ``in_queue`` is set at import to whether the
# record has any flag, spot check included (``audit.ingest.records.extract``), and never
# changes, so the flag columns answer it.
QUEUED = any_flag()


def queued_open() -> dict[str, int]:
    """How many visible transcripts are in the queue and open, by open status (every open
    status a key): what "Next" hands out, before each auditor's own exclusions, without
    counting the queue's rows (at a million records that count is a scan of hundreds of
    thousands of index entries)."""
    found = dict(
        Rollup.objects.filter(QUEUED, status__in=OPEN_STATUSES)
        .order_by()
        .values("status")
        .annotate(n=Sum("transcripts"))
        .values_list("status", "n")
    )
    return {status: found.get(status, 0) for status in OPEN_STATUSES}


def total() -> int:
    """How many transcripts ``Transcript.objects`` sees (those of finished batches): the
    rollup's sum over its few thousand rows, not a count of the table's."""
    return Rollup.objects.aggregate(n=Coalesce(Sum("transcripts"), 0))["n"]


def values(column: str, *, limit: int | None = None) -> list[Any]:
    """The distinct values of a rolled-up column over visible transcripts, in order (filter
    choices), from the rollup rather than a DISTINCT scan of the transcripts."""
    if column not in DIMENSIONS:
        raise ValueError(f"{column!r} is not a rollup column")
    distinct = Rollup.objects.order_by(column).values_list(column, flat=True).distinct()
    return list(distinct[:limit] if limit is not None else distinct)


# --- checking it -------------------------------------------------------------------------------


def stored() -> dict[tuple[Any, ...], int]:
    """The rollup as stored, unfinished batches included: combination -> transcripts."""
    rows = Rollup.including_unfinished.values_list(*DIMENSIONS, "transcripts")
    return {tuple(row[:-1]): row[-1] for row in rows}


def recount() -> dict[tuple[Any, ...], int]:
    """The rollup recomputed from the transcripts, unfinished batches included."""
    rows = (
        Transcript.including_unfinished.order_by()
        .values_list(*DIMENSIONS)
        .annotate(n=Count("id"))
        .values_list(*DIMENSIONS, "n")
    )
    return {tuple(row[:-1]): row[-1] for row in rows}


# --- keeping the triggers ------------------------------------------------------------------------

# The rollup's SQL as its latest migration has it (0009's, its counts updated in place on
# PostgreSQL since 0027).
_MIGRATION = importlib.import_module("audit.migrations.0027_rollup_in_place")
TRIGGERS = _MIGRATION.SQLITE_TRIGGERS


def missing_triggers(using: str = "default") -> list[str]:
    """The rollup's triggers the database does not have (all of them before migration 0009)."""
    present = triggers.present(connections[using])
    return [trigger for trigger in TRIGGERS if trigger not in present]


def restore_triggers(using: str = "default") -> bool:
    """Re-create missing triggers and rebuild the rollup from the rows; True when it had to."""
    connection = connections[using]
    if Rollup._meta.db_table not in connection.introspection.table_names():
        return False  # migrated back to before the rollup
    if not missing_triggers(using):
        return False
    rebuild(using)
    return True


def rebuild(using: str = "default") -> None:
    """Recount the rollup from the transcripts, its triggers re-created, in one transaction
    (``manage.py check_rollup --fix``; after a migration dropped the triggers)."""
    connection = connections[using]
    with transaction.atomic(using=using):
        _MIGRATION.uninstall(connection)
        Rollup.including_unfinished.using(using).all().delete()
        _MIGRATION.install(connection)


def counted_in_bulk(cursor: CursorWrapper) -> AbstractContextManager[None]:
    """SQLite: the rows inserted inside (the importer's chunks) are counted with one grouped
    upsert on leaving instead of a trigger each (``triggers``); PostgreSQL's trigger already
    counts a statement's rows at once."""
    if cursor.db.vendor != "sqlite":
        return nullcontext()
    columns = _MIGRATION.COLUMNS
    return triggers.insert_trigger_replaced(
        cursor,
        trigger="audit_rollup_insert",
        create=_MIGRATION._sqlite_statements()[0],
        catch_up=f"INSERT INTO audit_rollup (combination, {columns}, transcripts) "
        f"SELECT {_MIGRATION._key('', vendor='sqlite')}, {columns}, count(*) "
        f"FROM audit_transcript WHERE id > %s GROUP BY {columns} "
        "ON CONFLICT (combination) DO UPDATE SET transcripts = transcripts + excluded.transcripts",
    )


def _after_migrate(sender: Any, *, using: str = "default", **kwargs: Any) -> None:
    if getattr(sender, "label", None) == "audit":
        restore_triggers(using)


post_migrate.connect(_after_migrate, dispatch_uid="audit.rollup.restore_triggers")
