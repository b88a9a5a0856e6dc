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
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import OPEN_STATUSES, Lease, Review, Transcript, TranscriptQuerySet

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
    lease comes back first. ``skip`` holds ids skipped in this session.
    """
    now = timezone.now()
    expires = now + timedelta(seconds=settings.AUDIT_LEASE_SECONDS)
    candidates = _filtered(claimable(auditor, now), filters).exclude(pk__in=list(skip))
    with transaction.atomic():
        own = (
            Lease.objects.live(now)
            .filter(auditor=auditor, transcript__in=candidates.values("pk"))
            .order_by("-transcript__priority", "transcript_id")
            .first()
        )
        if own is not None:
            Lease.objects.filter(pk=own.pk).update(expires_at=expires)
            return Transcript.objects.get(pk=own.transcript_id)
    tried: list[int] = []
    for _attempt in range(8):
        with transaction.atomic():
            # skip_locked: two auditors claiming at once each get a different row to work on
            # instead of waiting for one another (PostgreSQL; SQLite serialises writers).
            locking = candidates.exclude(pk__in=tried).order_by("-priority", "pk")
            locking = locking.select_for_update(skip_locked=True, of=("self",))
            candidate = locking.first()
            if candidate is None:
                return None
            # Re-check with a fresh statement: a lease committed since the query's snapshot
            # (READ COMMITTED) is visible now, and the row lock keeps others out until commit.
            if not claimable(auditor, timezone.now()).filter(pk=candidate.pk).exists():
                tried.append(candidate.pk)
                continue
            Lease.objects.filter(transcript=candidate, auditor=auditor).delete()
            Lease.objects.create(transcript=candidate, auditor=auditor, expires_at=expires)
            return candidate
    return None


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
