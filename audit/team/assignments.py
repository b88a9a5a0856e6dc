"""Assignments: staff hand a selection to named auditors with K, and "Next" serves each auditor
their assigned items first (``audit.review.leases.claim_next``).

An assignment's tasks (one per item and auditor) are fixed when it is made: each item goes to
min(K, number of auditors) of the named auditors, round-robin, so every auditor gets a balanced
share (their counts differ by at most one), and the items' K becomes the assignment's K
(``workflow.set_required_reviews``, which re-derives statuses). Only items in the review queue
are assigned: "Next" hands out queued items only, so an item outside it could never be served.

A task is *done* when its auditor has a current verdict of their own on the item (an "unsure"
is not one: the rule of ``visibility.own_verdict_items``). It is *settled without you* when the
item no longer takes auditor reviews (settled, or disputed and waiting for adjudication) and the
auditor gave none; progress never waits for work nobody can do any more. Everything else is
*open*. Progress counts tasks, never verdict values, so it shows nobody how anyone decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q

from audit.models import (
    OPEN_STATUSES,
    SETTLED_STATUSES,
    Assignment,
    AssignmentTask,
    Review,
    Transcript,
    TranscriptQuerySet,
)
from audit.permissions import AUDITOR, has_role
from audit.publish.selection import Selection, records
from audit.review import visibility
from audit.review.workflow import sample_ids, set_required_reviews

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# The most reviews an assignment may ask for, as the admin's set-K action allows.
MAX_K = 10
NAME_MAX_LENGTH = int(Assignment._meta.get_field("name").max_length or 0)
# Tasks written per INSERT.
_CHUNK = 1000


@dataclass(frozen=True)
class AssignmentResult:
    assignment: Assignment
    # Items assigned (each has min(K, auditors) tasks).
    items: int
    tasks: int
    # Selected items left out because they are not in the review queue.
    outside_queue: int
    # Items whose K the assignment changed.
    k_changed: int

    def describe(self) -> str:
        a = self.assignment
        text = (
            f"Assignment #{a.pk} {a.name!r}: {self.items} item(s), {self.tasks} task(s), "
            f"K = {a.k}; K changed on {self.k_changed} item(s)."
        )
        if self.outside_queue:
            text += (
                f" {self.outside_queue} selected item(s) outside the review queue were left "
                "out (Next hands out queued items only)."
            )
        return text


def select(chosen: Selection, *, sample: int | None = None, seed: int | None = None) -> Any:
    """The transcripts a selection names, or a reproducible sample of N of its queued items
    (``workflow.sample_ids``; seed 0 when none is given)."""
    queryset = chosen.apply(Transcript.objects.all())
    if sample is None:
        return queryset
    if sample < 1:
        raise ValueError("a sample needs at least 1 item")
    ids = sample_ids(queryset.in_queue(), sample, seed=seed or 0)
    return records({"pks": ids})


def spread(items: Sequence[int], auditors: Sequence[Any], k: int) -> Iterable[tuple[int, Any]]:
    """(item, auditor) pairs: each item to min(k, len(auditors)) different auditors, taken
    round-robin from where the previous item stopped, so shares differ by at most one."""
    per_item = min(k, len(auditors))
    position = 0
    for item in items:
        for offset in range(per_item):
            yield item, auditors[(position + offset) % len(auditors)]
        position = (position + per_item) % len(auditors)


def assignable() -> Any:
    """The people an assignment can go to: active users with the auditor role (superusers
    hold every role), by username."""
    users = get_user_model().objects.filter(is_active=True)
    return (
        users.filter(Q(groups__name=AUDITOR) | Q(is_superuser=True)).distinct().order_by("username")
    )


def _checked_auditors(auditors: Sequence[User]) -> list[User]:
    unique: list[User] = []
    for user in auditors:
        if user.pk not in {u.pk for u in unique}:
            unique.append(user)
    if not unique:
        raise ValueError("name at least one auditor to assign to")
    for user in unique:
        if not user.is_active:
            raise ValueError(f"user {user.username!r} is inactive")
        if not has_role(user, AUDITOR):
            raise ValueError(f"user {user.username!r} does not have the auditor role")
    return unique


def assign(
    transcripts: TranscriptQuerySet,
    *,
    auditors: Sequence[User],
    k: int,
    by: User | None,
    name: str,
    selection: dict | None = None,
    sample: int | None = None,
    seed: int | None = None,
) -> AssignmentResult:
    """Assign the queued items of ``transcripts`` (the selection already applied) to
    ``auditors`` with K = ``k``. ``selection``, ``sample`` and ``seed`` describe how the items
    were chosen, for the record. ValueError names what is wrong with the input."""
    name = (name or "").strip()
    if not name:
        raise ValueError("an assignment needs a name")
    if len(name) > NAME_MAX_LENGTH:
        raise ValueError(f"the name is longer than {NAME_MAX_LENGTH} characters")
    if k < 1:
        raise ValueError(f"K must be a whole number of at least 1, got {k!r}")
    if k > MAX_K:
        raise ValueError(f"K must be at most {MAX_K}, got {k}")
    people = _checked_auditors(auditors)
    if sample is not None and sample < 1:
        raise ValueError("a sample needs at least 1 item")
    selected = list(transcripts.order_by("pk").values_list("pk", "in_queue"))
    if not selected:
        raise ValueError("the selection is empty: no transcript matches it")
    items = [pk for pk, in_queue in selected if in_queue]
    if not items:
        raise ValueError(
            f"none of the {len(selected)} selected transcript(s) is in the review queue, "
            "and Next hands out queued items only"
        )
    with transaction.atomic():
        assignment = Assignment.objects.create(
            name=name,
            created_by=by,
            selection=dict(selection or {}),
            sample=sample,
            seed=seed,
            k=k,
            items=len(items),
        )
        tasks = 0
        batch: list[AssignmentTask] = []
        for item, auditor in spread(items, people, k):
            batch.append(AssignmentTask(assignment=assignment, transcript_id=item, auditor=auditor))
            if len(batch) >= _CHUNK:
                AssignmentTask.objects.bulk_create(batch)
                tasks += len(batch)
                batch = []
        AssignmentTask.objects.bulk_create(batch)
        tasks += len(batch)
        changed = set_required_reviews(records({"pks": items}), k)
    return AssignmentResult(
        assignment=assignment,
        items=len(items),
        tasks=tasks,
        outside_queue=len(selected) - len(items),
        k_changed=changed,
    )


# --- progress ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Task counts (never verdict values): done by their auditor, settled without them, open."""

    total: int = 0
    done: int = 0
    settled_without: int = 0

    @property
    def open(self) -> int:
        return self.total - self.done - self.settled_without

    @property
    def finished(self) -> int:
        """Tasks that need nothing more: done, or settled without their auditor."""
        return self.done + self.settled_without

    def __add__(self, other: Progress) -> Progress:
        return Progress(
            self.total + other.total,
            self.done + other.done,
            self.settled_without + other.settled_without,
        )


def _counts(tasks: Any, auditor: User) -> Any:
    """Per-assignment counts of one auditor's ``tasks``: one query."""
    done = Q(transcript__in=visibility.own_verdict_items(auditor))
    closed = ~Q(transcript__status__in=OPEN_STATUSES)
    return (
        tasks.filter(auditor=auditor)
        .order_by()
        .values("assignment")
        .annotate(
            total=Count("pk"),
            done=Count("pk", filter=done),
            settled_without=Count("pk", filter=~done & closed),
        )
    )


@dataclass(frozen=True)
class AuditorProgress:
    auditor: User
    progress: Progress


def progress(assignments: Sequence[Assignment]) -> dict[int, list[AuditorProgress]]:
    """{assignment id: each auditor's Progress, by username} for these assignments: one query
    for their auditors, then one per auditor (a team's size, not the tasks' number)."""
    ids = [a.pk for a in assignments]
    tasks = AssignmentTask.objects.filter(assignment__in=ids)
    auditor_ids = set(tasks.order_by().values_list("auditor", flat=True).distinct())
    result: dict[int, list[AuditorProgress]] = {pk: [] for pk in ids}
    for auditor in _users(auditor_ids):
        for row in _counts(tasks, auditor):
            counts = Progress(row["total"], row["done"], row["settled_without"])
            result[row["assignment"]].append(AuditorProgress(auditor, counts))
    return result


def total(rows: Iterable[AuditorProgress]) -> Progress:
    return sum((row.progress for row in rows), Progress())


def settled_items(assignments: Sequence[Assignment]) -> dict[int, int]:
    """{assignment id: how many of its items are settled}: one query."""
    rows = (
        AssignmentTask.objects.filter(
            assignment__in=[a.pk for a in assignments], transcript__status__in=SETTLED_STATUSES
        )
        .order_by()
        .values("assignment")
        .annotate(n=Count("transcript", distinct=True))
    )
    return {row["assignment"]: row["n"] for row in rows}


def progress_of(auditor: User, assignments: Sequence[Assignment]) -> dict[int, Progress]:
    """{assignment id: the auditor's own Progress} for these assignments: one query."""
    tasks = AssignmentTask.objects.filter(assignment__in=[a.pk for a in assignments])
    return {
        row["assignment"]: Progress(row["total"], row["done"], row["settled_without"])
        for row in _counts(tasks, auditor)
    }


def _users(ids: Iterable[int]) -> list[User]:
    from django.contrib.auth import get_user_model

    return list(get_user_model().objects.filter(pk__in=list(ids)).order_by("username"))


def of_auditor(auditor: User) -> Any:
    """The assignments the auditor has tasks in, newest first."""
    mine = AssignmentTask.objects.filter(auditor=auditor).values("assignment")
    return Assignment.objects.filter(pk__in=mine)


# --- "Next" --------------------------------------------------------------------------------


def open_tasks(auditor: User) -> Any:
    """The auditor's tasks "Next" can still serve them: items in the queue that still take
    auditor reviews and have no current review of theirs (an "unsure" included: "Next" never
    hands one back). Read from the auditor's own tasks (index as_task_auditor), joined to the
    items by id, so it costs what they number, not the table's size."""
    own_review = Review.objects.current().filter(transcript=OuterRef("transcript"), auditor=auditor)
    return AssignmentTask.objects.filter(
        auditor=auditor,
        transcript__in_queue=True,
        transcript__status__in=OPEN_STATUSES,
    ).filter(~Exists(own_review))


def others_open_task(auditor: User) -> Exists:
    """For the outer Transcript row: another auditor has a task on it they have not given a
    review for yet. "Next" hands such items to anyone else only after unassigned work."""
    their_review = Review.objects.current().filter(
        transcript=OuterRef("transcript"), auditor=OuterRef("auditor")
    )
    return Exists(
        AssignmentTask.objects.filter(transcript=OuterRef("pk"))
        .exclude(auditor=auditor)
        .filter(~Exists(their_review))
    )


# --- reports (the command line) -------------------------------------------------------------


def _counts_dict(counts: Progress) -> dict[str, int]:
    return {
        "total": counts.total,
        "done": counts.done,
        "settled_without": counts.settled_without,
        "open": counts.open,
    }


def report(listed: Sequence[Assignment]) -> list[dict[str, Any]]:
    """Each assignment with its progress, as JSON: tasks in all and per auditor (counts of
    tasks, never verdict values), and how many of its items are settled."""
    per_auditor = progress(listed)
    settled = settled_items(listed)
    return [
        {
            "id": a.pk,
            "name": a.name,
            "created_at": a.created_at.isoformat(),
            "created_by": a.created_by.get_username() if a.created_by else None,
            "selection": a.selection,
            "sample": a.sample,
            "seed": a.seed,
            "k": a.k,
            "items": a.items,
            "settled_items": settled.get(a.pk, 0),
            "tasks": _counts_dict(total(per_auditor[a.pk])),
            "auditors": {
                row.auditor.get_username(): _counts_dict(row.progress) for row in per_auditor[a.pk]
            },
        }
        for a in listed
    ]


def report_lines(entry: dict[str, Any]) -> list[str]:
    """One ``report`` entry in words, each figure with its basis and n."""
    tasks = entry["tasks"]
    lines = [
        f"#{entry['id']} {entry['name']} (K = {entry['k']}): {entry['items']} item(s), "
        f"{entry['settled_items']} of them settled; tasks: {tasks['done']} of {tasks['total']} "
        f"done, {tasks['settled_without']} settled without their auditor, {tasks['open']} open"
    ]
    for name, counts in entry["auditors"].items():
        lines.append(
            f"  {name}: {counts['done']} of {counts['total']} task(s) done, "
            f"{counts['settled_without']} settled without them, {counts['open']} open"
        )
    return lines
