"""The review workflow: verdicts, overlap (K reviews per item), adjudication, leases.

Reviews are the source of truth. A transcript's ``status``, ``review_count`` and ``final_*``
columns are a cache computed from its current (non-superseded) reviews by ``derive_final_state``;
the write path and ``recompute_final_labels`` (and the ``check_final_labels`` command) all go
through it, so the cache can always be rebuilt and checked.

Rules (README, Review workflow):
- Counting reviews are current CONFIRM and RELABEL reviews. UNSURE reviews stay in the history
  but do not count toward K and leave the item open.
- A CONFIRM says "the imported label is right": its values are the imported ground truth.
- With at least K counting reviews, agreement on (is_misbehavior, misbehavior_type,
  correct_decision) settles the item (confirmed when that equals the imported ground truth, else
  relabeled); disagreement makes it disputed. Fewer than K: in progress (unreviewed if none).
- A current ADJUDICATE review settles the item whatever the others say; the latest one wins.
- Items that are not settled keep the imported ground truth as their final labels, so the cache
  depends on the reviews alone, never on what it held before.
- Every write locks the transcript row, refuses a stale ``based_on_version`` and bumps the version.
- A CONFIRM needs a complete imported label (a known correct decision; a known type when it is
  misbehavior): confirming a gap would publish it as reviewed. Such items are relabeled.
- Once K counting reviews are in (settled or disputed), the item takes no reviews from newcomers:
  only auditors with a current counting review on it may revise theirs. So a late review can
  neither unsettle a settled item nor add noise to a dispute; raising K reopens the item.
  Adjudicated items take no more reviews at all (the adjudicator's word is final).

Blindness (``may_see_reviews``, the one rule every screen applies): others' verdicts, the final
labels and the settled status (confirmed/relabeled/adjudicated, shown to blind viewers only as
"settled") stay hidden until the viewer has given a verdict of their own (UNSURE does not
count); adjudicators see everything on disputed and adjudicated items.

Leases: "Next" claims one (an auditor's own live lease comes back first). Opening a queued item
that still has room (counting reviews plus others' live leases below K) reserves it too, but only
while the auditor holds no other live lease on an open queued item: opening never drops a lease,
so browsing (the timeline's j/k, the queue) cannot release the item "Next" handed out, and an
auditor reserves at most one item by browsing. Steps outside the queue are never reserved. A
lease ends with the auditor's verdict on the item, a skip, or when it expires.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.ingest.records import derive_category
from audit.models import (
    COUNTING_VERDICTS,
    DECISION_TYPES,
    MISBEHAVIOR_TYPES,
    SETTLED_STATUSES,
    Lease,
    Review,
    Status,
    Transcript,
    Verdict,
)

# Statuses "Next" still hands out: settled and disputed items need no more auditor reviews.
OPEN_STATUSES = (Status.UNREVIEWED, Status.IN_PROGRESS)
# Statuses an adjudicator works on (and may see every review of).
ADJUDICATION_STATUSES = (Status.DISPUTED, Status.ADJUDICATED)
# What a blind viewer is told about a settled item: that it is settled, not how.
SETTLED = "settled"
MAX_SECONDS = 3600
FINAL_FIELDS = (
    "status",
    "review_count",
    "final_is_misbehavior",
    "final_misbehavior_type",
    "final_correct_decision",
    "final_alignment_category",
)


class StaleVersion(Exception):
    """The item changed since the form was rendered; ``transcript`` is the current row."""

    def __init__(self, transcript: Transcript, *, based_on_version: int) -> None:
        super().__init__(
            f"transcript {transcript.pk} is at version {transcript.version}, "
            f"the verdict was made against version {based_on_version}"
        )
        self.transcript = transcript
        self.based_on_version = based_on_version


@dataclass(frozen=True)
class Labels:
    """The ground-truth triple a verdict decides."""

    is_misbehavior: bool
    misbehavior_type: str
    correct_decision: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "is_misbehavior": self.is_misbehavior,
            "misbehavior_type": self.misbehavior_type,
            "correct_decision": self.correct_decision,
        }


@dataclass(frozen=True)
class FinalState:
    """What a transcript's cached columns must hold, given its current reviews."""

    status: str
    review_count: int
    final_is_misbehavior: bool
    final_misbehavior_type: str
    final_correct_decision: str
    final_alignment_category: str

    def differences(self, transcript: Transcript) -> dict[str, tuple[Any, Any]]:
        """{field: (stored, derived)} for each cached column that disagrees."""
        out = {}
        for name in FINAL_FIELDS:
            stored, derived = getattr(transcript, name), getattr(self, name)
            if stored != derived:
                out[name] = (stored, derived)
        return out


@dataclass(frozen=True)
class ReviewOutcome:
    review: Review
    transcript: Transcript
    superseded: Review | None
    state: FinalState


def original_labels(transcript: Transcript) -> Labels:
    """The imported ground truth; a CONFIRM review takes these values."""
    return Labels(
        is_misbehavior=transcript.is_misbehavior,
        misbehavior_type=transcript.misbehavior_type if transcript.is_misbehavior else "",
        correct_decision=transcript.correct_decision,
    )


def review_labels(review: Review) -> Labels:
    return Labels(
        is_misbehavior=bool(review.is_misbehavior),
        misbehavior_type=review.misbehavior_type,
        correct_decision=review.correct_decision,
    )


def final_labels(transcript: Transcript) -> dict[str, Any]:
    """The cached final labels as a plain dict (a review's ``before``)."""
    return {
        "status": transcript.status,
        "is_misbehavior": transcript.final_is_misbehavior,
        "misbehavior_type": transcript.final_misbehavior_type,
        "correct_decision": transcript.final_correct_decision,
        "alignment_category": transcript.final_alignment_category,
    }


def current_reviews(transcript: Transcript) -> QuerySet[Review]:
    """The reviews that count now: not superseded by a later one of the same author."""
    return (
        Review.objects.filter(transcript=transcript, superseded_by__isnull=True)
        .select_related("auditor")
        .order_by("created_at", "id")
    )


def derive_final_state(transcript: Transcript, reviews: Iterable[Review]) -> FinalState:
    """The cached columns from the transcript's current reviews alone (pure; no queries)."""
    current = [review for review in reviews if review.superseded_by_id is None]
    counting = [review for review in current if review.verdict in COUNTING_VERDICTS]
    adjudications = [review for review in current if review.verdict == Verdict.ADJUDICATE]
    labels = original_labels(transcript)
    if adjudications:
        latest = max(adjudications, key=lambda review: (review.created_at, review.pk))
        status, labels = Status.ADJUDICATED, review_labels(latest)
    elif len(counting) >= max(transcript.required_reviews, 1):
        values = {review_labels(review) for review in counting}
        if len(values) == 1:
            agreed = values.pop()
            status = Status.CONFIRMED if agreed == labels else Status.RELABELED
            labels = agreed
        else:
            status = Status.DISPUTED
    else:
        status = Status.IN_PROGRESS if current else Status.UNREVIEWED
    return FinalState(
        status=status,
        review_count=len(counting),
        final_is_misbehavior=labels.is_misbehavior,
        final_misbehavior_type=labels.misbehavior_type if labels.is_misbehavior else "",
        final_correct_decision=labels.correct_decision,
        final_alignment_category=derive_category(labels.is_misbehavior, transcript.decision_type),
    )


def _apply(transcript: Transcript, state: FinalState) -> None:
    for name in FINAL_FIELDS:
        setattr(transcript, name, getattr(state, name))


def _save_state(transcript: Transcript) -> None:
    """Store the cached columns and bump the version: every write does."""
    transcript.version += 1
    transcript.save(update_fields=[*FINAL_FIELDS, "version", "updated_at"])


@dataclass(frozen=True)
class Recomputed:
    state: FinalState
    differences: dict[str, tuple[Any, Any]]


def recompute_final_labels(transcript: Transcript, *, save: bool = True) -> Recomputed:
    """Derive the cached columns from the reviews; store them (bumping the version) if they
    differ and ``save``. Idempotent: a second call finds no differences."""
    with transaction.atomic():
        if save:
            transcript = _locked(transcript.pk)
        state = derive_final_state(transcript, current_reviews(transcript))
        differences = state.differences(transcript)
        if differences and save:
            _apply(transcript, state)
            _save_state(transcript)
    return Recomputed(state=state, differences=differences)


# --- verdicts ------------------------------------------------------------------------------------


def validate_labels(
    *, is_misbehavior: bool | None, misbehavior_type: str, correct_decision: str
) -> Labels:
    """Values an auditor sets by hand (relabel, adjudication) must be complete and known."""
    errors: dict[str, str] = {}
    if is_misbehavior is None:
        errors["is_misbehavior"] = "Say whether this is misbehavior."
    elif is_misbehavior and not misbehavior_type:
        errors["misbehavior_type"] = "Choose the misbehavior type."
    elif is_misbehavior and misbehavior_type not in MISBEHAVIOR_TYPES:
        errors["misbehavior_type"] = f"Unknown misbehavior type {misbehavior_type!r}."
    elif not is_misbehavior and misbehavior_type:
        errors["misbehavior_type"] = "Leave the type empty when it is not misbehavior."
    if correct_decision not in DECISION_TYPES:
        errors["correct_decision"] = "Choose the correct decision."
    if errors:
        raise ValidationError(errors)
    return Labels(bool(is_misbehavior), misbehavior_type, correct_decision)


def incomplete_label(transcript: Transcript) -> str:
    """What keeps the imported label from being confirmed, in words ("" when complete)."""
    gaps = []
    decision = transcript.correct_decision
    if not decision:
        gaps.append("no correct decision")
    elif decision not in DECISION_TYPES:
        gaps.append(f"correct decision {decision!r} is not one of {', '.join(DECISION_TYPES)}")
    mb_type = transcript.misbehavior_type
    if transcript.is_misbehavior and not mb_type:
        gaps.append("misbehavior without a type")
    elif transcript.is_misbehavior and mb_type not in MISBEHAVIOR_TYPES:
        gaps.append(f"unknown misbehavior type {mb_type!r}")
    return "; ".join(gaps)


def review_refusal(transcript: Transcript, *, auditor: Any, reviews: Iterable[Review]) -> str:
    """Why ``auditor`` may not give a verdict on the item now ("" when they may).

    ``reviews`` are the item's current reviews. The words never say how a settled item was
    settled, so the note can be shown to a blind viewer.
    """
    counted = transcript.review_count
    if transcript.status in OPEN_STATUSES:
        return ""
    revising = any(
        review.auditor_id == auditor.pk and review.verdict in COUNTING_VERDICTS
        for review in reviews
    )
    if transcript.status == Status.ADJUDICATED and revising:
        return "Adjudicated: this item is settled and takes no more reviews."
    if revising:
        return ""
    if transcript.status == Status.DISPUTED:
        return (
            f"Disputed ({counted} of {transcript.required_reviews} reviews in): it waits for "
            "adjudication and needs no more reviews."
        )
    return f"Settled ({counted} of {transcript.required_reviews} reviews) — no more reviews needed."


def clamp_seconds(seconds: float | int | None) -> int:
    try:
        value = int(seconds or 0)
    except (TypeError, ValueError):
        return 0
    return max(0, min(value, MAX_SECONDS))


def _locked(pk: int) -> Transcript:
    return Transcript.objects.select_for_update().get(pk=pk)


def _lock_current(transcript: Transcript, based_on_version: int) -> Transcript:
    """Lock the row and refuse a verdict made against an older version of it."""
    current = _locked(transcript.pk)
    if current.version != based_on_version:
        raise StaleVersion(current, based_on_version=based_on_version)
    return current


def _record(
    transcript: Transcript,
    *,
    author: Any,
    verdict: str,
    labels: Labels | None,
    rationale: str,
    seconds_spent: int,
    based_on_version: int,
    supersedes: Q,
) -> ReviewOutcome:
    previous = (
        Review.objects.filter(transcript=transcript, auditor=author, superseded_by__isnull=True)
        .filter(supersedes)
        .order_by("-created_at", "-id")
        .first()
    )
    review = Review.objects.create(
        transcript=transcript,
        auditor=author,
        verdict=verdict,
        before=final_labels(transcript),
        is_misbehavior=labels.is_misbehavior if labels else None,
        misbehavior_type=labels.misbehavior_type if labels else "",
        correct_decision=labels.correct_decision if labels else "",
        rationale=rationale,
        seconds_spent=clamp_seconds(seconds_spent),
        based_on_version=based_on_version,
    )
    if previous is not None:
        previous.superseded_by = review
        previous.save(update_fields=["superseded_by"])
    Lease.objects.filter(transcript=transcript, auditor=author).delete()
    state = derive_final_state(transcript, current_reviews(transcript))
    _apply(transcript, state)
    _save_state(transcript)
    return ReviewOutcome(review=review, transcript=transcript, superseded=previous, state=state)


def submit_review(
    transcript: Transcript,
    *,
    auditor: Any,
    verdict: str,
    is_misbehavior: bool | None = None,
    misbehavior_type: str = "",
    correct_decision: str = "",
    rationale: str = "",
    seconds_spent: int = 0,
    based_on_version: int,
) -> ReviewOutcome:
    """Record an auditor's verdict; a second verdict by the same auditor supersedes the first.

    Raises ValidationError for incomplete verdicts and StaleVersion when the item changed since
    ``based_on_version``.
    """
    rationale = (rationale or "").strip()
    if verdict == Verdict.CONFIRM:
        labels: Labels | None = None  # the imported ground truth, read under the lock
    elif verdict == Verdict.RELABEL:
        if not rationale:
            raise ValidationError({"rationale": "Say why the label is wrong."})
        labels = validate_labels(
            is_misbehavior=is_misbehavior,
            misbehavior_type=misbehavior_type or "",
            correct_decision=correct_decision or "",
        )
    elif verdict == Verdict.UNSURE:
        if not rationale:
            raise ValidationError({"rationale": "Say what makes you unsure."})
        labels = None
    else:
        raise ValidationError({"verdict": f"Unknown verdict {verdict!r}."})
    with transaction.atomic():
        current = _lock_current(transcript, based_on_version)
        refusal = review_refusal(current, auditor=auditor, reviews=current_reviews(current))
        if refusal:
            raise ValidationError(refusal)
        if verdict == Verdict.CONFIRM:
            gaps = incomplete_label(current)
            if gaps:
                raise ValidationError(
                    {"verdict": f"The imported label is incomplete ({gaps}); relabel it instead."}
                )
            labels = original_labels(current)
        return _record(
            current,
            author=auditor,
            verdict=verdict,
            labels=labels,
            rationale=rationale,
            seconds_spent=seconds_spent,
            based_on_version=based_on_version,
            supersedes=~Q(verdict=Verdict.ADJUDICATE),
        )


def adjudicate(
    transcript: Transcript,
    *,
    adjudicator: Any,
    is_misbehavior: bool | None,
    misbehavior_type: str,
    correct_decision: str,
    rationale: str,
    seconds_spent: int = 0,
    based_on_version: int,
) -> ReviewOutcome:
    """Settle a disputed item with the adjudicator's values (or revise one's adjudication)."""
    rationale = (rationale or "").strip()
    if not rationale:
        raise ValidationError({"rationale": "Say why you decided this way."})
    labels = validate_labels(
        is_misbehavior=is_misbehavior,
        misbehavior_type=misbehavior_type or "",
        correct_decision=correct_decision or "",
    )
    with transaction.atomic():
        current = _lock_current(transcript, based_on_version)
        if current.status not in (Status.DISPUTED, Status.ADJUDICATED):
            raise ValidationError("Only disputed items are adjudicated.")
        return _record(
            current,
            author=adjudicator,
            verdict=Verdict.ADJUDICATE,
            labels=labels,
            rationale=rationale,
            seconds_spent=seconds_spent,
            based_on_version=based_on_version,
            supersedes=Q(verdict=Verdict.ADJUDICATE),
        )


def gave_verdict(viewer: Any, reviews: Iterable[Review]) -> bool:
    """Whether the viewer has a current verdict of their own among ``reviews``. UNSURE is not
    one (else "unsure" would be a way to peek and then revise)."""
    return any(
        review.auditor_id == viewer.pk and review.verdict != Verdict.UNSURE for review in reviews
    )


def may_see(transcript: Transcript, viewer: Any, *, reviewed: bool) -> bool:
    """Blindness, the one rule: others' verdicts stay hidden until the viewer has given their
    own (``reviewed``, see ``gave_verdict``). Adjudicators see everything once the item is in
    adjudication; staff are not exempt."""
    from audit.permissions import ADJUDICATOR, has_role

    if reviewed:
        return True
    return transcript.status in ADJUDICATION_STATUSES and has_role(viewer, ADJUDICATOR)


def may_see_reviews(transcript: Transcript, viewer: Any, reviews: Sequence[Review]) -> bool:
    """``may_see`` given the item's current reviews."""
    return may_see(transcript, viewer, reviewed=gave_verdict(viewer, reviews))


@dataclass(frozen=True)
class ShownStatus:
    value: str
    label: str


def shown_status(transcript: Transcript, *, see_all: bool) -> ShownStatus:
    """The status as a viewer may see it: how a settled item was settled (confirmed, relabeled,
    adjudicated) tells which way the verdict went, so a blind viewer only learns "settled"."""
    if not see_all and transcript.status in SETTLED_STATUSES:
        return ShownStatus(SETTLED, "Settled")
    return ShownStatus(transcript.status, Status(transcript.status).label)


def knows_settlements(viewer: Any) -> bool:
    """Whether lists (the queue's rows and its status filter) may tell the viewer how items
    they have not reviewed were settled. Adjudicators oversee outcomes across the queue, so
    they may; everyone else is told only "settled" (``shown_status``), else an auditor could
    learn the verdict of an item that raising K later reopens for their review."""
    from audit.permissions import ADJUDICATOR, has_role

    return has_role(viewer, ADJUDICATOR)


def shown_category(transcript: Transcript, *, reviewed: bool, viewer: Any) -> str:
    """The alignment category a viewer may see: the final one, or the as-imported one (derived
    from the imported ground truth) while the reviews are hidden from them."""
    if may_see(transcript, viewer, reviewed=reviewed):
        return transcript.final_alignment_category
    return derive_category(transcript.is_misbehavior, transcript.decision_type)


def next_disputed(adjudicator: Any) -> Transcript | None:
    """The disputed item to adjudicate next, by priority. Items the adjudicator reviewed
    themselves come last: someone else should settle a dispute they are part of, but when
    nothing else is left they may (small teams; the history shows who did what)."""
    own = Review.objects.filter(
        transcript=OuterRef("pk"), auditor=adjudicator, superseded_by__isnull=True
    ).exclude(verdict=Verdict.ADJUDICATE)
    return (
        Transcript.objects.filter(status=Status.DISPUTED)
        .annotate(own=Exists(own))
        .order_by("own", "-priority", "id")
        .first()
    )


# --- overlap ---------------------------------------------------------------------------------


def set_required_reviews(queryset: QuerySet[Transcript], k: int) -> int:
    """Set K for a selection and re-derive the status of items that already have reviews
    (raising K reopens settled items; lowering it can settle them). Returns how many changed."""
    if k < 1:
        raise ValueError("an item needs at least one review")
    with transaction.atomic():
        ids = list(queryset.exclude(required_reviews=k).values_list("pk", flat=True))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            Transcript.objects.filter(pk__in=chunk).update(
                required_reviews=k, version=F("version") + 1
            )
            reviewed = Transcript.objects.filter(pk__in=chunk, reviews__isnull=False).distinct()
            for transcript in reviewed:
                recompute_final_labels(transcript)
    return len(ids)


def sample_ids(queryset: QuerySet[Transcript], n: int, *, seed: int) -> list[int]:
    """A reproducible random sample of ids (same data and seed -> same sample)."""
    ids = list(queryset.order_by("pk").values_list("pk", flat=True))
    return sorted(random.Random(seed).sample(ids, min(n, len(ids))))


# --- leases ----------------------------------------------------------------------------------


def _claimable(auditor: Any, now: Any) -> QuerySet[Transcript]:
    live_leases = (
        Lease.objects.filter(transcript=OuterRef("pk"), expires_at__gt=now)
        .exclude(auditor=auditor)
        .order_by()
        .values("transcript")
        .annotate(n=Count("pk"))
        .values("n")
    )
    own_review = Review.objects.filter(
        transcript=OuterRef("pk"), auditor=auditor, superseded_by__isnull=True
    )
    return (
        Transcript.objects.filter(in_queue=True, status__in=OPEN_STATUSES)
        .annotate(leased=Coalesce(Subquery(live_leases), Value(0)))
        .filter(~Exists(own_review), leased__lt=F("required_reviews") - F("review_count"))
    )


def _filtered(queryset: QuerySet[Transcript], filters: Mapping[str, Any] | Q | None):
    if filters is None:
        return queryset
    if isinstance(filters, Q):
        return queryset.filter(filters)
    return queryset.filter(**filters)


def claim_next(
    auditor: Any,
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
    claimable = _filtered(_claimable(auditor, now), filters).exclude(pk__in=list(skip))
    with transaction.atomic():
        own = (
            Lease.objects.filter(auditor=auditor, expires_at__gt=now)
            .filter(transcript__in=claimable.values("pk"))
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
            locking = claimable.exclude(pk__in=tried).order_by("-priority", "pk")
            locking = locking.select_for_update(skip_locked=True, of=("self",))
            candidate = locking.first()
            if candidate is None:
                return None
            # Re-check with a fresh statement: a lease committed since the query's snapshot
            # (READ COMMITTED) is visible now, and the row lock keeps others out until commit.
            if not _claimable(auditor, timezone.now()).filter(pk=candidate.pk).exists():
                tried.append(candidate.pk)
                continue
            Lease.objects.filter(transcript=candidate, auditor=auditor).delete()
            Lease.objects.create(transcript=candidate, auditor=auditor, expires_at=expires)
            return candidate
    return None


def release_lease(transcript: Transcript, *, auditor: Any) -> int:
    """Give the item back (skip); returns how many leases were dropped."""
    deleted, _ = Lease.objects.filter(transcript=transcript, auditor=auditor).delete()
    return deleted


def live_leases(transcript: Transcript) -> list[Lease]:
    """The item's unexpired leases, with their auditors, oldest first."""
    return list(
        Lease.objects.filter(transcript=transcript, expires_at__gt=timezone.now())
        .select_related("auditor")
        .order_by("claimed_at", "id")
    )


def has_room(
    transcript: Transcript, *, auditor: Any, reviews: Iterable[Review], leases: Iterable[Lease]
) -> bool:
    """Whether opening the item should lease it to ``auditor``: it is queued and open, they
    have no counting review and no live lease on it, and counting reviews plus others' live
    leases are fewer than K (the same room ``claim_next`` hands items out by). ``leases`` are
    live ones."""
    if not transcript.in_queue or transcript.status not in OPEN_STATUSES:
        return False
    if any(
        review.auditor_id == auditor.pk and review.verdict in COUNTING_VERDICTS
        for review in reviews
    ):
        return False
    leases = list(leases)
    if any(lease.auditor_id == auditor.pk for lease in leases):
        return False
    return transcript.review_count + len(leases) < transcript.required_reviews


def holds_other_lease(auditor: Any, *, now: Any, besides: Transcript) -> bool:
    """Whether the auditor holds a live lease on another item "Next" could still hand out
    (queued and open): leases left on items settled meanwhile do not count."""
    return (
        Lease.objects.filter(
            auditor=auditor,
            expires_at__gt=now,
            transcript__in_queue=True,
            transcript__status__in=OPEN_STATUSES,
        )
        .exclude(transcript=besides)
        .exists()
    )


def reserve(transcript: Transcript, *, auditor: Any) -> Lease | None:
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
        current = _locked(transcript.pk)
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


# --- checking the cache --------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    transcript: Transcript
    differences: dict[str, tuple[Any, Any]]

    def describe(self) -> str:
        parts = ", ".join(
            f"{name} stored {stored!r}, reviews say {derived!r}"
            for name, (stored, derived) in self.differences.items()
        )
        t = self.transcript
        return f"#{t.pk} ({t.session_id} step {t.step_number}): {parts}"


def find_mismatches(queryset: QuerySet[Transcript], *, chunk_size: int = 500):
    """Transcripts whose cached final labels differ from what their reviews derive.

    Streams in chunks with one review query per chunk, so it runs over any size of data.
    """
    last = 0
    base = queryset.order_by("pk")
    while True:
        chunk = list(base.filter(pk__gt=last)[:chunk_size])
        if not chunk:
            return
        last = chunk[-1].pk
        by_transcript: dict[int, list[Review]] = {t.pk: [] for t in chunk}
        for review in Review.objects.filter(
            transcript_id__in=list(by_transcript), superseded_by__isnull=True
        ):
            by_transcript[review.transcript_id].append(review)
        for transcript in chunk:
            state = derive_final_state(transcript, by_transcript[transcript.pk])
            differences = state.differences(transcript)
            if differences:
                yield Mismatch(transcript=transcript, differences=differences)
