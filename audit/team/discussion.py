"""Discussion per item: comment threads and the "needs discussion" mark.

Comments are append-only (``audit.models.Comment``): writing one stores the comment and its
first revision; an edit, by its author only, adds the next revision and keeps every earlier
text as the comment's history. Nothing is ever updated in place or deleted.

The mark (``audit.models.DiscussionMark``) says an item needs discussion. Setting it records
who and when; clearing it records who and when on the same row, which stays; marking again
adds a new row. ``needs_discussion_q()`` filters transcripts to the items marked now;
``mark_needs_discussion`` marks or clears a whole queryset in a few queries (the queue's bulk
action, the item page's toggle).

Who may read a thread is ``audit.review.visibility.may_read_discussion`` (never restated here);
who may write is ``may_comment`` and ``may_mark`` below.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from audit.models import (
    COMMENT_MAX_LENGTH,
    Comment,
    CommentRevision,
    DiscussionMark,
    Transcript,
    TranscriptQuerySet,
)
from audit.permissions import ADJUDICATOR, AUDITOR, has_role, is_staff

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Marks are inserted this many at a time (one INSERT each).
MARK_CHUNK = 1000


class DiscussionError(ValueError):
    """Bad input to a discussion write; the message names the problem, for the person."""


class StaleComment(DiscussionError):
    """An edit made against a revision that is no longer the comment's current text."""


# --- the mark ------------------------------------------------------------------------------------


def needs_discussion_q() -> Q:
    """A Transcript filter: the items marked "needs discussion" now, as an id subquery read
    from the partial index of open marks (``dm_open_once``), so its cost follows the number of
    marked items, not the table's size."""
    return Q(pk__in=DiscussionMark.objects.open().values("transcript_id"))


def mark_needs_discussion(transcripts: TranscriptQuerySet, *, by: User, on: bool = True) -> int:
    """Mark (``on``) or clear every item of ``transcripts``; how many changed (items already
    in that state are left as they are and not counted). Records who and when. A clear is one
    UPDATE; a mark is one SELECT of the unmarked ids and one INSERT per ``MARK_CHUNK`` of
    them, in one transaction. A mark set by someone else at the same moment is kept, not
    doubled (the open mark is unique per item)."""
    now = timezone.now()
    ids = transcripts.order_by().values("pk")
    with transaction.atomic():
        if not on:
            return (
                DiscussionMark.objects.open()
                .filter(transcript_id__in=ids)
                .update(cleared_at=now, cleared_by=by)
            )
        unmarked = list(
            Transcript.objects.filter(pk__in=ids)
            .exclude(needs_discussion_q())
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for start in range(0, len(unmarked), MARK_CHUNK):
            DiscussionMark.objects.bulk_create(
                [
                    DiscussionMark(transcript_id=pk, set_by=by, set_at=now)
                    for pk in unmarked[start : start + MARK_CHUNK]
                ],
                ignore_conflicts=True,
            )
    return len(unmarked)


def open_mark(transcript: Transcript) -> DiscussionMark | None:
    """The item's open mark (who set it, when), None when it is not marked."""
    return (
        DiscussionMark.objects.open().filter(transcript=transcript).select_related("set_by").first()
    )


def mark_history(transcript: Transcript) -> list[DiscussionMark]:
    """Every mark the item had, in the order they were set, with who set and cleared them."""
    return list(
        DiscussionMark.objects.filter(transcript=transcript)
        .select_related("set_by", "cleared_by")
        .order_by("set_at", "id")
    )


def may_mark(viewer: User) -> bool:
    """Whether the viewer may set or clear the mark on an item they can open: auditors (on the
    items they review), adjudicators, staff."""
    return has_role(viewer, AUDITOR) or has_role(viewer, ADJUDICATOR) or is_staff(viewer)


# --- comments ------------------------------------------------------------------------------------


def may_comment(viewer: User) -> bool:
    """Whether the viewer may comment on an item they can open: auditors, adjudicators, staff.
    (Which items they can open is the screen's own check.)"""
    return may_mark(viewer)


def clean_text(text: object) -> str:
    """The comment text to store: surrounding white space removed; refused (DiscussionError,
    naming the problem) when not text, empty or white space only, or too long."""
    if not isinstance(text, str):
        raise DiscussionError("A comment must be text.")
    if "\x00" in text:
        raise DiscussionError("A comment cannot hold a NUL character.")
    cleaned = text.strip()
    if not cleaned:
        raise DiscussionError("Write something: a comment cannot be empty or only white space.")
    if len(cleaned) > COMMENT_MAX_LENGTH:
        raise DiscussionError(
            f"A comment can be at most {COMMENT_MAX_LENGTH:,} characters; "
            f"this one has {len(cleaned):,}."
        )
    return cleaned


def add_comment(transcript: Transcript, *, author: User, text: object) -> Comment:
    """A new comment by ``author`` on the item, with ``text`` as its first revision."""
    cleaned = clean_text(text)
    with transaction.atomic():
        comment = Comment.objects.create(transcript=transcript, author=author)
        CommentRevision.objects.create(comment=comment, number=1, text=cleaned)
    return comment


def edit_comment(comment: Comment, *, author: User, text: object, based_on: int) -> CommentRevision:
    """A new revision of ``comment`` by its author, made against revision ``based_on`` (the one
    the author saw). Refused when someone else asks (DiscussionError), when the text is the
    current one unchanged, or when ``based_on`` is no longer current (StaleComment)."""
    if comment.author_id != author.pk:
        raise DiscussionError("Only its author can edit a comment.")
    cleaned = clean_text(text)
    with transaction.atomic():
        current = CommentRevision.objects.filter(comment=comment).order_by("-number").first()
        number = current.number if current is not None else 0
        if number != based_on:
            raise StaleComment(
                "This comment was edited meanwhile (perhaps in another tab): its current "
                "text is shown; edit that instead."
            )
        if current is not None and current.text == cleaned:
            raise DiscussionError("The text is unchanged: nothing to save.")
        try:
            with transaction.atomic():
                return CommentRevision.objects.create(
                    comment=comment, number=number + 1, text=cleaned
                )
        except IntegrityError as error:
            raise StaleComment(
                "This comment was edited at the same moment elsewhere: its current text is "
                "shown; edit that instead."
            ) from error


@dataclass(frozen=True)
class Revision:
    number: int
    text: str
    created_at: dt.datetime


@dataclass(frozen=True)
class ThreadComment:
    """A comment as a thread shows it: its current text and its earlier ones (oldest first)."""

    id: int
    transcript_id: int
    author_id: int
    author_name: str
    created_at: dt.datetime
    current: Revision
    earlier: tuple[Revision, ...]

    @property
    def text(self) -> str:
        return self.current.text

    @property
    def edited(self) -> bool:
        return bool(self.earlier)

    @property
    def edited_at(self) -> dt.datetime:
        return self.current.created_at


def _threads(revisions: Iterable[CommentRevision]) -> dict[int, list[ThreadComment]]:
    """Revisions (with their comment and its author, ordered by comment time then number)
    grouped into comments, per transcript id."""
    grouped: dict[int, list[CommentRevision]] = defaultdict(list)
    comments: dict[int, Comment] = {}
    for revision in revisions:
        grouped[revision.comment_id].append(revision)
        comments[revision.comment_id] = revision.comment
    threads: dict[int, list[ThreadComment]] = defaultdict(list)
    for comment_id, revs in grouped.items():
        comment = comments[comment_id]
        shown = [Revision(r.number, r.text, r.created_at) for r in revs]
        threads[comment.transcript_id].append(
            ThreadComment(
                id=comment_id,
                transcript_id=comment.transcript_id,
                author_id=comment.author_id,
                author_name=comment.author.get_username(),
                created_at=comment.created_at,
                current=shown[-1],
                earlier=tuple(shown[:-1]),
            )
        )
    return threads


def _revisions(transcript_ids: Q) -> Iterable[CommentRevision]:
    return (
        CommentRevision.objects.filter(transcript_ids)
        .select_related("comment__author")
        .order_by("comment__created_at", "comment_id", "number")
    )


def thread(transcript: Transcript) -> list[ThreadComment]:
    """The item's comments in time order (one query). Whether the viewer may read others'
    is ``visibility.may_read_discussion``; ``shown_thread`` applies it."""
    return _threads(_revisions(Q(comment__transcript_id=transcript.pk))).get(transcript.pk, [])


def threads_for(transcript_ids: Iterable[int]) -> dict[int, list[ThreadComment]]:
    """The comments of many items, per transcript id, in one query (the export's chunks)."""
    ids = list(transcript_ids)
    if not ids:
        return {}
    return dict(_threads(_revisions(Q(comment__transcript_id__in=ids))))


def commented() -> Exists:
    """For ``annotate``: whether the outer Transcript row has any comment (one probe of the
    comments' transcript index per row)."""
    return Exists(Comment.objects.filter(transcript=OuterRef("pk")))


def marked_now() -> Exists:
    """For ``annotate``: whether the outer Transcript row is marked now (one probe of the
    partial index of open marks per row)."""
    return Exists(DiscussionMark.objects.open().filter(transcript=OuterRef("pk")))
