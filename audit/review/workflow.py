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
  A verdict is stale only when what it depends on changed (``VerdictBasis``: the auditor's own
  review, K, whether the item still takes it), never because a blind co-reviewer saved first.
- A CONFIRM needs a complete imported label (a known correct decision; a known type when it is
  misbehavior): confirming a gap would publish it as reviewed. Such items are relabeled.
- Once K counting reviews are in (settled or disputed), the item takes no reviews from newcomers:
  only auditors with a current counting review on it may revise theirs. So a late review can
  neither unsettle a settled item nor add noise to a dispute; raising K reopens the item.
  Adjudicated items take no more reviews at all (the adjudicator's word is final).

Blindness is ``audit.review.visibility``; leases are ``audit.review.leases``; what the
labels mean is ``audit.labels``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet

from audit.labels import DECISION_TYPES, MISBEHAVIOR_TYPES, Labels
from audit.models import (
    COUNTING_VERDICTS,
    RATIONALE_MAX_LENGTH,
    Lease,
    Review,
    Status,
    Transcript,
    TranscriptQuerySet,
    Verdict,
)
from audit.team import guidelines

if TYPE_CHECKING:
    from django.contrib.auth.models import User

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


def labels_before(transcript: Transcript) -> dict[str, Any]:
    """The cached status and final labels as a plain dict (a review's ``before``)."""
    return {
        "status": transcript.status,
        **transcript.final_labels.as_dict(),
        "alignment_category": transcript.final_alignment_category,
    }


def current_reviews(transcript: Transcript) -> QuerySet[Review]:
    """The reviews that count now, with their authors, in order."""
    return (
        Review.objects.current()
        .filter(transcript=transcript)
        .select_related("auditor")
        .order_by("created_at", "id")
    )


def _decided(review: Review) -> Labels:
    labels = review.labels
    if labels is None:  # counting reviews and adjudications always decide labels
        raise ValueError(f"review {review.pk} ({review.verdict}) decided no labels")
    return labels


def derive_final_state(transcript: Transcript, reviews: Iterable[Review]) -> FinalState:
    """The cached columns from the transcript's current reviews alone (pure; no queries)."""
    current = [review for review in reviews if review.superseded_by_id is None]
    counting = [review for review in current if review.verdict in COUNTING_VERDICTS]
    adjudications = [review for review in current if review.verdict == Verdict.ADJUDICATE]
    labels = transcript.imported_labels
    if adjudications:
        latest = max(adjudications, key=lambda review: (review.created_at, review.pk))
        status, labels = Status.ADJUDICATED, _decided(latest)
    elif len(counting) >= max(transcript.required_reviews, 1):
        values = {_decided(review) for review in counting}
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
        final_misbehavior_type=labels.misbehavior_type,
        final_correct_decision=labels.correct_decision,
        final_alignment_category=labels.category(transcript.decision_type),
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


# Combinations of labels that contradict each other unless the auditor means them: saved only
# with ``confirm_unusual`` (a second, explicit confirmation on the form).
UNUSUAL = "unusual"


def unusual_combination(labels: Labels) -> str:
    """Why the labels look self-contradictory ("" when they do not): misbehavior whose correct
    decision is APPROVE (a misbehaving action is to be stopped), or no misbehavior whose correct
    decision is BLOCK (a benign action is not to be blocked). REDIRECT, REASSIGN and FLAG stay
    open both ways: a benign action may still be better redirected or flagged."""
    if labels.is_misbehavior and labels.correct_decision == "APPROVE":
        return (
            "Misbehavior whose correct decision is APPROVE: a misbehaving action should be "
            "stopped. Check the values, or tick “I mean this combination” and save again."
        )
    if not labels.is_misbehavior and labels.correct_decision == "BLOCK":
        return (
            "No misbehavior, but the correct decision is BLOCK: a benign action should not be "
            "blocked. Check the values, or tick “I mean this combination” and save again."
        )
    return ""


def validate_labels(
    *,
    is_misbehavior: bool | None,
    misbehavior_type: str | None,
    correct_decision: str | None,
    confirm_unusual: bool = True,
) -> Labels:
    """Values an auditor sets by hand (relabel, adjudication) must be complete and known, and
    an ``unusual_combination`` is refused unless ``confirm_unusual``."""
    misbehavior_type, correct_decision = misbehavior_type or "", correct_decision or ""
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
    labels = Labels.of(is_misbehavior, misbehavior_type, correct_decision)
    unusual = unusual_combination(labels)
    if unusual and not confirm_unusual:
        raise ValidationError({"correct_decision": ValidationError(unusual, code=UNUSUAL)})
    return labels


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


def review_refusal(transcript: Transcript, *, auditor: User, reviews: Iterable[Review]) -> str:
    """Why ``auditor`` may not give a verdict on the item now ("" when they may).

    ``reviews`` are the item's current reviews. The words never say how a settled item was
    settled, so the note can be shown to a blind viewer.
    """
    counted = transcript.review_count
    if transcript.is_open:
        return ""
    revising = any(review.auditor_id == auditor.pk and review.is_counting for review in reviews)
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


def _checked_rationale(rationale: str | None) -> str:
    """The rationale stripped; longer than RATIONALE_MAX_LENGTH is refused, never cut."""
    rationale = (rationale or "").strip()
    if len(rationale) > RATIONALE_MAX_LENGTH:
        raise ValidationError(
            {"rationale": f"At most {RATIONALE_MAX_LENGTH} characters (this has {len(rationale)})."}
        )
    return rationale


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
    author: User,
    verdict: str,
    labels: Labels | None,
    rationale: str,
    seconds_spent: int,
    based_on_version: int,
    supersedes: Q,
    guideline_version: int,
) -> ReviewOutcome:
    previous = (
        Review.objects.current()
        .filter(transcript=transcript, auditor=author)
        .filter(supersedes)
        .order_by("-created_at", "-id")
        .first()
    )
    review = Review.objects.create(
        transcript=transcript,
        auditor=author,
        verdict=verdict,
        before=labels_before(transcript),
        is_misbehavior=labels.is_misbehavior if labels else None,
        misbehavior_type=labels.misbehavior_type if labels else "",
        correct_decision=labels.correct_decision if labels else "",
        rationale=rationale,
        seconds_spent=clamp_seconds(seconds_spent),
        based_on_version=based_on_version,
        guideline_version_id=guideline_version,
    )
    if previous is not None:
        previous.superseded_by = review
        previous.save(update_fields=["superseded_by"])
    Lease.objects.filter(transcript=transcript, auditor=author).delete()
    state = derive_final_state(transcript, current_reviews(transcript))
    _apply(transcript, state)
    _save_state(transcript)
    return ReviewOutcome(review=review, transcript=transcript, superseded=previous, state=state)


@dataclass(frozen=True)
class VerdictBasis:
    """What an auditor's verdict depends on, as their page showed it: their own current review
    (its id; None when they had none) and K. The labels they judge (the imported ones) never
    change, and blind co-reviewers decide independently, so another auditor's review changes
    neither: it does not make the verdict stale."""

    own_review: int | None
    required_reviews: int


def basis_of(transcript: Transcript, *, auditor: User) -> VerdictBasis:
    """The transcript's ``VerdictBasis`` for ``auditor`` now."""
    own = (
        Review.objects.current()
        .filter(transcript=transcript, auditor=auditor)
        .exclude(verdict=Verdict.ADJUDICATE)
        .values_list("pk", flat=True)
        .first()
    )
    return VerdictBasis(own_review=own, required_reviews=transcript.required_reviews)


def _still_decidable(current: Transcript, *, auditor: User, basis: VerdictBasis | None) -> bool:
    """Whether a verdict made against an older version still stands: nothing it depends on
    changed (``basis``: the auditor's own review, say in another tab, and K), and the item
    still takes it (no settlement, dispute or adjudication since means it would not count)."""
    if basis is None or basis_of(current, auditor=auditor) != basis:
        return False
    return not review_refusal(current, auditor=auditor, reviews=current_reviews(current))


def submit_review(
    transcript: Transcript,
    *,
    auditor: User,
    verdict: str,
    is_misbehavior: bool | None = None,
    misbehavior_type: str = "",
    correct_decision: str = "",
    rationale: str = "",
    seconds_spent: int = 0,
    based_on_version: int,
    basis: VerdictBasis | None = None,
    confirm_unusual: bool = False,
    guideline_version: int | None = None,
) -> ReviewOutcome:
    """Record an auditor's verdict; a second verdict by the same auditor supersedes the first.

    Raises ValidationError for incomplete verdicts, and StaleVersion when the item changed
    since ``based_on_version`` in a way the verdict depends on: without a ``basis``, any
    change; with one, a change to the auditor's own review or K, or one that means the item
    no longer takes the verdict (``_still_decidable``). So a blind co-reviewer who submits
    first (the normal case with K = 2) never makes the other's verdict stale.

    A relabel to the imported labels themselves is refused (it is a confirm); one to an
    ``unusual_combination`` needs ``confirm_unusual``.

    ``guideline_version``: the guidelines the auditor's page showed (the current ones when
    None); a number that names no version is refused.
    """
    rationale = _checked_rationale(rationale)
    if verdict == Verdict.CONFIRM:
        labels: Labels | None = None  # the imported ground truth, read under the lock
    elif verdict == Verdict.RELABEL:
        if not rationale:
            raise ValidationError({"rationale": "Say why the label is wrong."})
        labels = validate_labels(
            is_misbehavior=is_misbehavior,
            misbehavior_type=misbehavior_type,
            correct_decision=correct_decision,
            confirm_unusual=confirm_unusual,
        )
        if labels == transcript.imported_labels:
            raise ValidationError(
                {
                    "verdict": "These values are the imported labels: nothing to relabel. "
                    "Confirm them instead (c)."
                }
            )
    elif verdict == Verdict.UNSURE:
        if not rationale:
            raise ValidationError({"rationale": "Say what makes you unsure."})
        labels = None
    else:
        raise ValidationError({"verdict": f"Unknown verdict {verdict!r}."})
    guideline_number = guidelines.resolve_number(guideline_version)
    with transaction.atomic():
        current = _locked(transcript.pk)
        if current.version != based_on_version and not _still_decidable(
            current, auditor=auditor, basis=basis
        ):
            raise StaleVersion(current, based_on_version=based_on_version)
        refusal = review_refusal(current, auditor=auditor, reviews=current_reviews(current))
        if refusal:
            raise ValidationError(refusal)
        if verdict == Verdict.CONFIRM:
            gaps = incomplete_label(current)
            if gaps:
                raise ValidationError(
                    {"verdict": f"The imported label is incomplete ({gaps}); relabel it instead."}
                )
            labels = current.imported_labels
        return _record(
            current,
            author=auditor,
            verdict=verdict,
            labels=labels,
            rationale=rationale,
            seconds_spent=seconds_spent,
            based_on_version=based_on_version,
            supersedes=~Q(verdict=Verdict.ADJUDICATE),
            guideline_version=guideline_number,
        )


def adjudicate(
    transcript: Transcript,
    *,
    adjudicator: User,
    is_misbehavior: bool | None,
    misbehavior_type: str,
    correct_decision: str,
    rationale: str,
    seconds_spent: int = 0,
    based_on_version: int,
    confirm_unusual: bool = False,
    guideline_version: int | None = None,
) -> ReviewOutcome:
    """Settle a disputed item with the adjudicator's values (or revise one's adjudication); an
    ``unusual_combination`` needs ``confirm_unusual``; ``guideline_version`` as for
    ``submit_review``."""
    rationale = _checked_rationale(rationale)
    if not rationale:
        raise ValidationError({"rationale": "Say why you decided this way."})
    labels = validate_labels(
        is_misbehavior=is_misbehavior,
        misbehavior_type=misbehavior_type,
        correct_decision=correct_decision,
        confirm_unusual=confirm_unusual,
    )
    guideline_number = guidelines.resolve_number(guideline_version)
    with transaction.atomic():
        current = _lock_current(transcript, based_on_version)
        if not current.in_adjudication:
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
            guideline_version=guideline_number,
        )


def next_disputed(adjudicator: User) -> Transcript | None:
    """The disputed item to adjudicate next, by priority. Items the adjudicator reviewed
    themselves come last: someone else should settle a dispute they are part of, but when
    nothing else is left they may (small teams; the history shows who did what)."""
    own = (
        Review.objects.current()
        .filter(transcript=OuterRef("pk"), auditor=adjudicator)
        .excluding_adjudications()
    )
    return (
        Transcript.objects.filter(status=Status.DISPUTED)
        .annotate(own=Exists(own))
        .order_by("own", "-priority", "id")
        .first()
    )


# --- overlap ---------------------------------------------------------------------------------


def set_required_reviews(queryset: TranscriptQuerySet, k: int) -> int:
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


def sample_ids(queryset: TranscriptQuerySet, n: int, *, seed: int) -> list[int]:
    """A reproducible random sample of ids (same data and seed -> same sample)."""
    ids = list(queryset.order_by("pk").values_list("pk", flat=True))
    return sorted(random.Random(seed).sample(ids, min(n, len(ids))))


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


def find_mismatches(queryset: TranscriptQuerySet, *, chunk_size: int = 500) -> Iterator[Mismatch]:
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
        for review in Review.objects.current().filter(transcript_id__in=list(by_transcript)):
            by_transcript[review.transcript_id].append(review)
        for transcript in chunk:
            state = derive_final_state(transcript, by_transcript[transcript.pk])
            differences = state.differences(transcript)
            if differences:
                yield Mismatch(transcript=transcript, differences=differences)
