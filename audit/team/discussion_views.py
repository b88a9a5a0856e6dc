"""The discussion region of the item and adjudication screens, and its writes.

``thread_context`` is what ``templates/audit/_discussion.html`` renders (the item and
adjudication screens add it to their context); the views below add a comment, edit one's own
comment, and set or clear the "needs discussion" mark. With htmx each answers with the thread
region alone; without JS a write redirects back to the screen it came from (POST-redirect-GET),
and a refused one shows the thread on its own page with the reason and the text kept (422).

Who may read others' comments is ``visibility.may_read_discussion``; who may write is
``discussion.may_comment`` / ``may_mark``, on an item they can open (``may_open``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from audit.htmx import render_screen, wants_fragment
from audit.models import COMMENT_MAX_LENGTH, Comment, Review, Transcript, parse_id
from audit.permissions import ADJUDICATOR, AUDITOR, AuditRequest, has_role, is_staff
from audit.review import visibility
from audit.team import discussion

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# The screens a thread is shown on, and so where a write without JS goes back to.
ITEM = "item"
ADJUDICATION = "adjudication"
PAGE = "page"
SCREENS = {ITEM: "item", ADJUDICATION: "adjudicate_item", PAGE: "discussion"}

HIDDEN_NOTE = "Other auditors' comments are shown once you have given your verdict."


@dataclass(frozen=True)
class MarkEvent:
    """One mark in the item's mark history, as the thread shows it."""

    set_by: str
    set_at: Any
    cleared_by: str
    cleared_at: Any


@dataclass(frozen=True)
class CommentRow:
    """One comment as the region shows it to the viewer."""

    comment: discussion.ThreadComment
    # "you" for the viewer's own; others' names reach only those who may read the thread.
    author: str
    mine: bool
    # A refused edit of it: the reason, and the text the viewer wrote (kept).
    error: str = ""
    draft: str = ""


@dataclass(frozen=True)
class Thread:
    """What the discussion region shows one viewer of one item."""

    transcript: Transcript
    screen: str
    rows: list[CommentRow]
    may_read: bool
    may_comment: bool
    may_mark: bool
    marked: bool
    # Who set the open mark ("" when not marked, or when the viewer may not know who) and when.
    marked_by: str
    marked_at: Any
    marks: list[MarkEvent]
    # The add form's text to show again and its error; a refused mark change's error.
    draft: str = ""
    error: str = ""
    mark_error: str = ""
    notice: str = ""
    max_length: int = COMMENT_MAX_LENGTH
    hidden_note: str = HIDDEN_NOTE


def may_open(transcript: Transcript, viewer: User) -> bool:
    """Whether the viewer can open the item's discussion: auditors and staff any item (the
    item page, the standalone thread), adjudicators the items in adjudication."""
    if has_role(viewer, AUDITOR) or is_staff(viewer):
        return True
    return has_role(viewer, ADJUDICATOR) and transcript.in_adjudication


def thread_context(
    transcript: Transcript,
    viewer: User,
    *,
    reviews: Iterable[Review],
    screen: str = ITEM,
    edit_errors: dict[int, str] | None = None,
    edit_drafts: dict[int, str] | None = None,
    **extra: Any,
) -> Thread:
    """The discussion region for ``viewer`` on the item, given the item's reviews (to decide
    ``gave_verdict``). Two queries: the comments with their revisions, and the marks."""
    reviewed = visibility.gave_verdict(viewer, reviews)
    may_read = visibility.may_read_discussion(transcript, viewer, reviewed=reviewed)
    comments = visibility.readable_comments(
        discussion.thread(transcript), viewer, may_read=may_read
    )
    marks = discussion.mark_history(transcript)
    current = next((m for m in reversed(marks) if m.is_open), None)

    def who(user: User | None) -> str:
        # Someone else's name only to those who may read the thread.
        if user is None:
            return ""
        if user.pk == viewer.pk:
            return "you"
        return user.get_username() if may_read else ""

    errors, drafts = edit_errors or {}, edit_drafts or {}
    return Thread(
        transcript=transcript,
        screen=screen if screen in SCREENS else ITEM,
        rows=[
            CommentRow(
                comment=c,
                author="you" if c.author_id == viewer.pk else c.author_name,
                mine=c.author_id == viewer.pk,
                error=errors.get(c.id, ""),
                draft=drafts.get(c.id, ""),
            )
            for c in comments
        ],
        may_read=may_read,
        may_comment=discussion.may_comment(viewer),
        may_mark=discussion.may_mark(viewer),
        marked=current is not None,
        marked_by=who(current.set_by) if current else "",
        marked_at=current.set_at if current else None,
        marks=[MarkEvent(who(m.set_by), m.set_at, who(m.cleared_by), m.cleared_at) for m in marks]
        if may_read
        else [],
        **extra,
    )


def _own_reviews(transcript: Transcript, viewer: User) -> list[Review]:
    """The viewer's reviews of the item: all ``gave_verdict`` needs to know about them."""
    return list(Review.objects.filter(transcript=transcript, auditor_id=viewer.pk))


def _transcript(request: AuditRequest, pk: int) -> Transcript:
    transcript = get_object_or_404(Transcript, pk=pk)
    if not may_open(transcript, request.user):
        raise PermissionDenied
    return transcript


def _screen(request: AuditRequest) -> str:
    screen = request.POST.get("screen", "") or request.GET.get("screen", "")
    return screen if screen in SCREENS else ITEM


def _back(transcript: Transcript, screen: str) -> str:
    return reverse(SCREENS[screen], args=[transcript.pk]) + "#discussion"


def _answer(
    request: AuditRequest,
    transcript: Transcript,
    *,
    notice: str = "",
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    """After a write: the thread region (htmx), or back to the screen it came from; a refused
    write without JS shows the thread page with the reason (``status`` 422)."""
    screen = _screen(request)
    if not wants_fragment(request) and status < 400:
        if notice:
            messages.success(request, notice)
        return redirect(_back(transcript, screen))
    context = thread_context(
        transcript,
        request.user,
        reviews=_own_reviews(transcript, request.user),
        screen=screen if wants_fragment(request) else PAGE,
        notice=notice,
        **extra,
    )
    return _render(request, context, status=status)


def _render(request: AuditRequest, thread: Thread, *, status: int = 200) -> HttpResponse:
    return render_screen(
        request,
        "audit/discussion.html",
        "discussion-thread",
        {"discussion": thread, "t": thread.transcript, "nav": "queue"},
        status=status,
    )


@require_GET
def discussion_page(request: AuditRequest, pk: int) -> HttpResponse:
    """The item's thread on a page of its own (for staff without a review role, who have no
    item screen, and for a write refused without JS)."""
    transcript = _transcript(request, pk)
    thread = thread_context(
        transcript,
        request.user,
        reviews=_own_reviews(transcript, request.user),
        screen=_screen(request) if wants_fragment(request) else PAGE,
    )
    return _render(request, thread)


@require_POST
def add_comment(request: AuditRequest, pk: int) -> HttpResponse:
    transcript = _transcript(request, pk)
    if not discussion.may_comment(request.user):
        raise PermissionDenied
    text = request.POST.get("text", "")
    try:
        discussion.add_comment(transcript, author=request.user, text=text)
    except discussion.DiscussionError as error:
        return _answer(request, transcript, status=422, error=str(error), draft=text)
    return _answer(request, transcript, notice="Comment added.")


@require_POST
def edit_comment(request: AuditRequest, comment_id: int) -> HttpResponse:
    comment = get_object_or_404(Comment.objects.select_related("transcript"), pk=comment_id)
    transcript = comment.transcript
    if not may_open(transcript, request.user) or comment.author_id != request.user.pk:
        raise PermissionDenied
    text = request.POST.get("text", "")
    based_on = parse_id(request.POST.get("based_on", ""))
    try:
        if based_on is None:
            raise discussion.DiscussionError(
                "The edit does not say which text it changes (based_on); reload the page."
            )
        discussion.edit_comment(comment, author=request.user, text=text, based_on=based_on)
    except discussion.DiscussionError as error:
        return _answer(
            request,
            transcript,
            status=409 if isinstance(error, discussion.StaleComment) else 422,
            edit_errors={comment.pk: str(error)},
            edit_drafts={comment.pk: text},
        )
    return _answer(request, transcript, notice="Comment edited; the earlier text is kept.")


@require_POST
def toggle_mark(request: AuditRequest, pk: int) -> HttpResponse:
    transcript = _transcript(request, pk)
    if not discussion.may_mark(request.user):
        raise PermissionDenied
    on = request.POST.get("on", "")
    if on not in ("1", "0"):
        return _answer(
            request,
            transcript,
            status=422,
            mark_error="Say whether to mark or clear: on must be 1 (mark) or 0 (clear).",
        )
    changed = discussion.mark_needs_discussion(
        Transcript.objects.filter(pk=transcript.pk), by=request.user, on=on == "1"
    )
    if on == "1":
        notice = "Marked as needing discussion." if changed else "It was marked already."
    else:
        notice = "Mark cleared." if changed else "It was not marked."
    return _answer(request, transcript, notice=notice)
