"""Blindness: what of other auditors' work a viewer may see. Every screen, list, export and
figure asks this module; none restates the rule.

The rule: others' verdicts, the final labels and how an item was settled (confirmed, relabeled,
adjudicated) stay hidden from a viewer until they have given a verdict of their own on it
(``gave_verdict``; an UNSURE is not one, else "unsure" would be a way to peek and then revise).
Adjudicators see everything on items in adjudication (disputed, adjudicated); staff are not
exempt on review screens.

Lists apply the rule per row without a query per row: ``own_verdict_exists`` is the SQL twin of
``gave_verdict``, and ``tests/review/test_visibility.py`` checks the two agree. Lists also tell a
blind viewer only "settled", never which way (``shown_status``, ``status_choices``), unless
``knows_settlements``. The dashboard hides every figure after review from blind auditors
(``blind_on_dashboard``); the admin shows reviews and final labels of settled items only
(``settled_only``).

Discussion (issue 11): a viewer always sees their own comments on an item; others' comments,
and who wrote them, exactly when they may see its reviews (``may_see``: once they gave a verdict
on it, or as adjudicators on items in adjudication), or when the viewer is staff or an
adjudicator WITHOUT the auditor role (they review nothing, so nothing can unblind them). Anyone
with the auditor role is blind until their own verdict, settled items included: raising K can
hand a settled item to an auditor who never reviewed it, the reason lists tell them only
"settled" (``knows_settlements``), and comments say how the reviewers decided
(``may_read_discussion``, ``readable_comments``); the page then says only that others' comments
show after one's verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Exists, OuterRef, QuerySet

from audit.models import (
    SETTLED_STATUSES,
    Review,
    Status,
    Transcript,
    TranscriptQuerySet,
    Verdict,
)
from audit.permissions import ADJUDICATOR, AUDITOR, has_role, is_staff

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# What a blind viewer is told about a settled item: that it is settled, not how.
SETTLED = "settled"
# Status filter values beyond the statuses themselves.
OPEN = "open"
ANY = "any"
# Status filter value -> the statuses it stands for (None: any). "settled" lumps together the
# ways an item can be settled: viewers who may not learn how get only it.
STATUS_MEMBERS: dict[str, tuple[str, ...] | None] = {
    OPEN: tuple(s.value for s in Status if s not in SETTLED_STATUSES),
    ANY: None,
    **{s.value: (s.value,) for s in Status},
    SETTLED: tuple(s.value for s in SETTLED_STATUSES),
}


def gave_verdict(viewer: User, reviews: Iterable[Review]) -> bool:
    """Whether the viewer has a current verdict of their own among the item's ``reviews``."""
    return any(
        review.auditor_id == viewer.pk
        and review.superseded_by_id is None
        and review.verdict != Verdict.UNSURE
        for review in reviews
    )


def own_verdict_exists(viewer: User) -> Exists:
    """SQL twin of ``gave_verdict`` for the outer Transcript row, for ``annotate``."""
    return Exists(
        Review.objects.current()
        .filter(transcript=OuterRef("pk"), auditor_id=viewer.pk)
        .exclude(verdict=Verdict.UNSURE)
    )


def own_verdict_reviews(viewer: User) -> QuerySet[Review, Any]:
    """The viewer's reviews ``own_verdict_exists`` holds for (current, not an unsure)."""
    return Review.objects.current().filter(auditor_id=viewer.pk).exclude(verdict=Verdict.UNSURE)


def own_verdict_items(viewer: User) -> QuerySet[Review, Any]:
    """The transcripts ``own_verdict_exists`` holds for, as a subquery of their ids read from
    the viewer's own reviews. (SQLite, which plans without statistics, may still walk the
    queue's index and test each row against the list: counts of the viewer's items start from
    ``own_verdict_reviews`` instead, ``audit.review.queue.facet_counts``.)"""
    return own_verdict_reviews(viewer).values("transcript_id")


def may_see(transcript: Transcript, viewer: User, *, reviewed: bool) -> bool:
    """Whether the viewer may see the item's reviews and final labels, given whether they gave
    a verdict of their own (``reviewed``)."""
    if reviewed:
        return True
    return transcript.in_adjudication and has_role(viewer, ADJUDICATOR)


def knows_settlements(viewer: User) -> bool:
    """Whether lists (the queue's rows and its status filter) may tell the viewer how items
    they have not reviewed were settled. Adjudicators oversee outcomes across the queue, so
    they may; everyone else is told only "settled", else an auditor could learn the verdict of
    an item that raising K later reopens for their review."""
    return has_role(viewer, ADJUDICATOR)


@dataclass(frozen=True)
class ShownStatus:
    value: str
    label: str


def status_label(value: str | None) -> str:
    """The words for a status value as ``shown_status`` gives it."""
    if value == SETTLED:
        return "Settled"
    return Status(value).label if value in Status.values else "unknown"


def shown_status(transcript: Transcript, *, see_all: bool) -> ShownStatus:
    """The status as a viewer may see it: a blind viewer only learns "settled"."""
    if not see_all and transcript.is_settled:
        return ShownStatus(SETTLED, status_label(SETTLED))
    return ShownStatus(transcript.status, status_label(transcript.status))


def shown_category(transcript: Transcript, *, see_all: bool) -> str:
    """The alignment category a viewer may see: the final one, or the one the imported ground
    truth derives while the reviews are hidden from them."""
    return transcript.final_alignment_category if see_all else transcript.imported_category


@dataclass(frozen=True)
class Visibility:
    """What one viewer may see of one item, decided once per item or row."""

    see_all: bool
    status: ShownStatus


def visibility(transcript: Transcript, viewer: User, *, reviewed: bool) -> Visibility:
    """The viewer's view of the item; ``reviewed`` is ``gave_verdict`` (or, in lists, the
    ``own_verdict_exists`` annotation). The category to show follows from ``see_all``
    (``shown_category``)."""
    see_all = may_see(transcript, viewer, reviewed=reviewed)
    return Visibility(see_all=see_all, status=shown_status(transcript, see_all=see_all))


def item_visibility(transcript: Transcript, viewer: User, reviews: Iterable[Review]) -> Visibility:
    """``visibility`` given the item's reviews."""
    return visibility(transcript, viewer, reviewed=gave_verdict(viewer, reviews))


def row_visibility(transcript: Transcript, viewer: User, *, reviewed: bool) -> Visibility:
    """A list row's view: as on the item page, except that viewers who know settlements see
    how every item was settled."""
    return visibility(transcript, viewer, reviewed=reviewed or knows_settlements(viewer))


def status_choices(viewer: User | None) -> list[tuple[str, str]]:
    """The status filter's options for this viewer: every status for those who know
    settlements; for the rest (and when nobody in particular asks) the ways of being settled
    collapse into "Settled"."""
    head = [(OPEN, "Open (not settled)"), (ANY, "Any status")]
    if viewer is not None and knows_settlements(viewer):
        return [*head, *Status.choices, (SETTLED, "Settled (any way)")]
    return [
        *head,
        *((s.value, s.label) for s in Status if s not in SETTLED_STATUSES and s != Status.DISPUTED),
        (SETTLED, "Settled"),
        (Status.DISPUTED.value, Status.DISPUTED.label),
    ]


def blind_on_dashboard(viewer: User) -> bool:
    """Whether the dashboard must hide every figure after review from the viewer: auditors,
    unless they already know how items were settled (adjudicators, staff). Research leads
    without the auditor role review nothing, so nothing they see can unblind a review."""
    if not has_role(viewer, AUDITOR):
        return False
    return not (is_staff(viewer) or knows_settlements(viewer))


def settled_only(queryset: TranscriptQuerySet) -> TranscriptQuerySet:
    """The admin's rule: verdicts and final labels are shown for settled items only, whose
    reviews are over, whoever the staff member is."""
    return queryset.settled()


def settled_reviews(queryset: QuerySet[Review]) -> QuerySet[Review]:
    """``settled_only`` for review rows."""
    return queryset.filter(transcript__status__in=SETTLED_STATUSES)


# Discussion ---------------------------------------------------------------------------------------


def may_read_discussion(transcript: Transcript, viewer: User, *, reviewed: bool) -> bool:
    """Whether the viewer may read other people's comments on the item (and who wrote them),
    given whether they gave a verdict of their own on it (``reviewed``, as ``gave_verdict``).
    Their own comments they always see (``readable_comments``).

    As for the reviews themselves (``may_see``: once they reviewed it; adjudicators on items in
    adjudication), and for staff and adjudicators WITHOUT the auditor role: they review
    nothing, so nothing they read can unblind a review of theirs. Everyone with the auditor
    role (staff and adjudicators too) is blind until their own verdict, on a settled item too
    (see the module docstring: the issue asked for settled items to be readable by all; raising
    K would then hand an auditor an item whose reviewers' reasoning they had read)."""
    if may_see(transcript, viewer, reviewed=reviewed):
        return True
    if has_role(viewer, AUDITOR):
        return False
    return is_staff(viewer) or has_role(viewer, ADJUDICATOR)


def readable_comments[C](comments: Iterable[C], viewer: User, *, may_read: bool) -> list[C]:
    """The comments (anything with ``author_id``) the viewer may read: all of them when
    ``may_read`` (``may_read_discussion``), else only their own."""
    return [c for c in comments if may_read or getattr(c, "author_id", None) == viewer.pk]
