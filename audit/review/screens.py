"""The state of the two verdict screens, built once per request: what the item page and the
adjudication page show a given viewer, and the one write opening an item does.

``open_item`` is the item page's GET: it loads the reviews once, decides the viewer's
``Visibility``, and reserves the item for the viewer when it has room (the lease, a write,
named here rather than hidden in a view). ``adjudication_state`` is the adjudication page's.
Both return frozen dataclasses the views turn into template context; nothing here renders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audit import search
from audit.labels import Category, Labels
from audit.models import Lease, Review, Transcript, Verdict
from audit.review import leases, visibility, workflow
from audit.review.presentation import present_record, problems
from audit.review.visibility import Visibility

if TYPE_CHECKING:
    from django.contrib.auth.models import User

TIMELINE_LIMIT = 400
# The timeline's category tags: a word beside the colour, so no category is told by colour alone.
CATEGORY_TAGS: dict[str, str] = {
    Category.ALIGNED_CATCH.value: "catch",
    Category.ALIGNED_APPROVE.value: "ok",
    Category.ALIGNMENT_FAILURE_FN.value: "FN",
    Category.ALIGNMENT_FAILURE_FP.value: "FP",
}
LABEL_FIELDS = ("is_misbehavior", "misbehavior_type", "correct_decision")
CATEGORY_LABELS = dict(Category.choices)
TIMELINE_FIELDS = (
    "id",
    "step_number",
    "action_type",
    "decision_type",
    "is_misbehavior",
    "final_alignment_category",
    "status",
    "in_queue",
)


@dataclass(frozen=True)
class TimelineStep:
    """One step of the episode, with the category the viewer may see."""

    pk: int
    step_number: int
    action_type: str
    decision_type: str
    in_queue: bool
    shown_category: str

    @property
    def shown_category_label(self) -> str:
        return CATEGORY_LABELS.get(self.shown_category, self.shown_category)

    @property
    def shown_category_tag(self) -> str:
        return CATEGORY_TAGS.get(self.shown_category, "?")


@dataclass(frozen=True)
class HistoryRow:
    review: Review
    before: dict[str, Any]
    after: dict[str, Any] | None


@dataclass(frozen=True)
class Conflict:
    """What changed since the viewer loaded the item (``conflict``)."""

    seen_version: int
    since: list[Review]
    see_all: bool
    status_before: str
    labels_before: dict[str, Any]
    k_before: int | None = None  # K as the page showed it (None for an older token)


@dataclass(frozen=True)
class ItemState:
    transcript: Transcript
    visibility: Visibility
    record: dict[str, Any]
    problems: list[dict[str, Any]]
    all_reviews: list[Review]
    history: list[HistoryRow]
    own: Review | None
    lease: Lease | None
    reserved_by: list[Lease]
    timeline: list[TimelineStep]
    refusal: str
    confirm_blocked: str

    @property
    def position(self) -> int | None:
        return next(
            (i for i, step in enumerate(self.timeline) if step.pk == self.transcript.pk), None
        )

    @property
    def prev_step(self) -> TimelineStep | None:
        position = self.position
        return self.timeline[position - 1] if position else None

    @property
    def next_step(self) -> TimelineStep | None:
        position = self.position
        if position is None or position + 1 >= len(self.timeline):
            return None
        return self.timeline[position + 1]


@dataclass(frozen=True)
class AdjudicationState:
    transcript: Transcript
    record: dict[str, Any]
    problems: list[dict[str, Any]]
    all_reviews: list[Review]
    side_by_side: list[dict[str, Any]]
    differs: dict[str, bool]
    adjudications: list[Review]
    history: list[HistoryRow]


class NotInAdjudication(Exception):
    """The item is not (or no longer) disputed, so its reviews are not the viewer's to see."""


def _all_reviews(transcript: Transcript) -> list[Review]:
    return list(
        Review.objects.filter(transcript=transcript)
        .select_related("auditor")
        .order_by("created_at", "id")
    )


def _current(reviews: Sequence[Review]) -> list[Review]:
    return [review for review in reviews if review.superseded_by_id is None]


def history_rows(transcript: Transcript, reviews: Sequence[Review]) -> list[HistoryRow]:
    """Each review with the labels before it and the ones it decided (None for an unsure)."""
    rows = []
    for review in reviews:
        labels = review.labels
        after = None
        if labels is not None:
            after = {
                **labels.as_dict(),
                "alignment_category": labels.category(transcript.decision_type),
            }
        rows.append(HistoryRow(review=review, before=review.before or {}, after=after))
    return rows


def timeline(transcript: Transcript, viewer: User) -> list[TimelineStep]:
    """The episode's steps, each with the category the viewer may see: whether the viewer gave
    a verdict on a step comes from an EXISTS in the same query, not one per step."""
    steps = (
        Transcript.objects.filter(session_id=transcript.session_id, task_id=transcript.task_id)
        .annotate(reviewed=visibility.own_verdict_exists(viewer))
        .order_by("step_number", "id")
        .only(*TIMELINE_FIELDS)[:TIMELINE_LIMIT]
    )
    return [
        TimelineStep(
            pk=step.pk,
            step_number=step.step_number,
            action_type=step.action_type,
            decision_type=step.decision_type,
            in_queue=step.in_queue,
            shown_category=visibility.shown_category(
                step, see_all=visibility.may_see(step, viewer, reviewed=step.reviewed)
            ),
        )
        for step in steps
    ]


def _reserve_on_open(transcript: Transcript, *, viewer: User, current: list[Review]) -> list[Lease]:
    """The item's live leases after opening it: opening reserves an item that has room for the
    viewer, as "Next" does, so a second auditor is not handed it."""
    live = leases.live_leases(transcript)
    if leases.has_room(transcript, auditor=viewer, reviews=current, leases=live):
        claimed = leases.reserve(transcript, auditor=viewer)
        if claimed is not None:
            claimed.auditor = viewer
            live = [lease for lease in live if lease.auditor_id != viewer.pk] + [claimed]
    return live


def open_item(
    transcript: Transcript, *, viewer: User, marks: search.SearchQuery | None = None
) -> ItemState:
    """The item page's state for ``viewer``, reserving the item for them (a lease) when it has
    room: every rendering of the page does, the one after a refused verdict too. ``marks``: the
    queue search the page was opened from, whose words the record's text marks."""
    all_reviews = _all_reviews(transcript)
    current = _current(all_reviews)
    seen = visibility.item_visibility(transcript, viewer, current)
    live = _reserve_on_open(transcript, viewer=viewer, current=current)
    history = all_reviews if seen.see_all else [r for r in all_reviews if r.auditor_id == viewer.pk]
    return ItemState(
        transcript=transcript,
        visibility=seen,
        record=present_record(transcript.text.raw, marks=marks),
        problems=problems(transcript),
        all_reviews=all_reviews,
        history=history_rows(transcript, history),
        own=next(
            (r for r in current if r.auditor_id == viewer.pk and r.verdict != Verdict.ADJUDICATE),
            None,
        ),
        lease=next((lease for lease in live if lease.auditor_id == viewer.pk), None),
        reserved_by=[lease for lease in live if lease.auditor_id != viewer.pk],
        timeline=timeline(transcript, viewer),
        refusal=workflow.review_refusal(transcript, auditor=viewer, reviews=current),
        confirm_blocked=workflow.incomplete_label(transcript),
    )


def adjudication_state(
    transcript: Transcript, *, viewer: User, marks: search.SearchQuery | None = None
) -> AdjudicationState:
    """The adjudication page's state; NotInAdjudication unless the viewer may see the item's
    reviews (adjudicators, on items in adjudication)."""
    if not transcript.in_adjudication:
        raise NotInAdjudication(transcript.pk)
    all_reviews = _all_reviews(transcript)
    current = _current(all_reviews)
    # Holds for adjudicators on items in adjudication; checked so the page stays blind should
    # that ever change.
    if not visibility.item_visibility(transcript, viewer, current).see_all:
        raise NotInAdjudication(transcript.pk)
    side_by_side = [r for r in current if r.verdict != Verdict.ADJUDICATE]
    decided = [r.labels for r in side_by_side if r.verdict != Verdict.UNSURE and r.labels]
    return AdjudicationState(
        transcript=transcript,
        record=present_record(transcript.text.raw, marks=marks),
        problems=problems(transcript),
        all_reviews=all_reviews,
        side_by_side=[
            {
                "review": r,
                "category": r.labels.category(transcript.decision_type) if r.labels else "",
                "vs_imported": _vs_imported(r.labels, transcript.imported_labels),
            }
            for r in side_by_side
        ],
        differs=_differs(decided),
        adjudications=[r for r in all_reviews if r.verdict == Verdict.ADJUDICATE],
        history=history_rows(transcript, all_reviews),
    )


def _vs_imported(labels: Labels | None, imported: Labels) -> dict[str, bool] | None:
    """Per label field, whether a review's value differs from the imported label; None for a
    review that decided no values (unsure)."""
    if labels is None:
        return None
    return {name: getattr(labels, name) != getattr(imported, name) for name in LABEL_FIELDS}


def _differs(decided: list[Labels]) -> dict[str, bool]:
    """Per label field, whether the reviews disagree on it."""
    return {name: len({getattr(labels, name) for labels in decided}) > 1 for name in LABEL_FIELDS}


def conflict(seen: dict[str, Any] | None, all_reviews: list[Review], *, see_all: bool) -> Conflict:
    """What changed since the viewer loaded the item.

    Blindness holds here too: the opened token carries only the status the viewer was shown, so
    a blind viewer learns that the item changed, its status as they may see it and who wrote
    reviews in between, not their verdicts or the final labels. A viewer who may see the
    reviews gets the final labels as they were, from the ``before`` of the first review written
    since (the state at the version they opened).
    """
    seen = seen or {}
    seen_version = seen.get("v", 0)
    # Written since the page: made against that version or a later one, or saved after the
    # page opened (a verdict that still stood against an older version, workflow.VerdictBasis).
    opened_at = seen.get("at", float("inf"))
    since = [
        r
        for r in all_reviews
        if r.based_on_version >= seen_version or r.created_at.timestamp() > opened_at
    ]
    k_before = seen.get("k")
    return Conflict(
        seen_version=seen_version,
        since=since,
        see_all=see_all,
        status_before=visibility.status_label(seen.get("status")),
        labels_before=since[0].before if see_all and since else {},
        k_before=k_before if isinstance(k_before, int) else None,
    )
