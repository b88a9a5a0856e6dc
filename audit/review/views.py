"""Review screens: the queue, the item page with its verdict panel, next/skip, adjudication.

Each view fetches, validates, calls the domain (``workflow``, ``leases``, ``screens``,
``queue``) and renders, a page or its htmx fragment (``audit.htmx``). Every page works without
JS: forms post and redirect (POST-redirect-GET); with htmx the next item is swapped in and its
URL pushed. What of other auditors' work a screen shows is ``audit.review.visibility``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, F
from django.db.models.functions import Substr
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url

from audit import search
from audit.htmx import cursor_pager, go_to, pager, render_screen, wants_fragment
from audit.models import Flag, Review, Status, Transcript, Verdict, parse_id
from audit.permissions import (
    AUDITOR,
    AuditRequest,
    adjudicator_required,
    auditor_required,
    has_role,
    reviewer_required,
)
from audit.review import leases, screens, visibility, workflow
from audit.review import queue as queues
from audit.review.forms import (
    FILTER_MAX_LENGTH,
    LabelsForm,
    QueueFilterForm,
    VerdictForm,
    labels_initial,
    opened_token,
    rebased,
)
from audit.review.presentation import FULL_FIELDS, flags, full_text, size
from audit.team import guidelines
from audit.team.discussion import marked_now, needs_discussion_q
from audit.team.discussion_views import ADJUDICATION, thread_context

logger = logging.getLogger(__name__)

SKIP_KEY = "audit_skipped"
# Items skipped in this session and not decided since: "Skipped by me" (SKIP_KEY, which "Next"
# leaves out, starts again with each start from the queue).
SKIPPED_KEY = "audit_skipped_by_me"
FILTER_KEY = "audit_review_filters"
MAX_SKIPPED = 500
# Room for the queue's filters at their length limits, URL-encoded (up to 12 characters for one
# typed character): "Next" keeps to the filters as shown, never to a cut-off copy of them.
MAX_FILTERS_CHARS = 24_000


@dataclass(frozen=True)
class QueueRow:
    """A queue row: the item, its flags, and its status as the viewer may see it."""

    t: Transcript
    flags: list[Flag]
    status: visibility.ShownStatus
    # With a free-text search: the row's matching text, escaped, the matched words marked.
    excerpt: str = ""
    # Without: the start of the worker's reasoning (plain text, escaped by the template).
    reasoning: str = ""


def _submit(
    form: LabelsForm, decide: Callable[..., workflow.ReviewOutcome]
) -> workflow.ReviewOutcome | workflow.StaleVersion | None:
    """Check the form and call the domain with its values: the outcome; the StaleVersion when
    the item changed since the form was rendered; None when the input is invalid (the errors,
    the domain's included, are on the form)."""
    if not form.is_valid():
        return None
    try:
        return decide(**form.domain_kwargs())
    except workflow.StaleVersion as stale:
        return stale
    except ValidationError as error:
        if hasattr(error, "error_dict"):
            # The errors themselves, not their messages: a template may ask for a code.
            for field, errs in error.error_dict.items():
                form.add_error(field if field in form.fields else None, errs)
        else:
            form.add_error(None, error.messages)
        return None


# --- queue ---------------------------------------------------------------------------------------


@require_GET
def queue(request: AuditRequest) -> HttpResponse:
    if not has_role(request.user, AUDITOR):
        # The queue is the home page (and where login lands): everyone else starts on the
        # dashboard instead of a 403.
        return redirect("dashboard")
    defaults = queues.defaults(request.GET)
    query = queues.clean_query(request.GET, defaults)
    if not wants_fragment(request) and query.urlencode() != request.GET.urlencode():
        # A form submitted without JS: show the same queue under its clean URL.
        return redirect(queues.url(query))
    user = request.user
    form = QueueFilterForm(request.GET, viewer=user, skipped=_skipped(request))
    filters = form.filters()
    too_long = form.too_long()
    if too_long:
        if wants_fragment(request):
            # The swapped region has no room for messages: load the whole page, which says why
            # the filter was left out.
            return HttpResponseClientRedirect(queues.url(query))
        for problem in too_long:
            messages.warning(request, problem)
    match = queues.compute_match(filters)
    searching = bool(filters.text_query.terms)
    page = queues.queue_page(
        filters,
        match=match,
        annotations={
            "reviewed": visibility.own_verdict_exists(user),
            # The page's rows' text, from its own table (TranscriptText).
            **(
                {"search_text": F("text__search_text")}
                if searching
                else {"text_head": Substr("text__search_text", 1, queues.EXCERPT_HEAD)}
            ),
        },
        fields=queues.ROW_FIELDS,
    )
    rows = [
        QueueRow(
            t=row,
            flags=flags(row),
            status=visibility.row_visibility(
                row,
                user,
                reviewed=row.reviewed,  # type: ignore[attr-defined]
            ).status,
            excerpt=search.highlight(row.search_text, filters.text_query) if searching else "",  # type: ignore[attr-defined]
            reasoning="" if searching else queues.reasoning_excerpt(row, row.text_head),  # type: ignore[attr-defined]
        )
        for row in page.rows
    ]
    facets = queues.facet_counts(
        filters, status_choices=visibility.status_choices(user), match=match
    )
    active = {key: value for key, value in query.items() if key not in queues.POSITION}
    context = {
        "nav": "queue",
        "form": form,
        "headers": queues.sort_headers(query, page.sort),
        "priority_legend": queues.priority_legend(),
        "flagged": facets.flagged,
        "not_flagged": facets.total - facets.flagged if facets.flagged is not None else 0,
        "values": filters,
        "defaults": defaults,
        "selects": queues.facet_selects(filters, facets.counts, defaults),
        "rows": rows,
        "total": facets.total,
        "first_row": 1 if rows and page.is_first else 0,
        "last_row": len(rows) if page.is_first else 0,
        "shown": len(rows),
        "search": filters.text_query if filters.q else None,
        "unranked": searching
        and filters.sort == queues.BEST
        and match is not None
        and not match.ranked
        and match.too_many_to_rank,
        "rank_limit": search.RANK_LIMIT,
        **cursor_pager(
            first_url=queues.page_url(query) if not page.is_first else "",
            prev_url=queues.page_url(query, before=page.before) if page.before else "",
            next_url=queues.page_url(query, after=page.after) if page.after else "",
            label="First page" if page.is_first and page.after else "",
        ),
        "filters_qs": urlencode(active),
        "is_filtered": bool(active),
        # Rows open their item with the search's words marked.
        "item_qs": _marks(filters.q).qs,
        # Bulk actions (adjudicators, staff) and saved views (audit.team)
        **_bulk_context(user),
    }
    response = render_screen(request, "audit/queue.html", "queue", context)
    if wants_fragment(request):
        # The address bar shows the clean URL, not every field the form sent.
        push_url(response, queues.url(query))
    return response


def _bulk_context(user: Any) -> dict[str, Any]:
    """The queue's bulk bar: the viewer's actions (none for plain auditors, at no query) and,
    for assigning (staff), the auditors to choose from (one query)."""
    from audit.team import bulk
    from audit.team.assignments import MAX_K, assignable

    actions = bulk.actions_for(user)
    return {
        "bulk_actions": actions,
        "bulk_auditors": list(assignable()) if bulk.ASSIGN in actions else [],
        "bulk_max_k": MAX_K,
    }


# --- item ----------------------------------------------------------------------------------------


def _opened(
    form: LabelsForm,
    transcript: Transcript,
    *,
    status: str,
    is_conflict: bool,
    own: Review | None = None,
) -> str:
    """The signed ``opened`` token the form carries: an invalid form keeps the one it came
    with; a fresh form, or one offered again after a conflict, notes the version shown now
    and the viewer's own current review ``own`` (keeping the time the auditor first opened
    the item)."""
    if form.is_bound and not is_conflict:
        return form.data.get("opened", "")
    seen = form.seen() if form.is_bound else None
    return opened_token(
        transcript,
        status=status,
        at=seen.get("at") if seen else None,
        own_review=own.pk if own is not None else None,
    )


def _render_item(
    request: AuditRequest,
    transcript: Transcript,
    *,
    form: VerdictForm | None = None,
    conflict_seen: dict[str, Any] | None = None,
    is_conflict: bool = False,
    status: int = 200,
    q: str = "",
) -> HttpResponse:
    marks = _marks(q)
    state = screens.open_item(transcript, viewer=request.user, marks=marks.query)
    seen = state.visibility
    if form is None:
        form = VerdictForm(initial=labels_initial(transcript), transcript=transcript)
    mode = form.data.get("verdict", "") if form.is_bound else ""
    context = {
        "nav": "queue",
        "t": transcript,
        "status": seen.status,
        "rec": state.record,
        "problems": state.problems,
        "flags": flags(transcript),
        "timeline": state.timeline,
        "prev_step": state.prev_step,
        "next_step": state.next_step,
        "see_all": seen.see_all,
        "history": state.history,
        "own": state.own,
        "lease": state.lease,
        "reserved_by": state.reserved_by,
        "form": form,
        "opened": _opened(
            form, transcript, status=seen.status.value, is_conflict=is_conflict, own=state.own
        ),
        "mode": mode if mode in (Verdict.RELABEL, Verdict.UNSURE) else "",
        "refusal": state.refusal,
        "confirm_blocked": state.confirm_blocked,
        "conflict": screens.conflict(conflict_seen, state.all_reviews, see_all=seen.see_all)
        if is_conflict
        else None,
        "original": transcript.imported_labels,
        "original_category": transcript.imported_category,
        "hl": marks.query,
        "hl_qs": marks.qs,
        "progress": queues.progress(_next_filters(request), item=transcript, viewer=request.user),
        "guidelines": guidelines.for_screen(transcript),
        # Discussion (the thread region, blind as visibility.may_read_discussion says)
        "discussion": thread_context(transcript, request.user, reviews=state.all_reviews),
    }
    return render_screen(request, "audit/item.html", "review-main", context, status=status)


@dataclass(frozen=True)
class Marks:
    """The queue search a record's page was opened from (``?q=``): its words are marked in the
    record's text, and "show the full text" keeps them (``qs``)."""

    query: search.SearchQuery | None
    qs: str


def _marks(q: str) -> Marks:
    q = q.strip()[:FILTER_MAX_LENGTH]
    query = search.parse(q) if q else None
    if not query or not query.terms:
        return Marks(None, "")
    return Marks(query, "?" + urlencode({"q": q}))


@require_GET
@auditor_required
def item(request: AuditRequest, pk: int) -> HttpResponse:
    transcript = get_object_or_404(Transcript.objects.select_related("batch", "text"), pk=pk)
    return _render_item(request, transcript, q=request.GET.get("q", ""))


@require_GET
@reviewer_required
def item_field(request: AuditRequest, pk: int, name: str) -> HttpResponse:
    """The whole of one long field the item and adjudication pages cut (``presentation``):
    for htmx, the field's HTML, escaped, the search's words marked, in place of the cut copy;
    otherwise as text, like ``raw_record`` (whose docstring says why blindness is not at stake:
    this is a part of the same imported line)."""
    if name not in FULL_FIELDS:
        raise Http404(f"No field {name!r}: one of {', '.join(FULL_FIELDS)}.")
    text = full_text(_raw(pk), name)
    assert text is not None  # a known name
    if not wants_fragment(request):
        response = HttpResponse(text, content_type="text/plain; charset=utf-8")
        response["X-Content-Type-Options"] = "nosniff"
        return response
    query = _marks(request.GET.get("q", "")).query
    context = {
        "name": name,
        "text": search.mark(text, query) if query else text,
        "total": size(len(text.encode())),
        "kind": FULL_FIELDS[name][2],
    }
    return render_screen(request, "audit/_record.html", "fulltext", context)


@require_GET
@reviewer_required
def raw_record(request: AuditRequest, pk: int) -> HttpResponse:
    """The record exactly as imported (its JSONL line): the full value of every field the item
    and adjudication pages cut (``presentation``), on demand.

    Served as text (``text/plain``, ``nosniff``) so a browser shows it and never runs it: it is
    hostile, and not always strict JSON (NaN). No lease: reading it reserves nothing.

    Blindness is not at stake (``visibility``): what that module hides is other auditors'
    verdicts, the final labels and how an item was settled, which live in ``Review`` rows and
    the transcript's status and ``final_*`` columns. ``raw`` is written once, by the importer,
    from the file; no verdict ever writes it. So it shows what the item page already shows every
    viewer, only uncut. (A line that is itself an export of this app carries the ``review``
    block it was exported with, an earlier review history under pseudonyms: that is the file's
    content, as its ground truth is, and no review of this item in this database.)
    """
    response = HttpResponse(_raw(pk), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="transcript-{pk}.json"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _raw(pk: int) -> str:
    """The record's line, of a transcript ``Transcript.objects`` sees (404 otherwise)."""
    return get_object_or_404(Transcript.objects.values_list("text__raw", flat=True), pk=pk)


def _skipped(request: AuditRequest) -> tuple[int, ...]:
    """The items the viewer skipped in this session ("Skipped by me")."""
    return tuple(pk for pk in request.session.get(SKIPPED_KEY, []) if isinstance(pk, int))


def _next_filters(request: AuditRequest) -> queues.QueueFilters | None:
    """The queue filters "Next" works through (the ones the queue showed when reviewing
    started from it), None when it works through the whole queue."""
    stored = request.session.get(FILTER_KEY)
    if not stored:
        return None
    form = QueueFilterForm(QueryDict(stored), viewer=request.user, skipped=_skipped(request))
    return form.filters()


def _nothing_left(*, where: str, skipped: int) -> str:
    """What "Next" says when no item is left under the filters it works through (``where``,
    in words; "" for the whole queue), and why that can be."""
    if where:
        text = (
            f"Nothing left for you under {where}: every item there is settled, waiting for "
            "adjudication, already reviewed by you, or reserved by another auditor. The "
            "filters are kept below; Reset filters shows the whole queue."
        )
    else:
        text = (
            "Nothing left for you to review: every queued item is settled, waiting for "
            "adjudication, already reviewed by you, or reserved by another auditor."
        )
    if skipped:
        items = "item" if skipped == 1 else "items"
        text += f" {skipped} {items} you skipped are left out until you start again from the queue."
    return text


def _go_next(request: AuditRequest, *, moving_on_from: int | None = None) -> HttpResponse:
    """The next item under the filters "Next" works through: claimed (or, for a "My work"
    filter of one's own reviews or skips, the next one in queue order, ``queues.walk_next``),
    swapped in (htmx) or redirected to; back to the queue, its filters kept, when none is left.

    ``moving_on_from``: the item the auditor pressed Next on (or just decided or skipped). Next
    hands an auditor's own lease back first, so without this an item one holds would come
    straight back: it is passed over (its lease kept, so it comes back later), unless it is the
    only one left."""
    skipped = request.session.get(SKIP_KEY, [])
    stored = _next_filters(request)
    q = stored.q if stored is not None else ""
    transcript: Transcript | None = None
    if stored is not None and stored.walked:
        transcript = queues.walk_next(stored, after=moving_on_from)
    else:
        filters = queues.for_next(stored) if stored is not None else None
        if moving_on_from is not None:
            transcript = leases.claim_next(
                request.user, filters=filters, skip=[*skipped, moving_on_from]
            )
        if transcript is None:
            transcript = leases.claim_next(request.user, filters=filters, skip=skipped)
            if transcript is not None and transcript.pk == moving_on_from:
                messages.info(request, "No other item is left for you; this is the one you hold.")
    if transcript is None:
        where = queues.describe(stored)
        messages.info(request, _nothing_left(where=where, skipped=len(skipped)))
        back = queues.url(QueryDict(request.session.get(FILTER_KEY, ""))) if where else ""
        return go_to(request, back or reverse("queue"))
    url = reverse("item", args=[transcript.pk])
    if wants_fragment(request):
        if stored is not None and stored.walked:  # walk_next read the id only; a claim, all
            transcript = Transcript.objects.select_related("batch", "text").get(pk=transcript.pk)
        return push_url(_render_item(request, transcript, q=q), url)
    return redirect(url + _marks(q).qs)


@require_POST
@auditor_required
def next_item(request: AuditRequest) -> HttpResponse:
    if "filters" in request.POST:
        # Started from the queue: later "Next"s stay within the filters it showed.
        request.session[FILTER_KEY] = request.POST["filters"][:MAX_FILTERS_CHARS]
        request.session[SKIP_KEY] = []
    return _go_next(request, moving_on_from=parse_id(request.POST.get("from", "")))


@require_POST
@auditor_required
def skip_item(request: AuditRequest, pk: int) -> HttpResponse:
    transcript = get_object_or_404(Transcript, pk=pk)
    leases.release_lease(transcript, auditor=request.user)
    for key in (SKIP_KEY, SKIPPED_KEY):
        kept = [i for i in request.session.get(key, []) if i != pk]
        request.session[key] = [*kept, pk][-MAX_SKIPPED:]
    return _go_next(request, moving_on_from=pk)


@require_POST
@auditor_required
def submit_review(request: AuditRequest, pk: int) -> HttpResponse:
    """A verdict: saved, then the next item; a stale version shows the conflict view (409)
    offering the entries again against the current version; invalid input the errors (422)."""
    # Not its text: a saved verdict shows the next item; only a refused one (409, 422) shows
    # this record again, and loads it then.
    transcript = get_object_or_404(Transcript.objects.select_related("batch"), pk=pk)
    form = VerdictForm(request.POST, transcript=transcript)
    outcome = _submit(
        form, lambda **values: workflow.submit_review(transcript, auditor=request.user, **values)
    )
    if isinstance(outcome, workflow.StaleVersion):
        current = outcome.transcript
        return _render_item(
            request,
            current,
            form=VerdictForm(rebased(form, current), transcript=current),
            conflict_seen=form.seen(),
            is_conflict=True,
            status=409,
        )
    if outcome is None:
        return _render_item(request, transcript, form=form, status=422)
    t = outcome.transcript
    # Decided: no longer one of the viewer's skipped items.
    skipped_by_me = request.session.get(SKIPPED_KEY, [])
    if pk in skipped_by_me:
        request.session[SKIPPED_KEY] = [i for i in skipped_by_me if i != pk]
    verdict = Verdict(outcome.review.verdict).label.lower()
    # Safe to name the status: after their own verdict the auditor may see it (an unsure never
    # settles an item, and newcomers cannot review settled ones).
    saved = (
        f"Saved your {verdict} on step {t.step_number} of {t.session_id}; "
        f"status: {Status(outcome.state.status).label}."
    )
    return _after_saving(
        request, saved, lambda: _go_next(request, moving_on_from=pk), back_to="queue"
    )


def _after_saving(
    request: AuditRequest, saved: str, following: Callable[[], HttpResponse], *, back_to: str
) -> HttpResponse:
    """The answer to a write that committed: the ``saved`` message with ``following()`` (the
    next item), or, when that fails (a database blip, a rendering error), with the page
    ``back_to``: never an error page that makes the auditor think their work was lost."""
    messages.success(request, saved)
    try:
        return following()
    except Exception:
        logger.exception("saved, but could not open the next item for user %s", request.user.pk)
        if getattr(messages.get_messages(request), "used", False):  # the failed page showed it
            messages.success(request, saved)
        messages.warning(request, "Could not open the next item; choose one from here.")
        return go_to(request, reverse(back_to))


# --- adjudication --------------------------------------------------------------------------------


@require_GET
@adjudicator_required
def adjudication_queue(request: AuditRequest) -> HttpResponse:
    show = "adjudicated" if request.GET.get("show") == "adjudicated" else "disputed"
    status = Status.ADJUDICATED if show == "adjudicated" else Status.DISPUTED
    # ?discussion=1 keeps the items marked "needs discussion".
    only_marked = request.GET.get("discussion") == "1"
    rows = Transcript.objects.filter(status=status)
    if only_marked:
        rows = rows.filter(needs_discussion_q())
    paginator = Paginator(
        rows.annotate(marked=marked_now()).order_by("-priority", "id").only(*queues.ROW_FIELDS),
        queues.PAGE_SIZE,
    )
    page = paginator.get_page(request.GET.get("page"))
    counts = dict(
        Transcript.objects.in_adjudication()
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    marked_qs = "&discussion=1" if only_marked else ""
    base = f"{reverse('adjudication_queue')}?show={show}{marked_qs}&page="
    context = {
        "nav": "adjudication",
        "rows": list(page),
        "show": show,
        "counts": counts,
        "only_marked": only_marked,
        "marked_qs": marked_qs,
        "total": paginator.count,
        **pager(page, lambda n: f"{base}{n}"),
    }
    return render_screen(request, "audit/adjudication_list.html", "adjudication-list", context)


def _render_adjudication(
    request: AuditRequest,
    transcript: Transcript,
    *,
    form: LabelsForm | None = None,
    conflict_seen: dict[str, Any] | None = None,
    is_conflict: bool = False,
    status: int = 200,
) -> HttpResponse:
    try:
        state = screens.adjudication_state(transcript, viewer=request.user)
    except screens.NotInAdjudication:
        # Not (or no longer) disputed: the page would show reviews its viewer may not see.
        messages.info(
            request, f"Item #{transcript.pk} is not disputed; there is nothing to adjudicate."
        )
        return go_to(request, reverse("adjudication_queue"))
    if form is None:
        form = LabelsForm(initial=labels_initial(transcript), transcript=transcript)
    context = {
        "nav": "adjudication",
        "t": transcript,
        "rec": state.record,
        "problems": state.problems,
        "flags": flags(transcript),
        "side_by_side": state.side_by_side,
        "differs": state.differs,
        "adjudications": state.adjudications,
        "history": state.history,
        "form": form,
        "opened": _opened(form, transcript, status=transcript.status, is_conflict=is_conflict),
        "original": transcript.imported_labels,
        "original_category": transcript.imported_category,
        "conflict": screens.conflict(conflict_seen, state.all_reviews, see_all=True)
        if is_conflict
        else None,
        "guidelines": guidelines.for_screen(transcript),
        "discussion": thread_context(
            transcript, request.user, reviews=state.all_reviews, screen=ADJUDICATION
        ),
    }
    return render_screen(
        request, "audit/adjudication.html", "adjudication-main", context, status=status
    )


@require_GET
@adjudicator_required
def adjudicate_item(request: AuditRequest, pk: int) -> HttpResponse:
    transcript = get_object_or_404(Transcript.objects.select_related("batch", "text"), pk=pk)
    return _render_adjudication(request, transcript)


@require_POST
@adjudicator_required
def submit_adjudication(request: AuditRequest, pk: int) -> HttpResponse:
    """An adjudication: saved, then the next disputed item; conflicts and errors as for a
    verdict."""
    # Not its text, as for a verdict.
    transcript = get_object_or_404(Transcript.objects.select_related("batch"), pk=pk)
    form = LabelsForm(request.POST, transcript=transcript)
    outcome = _submit(
        form, lambda **values: workflow.adjudicate(transcript, adjudicator=request.user, **values)
    )
    if isinstance(outcome, workflow.StaleVersion):
        current = outcome.transcript
        return _render_adjudication(
            request,
            current,
            form=LabelsForm(rebased(form, current), transcript=current),
            conflict_seen=form.seen(),
            is_conflict=True,
            status=409,
        )
    if outcome is None:
        return _render_adjudication(request, transcript, form=form, status=422)
    t = outcome.transcript
    saved = f"Adjudicated step {t.step_number} of {t.session_id}."
    return _after_saving(
        request, saved, lambda: _go_next_disputed(request), back_to="adjudication_queue"
    )


def _go_next_disputed(request: AuditRequest) -> HttpResponse:
    following = workflow.next_disputed(request.user)
    if following is None:
        return go_to(request, reverse("adjudication_queue"))
    url = reverse("adjudicate_item", args=[following.pk])
    if wants_fragment(request):
        return push_url(_render_adjudication(request, following), url)
    return redirect(url)
