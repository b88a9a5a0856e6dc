"""Leases: which auditor is working on which item, so two auditors are not handed the same one.

"Next" claims one (an auditor's own live lease comes back first). Opening a queued item that
still has room (counting reviews plus others' live leases below K) reserves it too, but only
while the auditor holds no other live lease on an open queued item: opening never drops a lease,
so browsing (the timeline's j/k, the queue) cannot release the item "Next" handed out, and an
auditor reserves at most one item by browsing. Steps outside the queue are never reserved. A
lease ends with the auditor's verdict on the item (``workflow``), a skip, or when it expires.

``claimable`` (SQL, for "Next") and ``has_room`` (Python, for an opened item) are twins: the
same room, side by side, with one deliberate difference: "Next" never hands an auditor an item
they have any current review on (an "unsure" included, or it would keep coming back), while
opening an item one marked unsure still reserves it, so one can return to it and decide.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import (
    OPEN_STATUSES,
    AssignmentTask,
    Lease,
    Review,
    Transcript,
    TranscriptQuerySet,
)
from audit.team import assignments

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def claimable(auditor: User, now: dt.datetime) -> TranscriptQuerySet:
    """Items \"Next\" may hand the auditor (SQL twin of ``has_room``)."""
    live_leases = (
        Lease.objects.live(now)
        .filter(transcript=OuterRef("pk"))
        .exclude(auditor=auditor)
        .order_by()
        .values("transcript")
        .annotate(n=Count("pk"))
        .values("n")
    )
    own_review = Review.objects.current().filter(transcript=OuterRef("pk"), auditor=auditor)
    return (
        Transcript.objects.in_queue()
        .open()
        .annotate(leased=Coalesce(Subquery(live_leases), Value(0)))
        .filter(~Exists(own_review), leased__lt=F("required_reviews") - F("review_count"))
    )


def _filtered(
    queryset: TranscriptQuerySet, filters: Mapping[str, Any] | Q | None
) -> TranscriptQuerySet:
    if filters is None:
        return queryset
    if isinstance(filters, Q):
        return queryset.filter(filters)
    return queryset.filter(**filters)


def claim_next(
    auditor: User,
    *,
    filters: Mapping[str, Any] | Q | None = None,
    skip: Collection[int] = (),
) -> Transcript | None:
    """Lease the highest-priority queued item that still needs a review from this auditor.

    An item is handed out while its live leases plus counting reviews are fewer than K, so two
    auditors get different items with K = 1 and may share one with K = 2. An auditor's own live
    lease comes back first, then the items of the auditor's assignments they have not reviewed
    (``audit.team.assignments``), then the rest, where items assigned to another auditor who has
    not reviewed them yet come after unassigned ones. ``skip`` holds ids skipped in this
    session; ``filters`` apply to every step.

    The search is a plain read, outside any transaction, so it never holds a lock (on SQLite a
    write transaction is the database's one write lock); only taking the lease is a short
    write transaction, which re-checks that one row. When another auditor took the row
    meanwhile, the search goes on past it, until a claim succeeds or the read finds nothing
    claimable: None means there was nothing left, never that it gave up.
    """
    now = timezone.now()
    expires = now + timedelta(seconds=settings.AUDIT_LEASE_SECONDS)
    candidates = _filtered(claimable(auditor, now), filters).exclude(pk__in=list(skip))
    # The auditor's live leases first, as a list: a few rows, looked up by id (as a subquery,
    # SQLite would scan every open row to test it).
    held = list(
        Lease.objects.live(now).filter(auditor=auditor).values_list("transcript", flat=True)
    )
    if held:
        own = candidates.filter(pk__in=held).order_by("-priority", "pk")
        own_pk = own.values_list("pk", flat=True).first()
        if own_pk is not None:
            claimed = _take(own_pk, auditor=auditor, expires=expires, wait=True)
            if claimed is not None:
                return claimed
    # Then the auditor's assigned items, then everything else, where items another auditor is
    # assigned to and has not reviewed yet come after the unassigned ones (ordered after, never
    # reserved: nothing waits on someone who does not come).
    claimed = _claim_listed(
        assignments.open_tasks(auditor), candidates, auditor=auditor, expires=expires
    )
    if claimed is not None:
        return claimed
    claimed = _search(
        candidates.filter(~assignments.others_open_task(auditor)), auditor=auditor, expires=expires
    )
    if claimed is not None:
        return claimed
    others = AssignmentTask.objects.filter(
        transcript__in_queue=True, transcript__status__in=OPEN_STATUSES
    ).exclude(auditor=auditor)
    # Every candidate the search above passed over is an item of such a task.
    return _claim_listed(others, candidates, auditor=auditor, expires=expires)


def _search(
    candidates: TranscriptQuerySet, *, auditor: User, expires: dt.datetime
) -> Transcript | None:
    """Claim the first candidate in "Next" order, going on past rows taken meanwhile."""
    # Where the search goes on in each open status: past the (priority, id) last tried.
    after: dict[str, tuple[int, int] | None] = dict.fromkeys(OPEN_STATUSES)
    while True:
        heads = []  # (priority, id, status) of the first claimable row of each open status
        for status, position in after.items():
            head = _first_claimable(candidates, status=status, after=position)
            if head is not None:
                heads.append((*head, status))
        if not heads:
            return None
        priority, pk, status = min(heads, key=lambda head: (-head[0], head[1]))
        claimed = _take(pk, auditor=auditor, expires=expires, wait=False)
        if claimed is not None:
            return claimed
        after[status] = (priority, pk)


# Assigned items read per query when "Next" looks among them.
_LISTED_CHUNK = 200


def _claim_listed(
    tasks: QuerySet[AssignmentTask],
    candidates: TranscriptQuerySet,
    *,
    auditor: User,
    expires: dt.datetime,
) -> Transcript | None:
    """Claim the first candidate among the items of ``tasks``, in "Next" order.

    Driven from the tasks (their own indexes, joined to the items by id), never by testing
    every open row: the tasks' items are read in "Next" order a chunk at a time, past the last
    (priority, id) read, and each chunk's ids, a short list, go to the candidates' query."""
    items = (
        tasks.order_by("-transcript__priority", "transcript_id")
        .values_list("transcript__priority", "transcript_id")
        .distinct()
    )
    after: tuple[int, int] | None = None
    while True:
        rows = items
        if after is not None:
            priority, pk = after
            rows = rows.filter(
                Q(transcript__priority__lt=priority)
                | Q(transcript__priority=priority, transcript_id__gt=pk)
            )
        chunk = list(rows[:_LISTED_CHUNK])
        if not chunk:
            return None
        ids = [pk for _, pk in chunk]
        passed: list[int] = []  # taken by someone else since the read
        while True:
            first = (
                candidates.filter(pk__in=ids)
                .exclude(pk__in=passed)
                .order_by("-priority", "pk")
                .values_list("pk", flat=True)
                .first()
            )
            if first is None:
                break
            claimed = _take(first, auditor=auditor, expires=expires, wait=False)
            if claimed is not None:
                return claimed
            passed.append(first)
        if len(chunk) < _LISTED_CHUNK:
            return None
        after = chunk[-1]


def _first_claimable(
    candidates: TranscriptQuerySet, *, status: str, after: tuple[int, int] | None
) -> tuple[int, int] | None:
    """(priority, id) of the first candidate in ``status`` in "Next" order, past ``after``."""
    rows = in_next_order(candidates, status=status, after=after)
    return rows.values_list("priority", "pk").first()


def in_next_order(
    candidates: TranscriptQuerySet, *, status: str, after: tuple[int, int] | None = None
) -> TranscriptQuerySet:
    """The candidates in one open status, in "Next" order (priority, then id), past the
    (priority, id) ``after``.

    One status at a time: with ``status = %s`` the query walks the ``tr_next`` index (in_queue,
    status, -priority, id) in order and stops at the first row with room, where a two-value
    ``status IN (...)`` makes PostgreSQL gather and sort every open row first."""
    rows = candidates.filter(status=status)
    if after is not None:
        priority, pk = after
        # priority <= p bounds the index range; the OR then drops the ids already passed.
        rows = rows.filter(priority__lte=priority).filter(Q(priority__lt=priority) | Q(pk__gt=pk))
    return rows.order_by("-priority", "pk")


def _take(pk: int, *, auditor: User, expires: dt.datetime, wait: bool) -> Transcript | None:
    """Lease item ``pk`` to the auditor if it still has room for them; None when not (taken or
    settled since the search read it). A short write transaction on one row.

    The row lock (PostgreSQL; SQLite's write transaction serialises writers anyway) makes two
    auditors claiming the same row take turns, and the re-check runs after it as a new
    statement, so it sees a lease the other committed (READ COMMITTED). ``wait=False`` skips a
    row another claim holds, so auditors who ask at once get different items; ``wait=True``
    (the auditor's own lease) waits for it."""
    with transaction.atomic():
        # With what the item page shows (its batch, its text), so the page after a claim reads
        # the row once; only the transcript's row is locked.
        locked = (
            Transcript.objects.select_for_update(skip_locked=not wait, of=("self",))
            .select_related("batch", "text")
            .filter(pk=pk)
            .first()
        )
        now = timezone.now()
        if locked is None or not claimable(auditor, now).filter(pk=pk).exists():
            return None
        # (transcript, auditor) is unique: their live lease is renewed, an expired one makes
        # way for a new one (the usual case, none, costs one look and the insert).
        theirs = Lease.objects.filter(transcript=locked, auditor=auditor)
        expiry = theirs.values_list("expires_at", flat=True).first()
        if expiry is not None and expiry > now:
            theirs.update(expires_at=expires)
            return locked
        if expiry is not None:
            theirs.delete()
        Lease.objects.create(transcript=locked, auditor=auditor, expires_at=expires)
        return locked


def release_lease(transcript: Transcript, *, auditor: User) -> int:
    """Give the item back (skip); returns how many leases were dropped."""
    deleted, _ = Lease.objects.filter(transcript=transcript, auditor=auditor).delete()
    return deleted


def live_leases(transcript: Transcript) -> list[Lease]:
    """The item's unexpired leases, with their auditors, oldest first."""
    return list(
        Lease.objects.live()
        .filter(transcript=transcript)
        .select_related("auditor")
        .order_by("claimed_at", "id")
    )


def has_room(
    transcript: Transcript, *, auditor: User, reviews: Iterable[Review], leases: Iterable[Lease]
) -> bool:
    """Whether opening the item should lease it to ``auditor``: it is queued and open, they
    have no counting review and no live lease on it, and counting reviews plus others' live
    leases are fewer than K (the same room ``claim_next`` hands items out by). ``leases`` are
    live ones."""
    if not transcript.in_queue or not transcript.is_open:
        return False
    if any(review.auditor_id == auditor.pk and review.is_counting for review in reviews):
        return False
    leases = list(leases)
    if any(lease.auditor_id == auditor.pk for lease in leases):
        return False
    return transcript.review_count + len(leases) < transcript.required_reviews


def holds_other_lease(auditor: User, *, now: dt.datetime, besides: Transcript) -> bool:
    """Whether the auditor holds a live lease on another item "Next" could still hand out
    (queued and open): leases left on items settled meanwhile do not count."""
    return (
        Lease.objects.live(now)
        .filter(auditor=auditor, transcript__in_queue=True, transcript__status__in=OPEN_STATUSES)
        .exclude(transcript=besides)
        .exists()
    )


def reserve(transcript: Transcript, *, auditor: User) -> Lease | None:
    """Lease an item the auditor opened, if it has room and they hold no other live lease on an
    open queued item (one handed out by "Next", or reserved by an earlier open): opening never
    takes a lease away, so browsing cannot free an item for someone else's "Next".

    The caller checks ``has_room`` with the reviews it loaded; under the row lock this re-checks
    what other auditors can change meanwhile (status, K, counting reviews, their leases), so two
    auditors opening the item at once cannot overfill it."""
    now = timezone.now()
    # Checked before taking the row lock: only the auditor's own actions change their leases.
    if holds_other_lease(auditor, now=now, besides=transcript):
        return None
    with transaction.atomic():
        current = Transcript.objects.select_for_update().get(pk=transcript.pk)
        leases = list(Lease.objects.filter(transcript=current))
        live = [lease for lease in leases if lease.expires_at > now]
        if not has_room(current, auditor=auditor, reviews=(), leases=live):
            return None
        expired_own = [lease.pk for lease in leases if lease.auditor_id == auditor.pk]
        if expired_own:  # (transcript, auditor) is unique; has_room saw no live one of theirs
            Lease.objects.filter(pk__in=expired_own).delete()
        return Lease.objects.create(
            transcript=current,
            auditor=auditor,
            expires_at=now + timedelta(seconds=settings.AUDIT_LEASE_SECONDS),
        )


def release_leases(transcripts: TranscriptQuerySet) -> int:
    """Give back every live lease on the items of ``transcripts``, whoever holds them (the
    queue's bulk action, for adjudicators and staff): the items can be handed out again at once.
    One DELETE with the selection as a subquery, whatever its size; returns how many leases
    were dropped (expired ones are left: they hold nothing back)."""
    deleted, _ = (
        Lease.objects.live().filter(transcript__in=transcripts.order_by().values("pk")).delete()
    )
    return deleted
