"""Review screens: the queue, the item page with its verdict panel, next/skip, adjudication.

One view serves a page and, for htmx requests, the fragment it swaps ("screen.html#region").
Every page works without JS: forms post and redirect (POST-redirect-GET); with htmx the next item
is swapped in and its URL pushed. Blindness (``reviews.may_see_reviews``) decides what of other
auditors' work a page shows; how a record reads is ``audit.review.presentation``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from audit.ingest.records import derive_category
from audit.models import Category, Flag, Review, Status, Transcript, Verdict
from audit.permissions import AUDITOR, adjudicator_required, auditor_required, has_role
from audit.review import workflow as reviews
from audit.review.forms import (
    ANY,
    FACETS,
    MAX_PAGE,
    PAGE_SIZE,
    STATUS_MEMBERS,
    AdjudicationForm,
    QueueFilterForm,
    VerdictForm,
    labels_initial,
    opened_token,
    queue_conditions,
    queue_queryset,
    rebased,
)
from audit.review.presentation import flags, present_record, problems

SKIP_KEY = "audit_skipped"
FILTER_KEY = "audit_review_filters"
MAX_SKIPPED = 500
TIMELINE_LIMIT = 400
FACET_LIMIT = 60
ROW_FIELDS = (
    "id",
    "session_id",
    "step_number",
    "task_id",
    "worker_id",
    "action_type",
    "target",
    "decision_type",
    "alignment_category",
    "status",
    "priority",
    "review_count",
    "required_reviews",
    "timestamp",
    *(f"flag_{flag.value}" for flag in Flag),
)


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _push(response: HttpResponse, url: str) -> HttpResponse:
    response["HX-Push-Url"] = url
    return response


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    """Go to another page: a redirect, or for htmx a full page load (HX-Redirect), since the
    page's swap target would not fit the other screen."""
    if _is_htmx(request):
        response = HttpResponse()
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def _add_errors(form: Any, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errs in error.message_dict.items():
            form.add_error(field if field in form.fields else None, errs)
    else:
        form.add_error(None, error.messages)


# --- queue ---------------------------------------------------------------------------------------


def _facet_counts(
    values: dict[str, Any], *, status_choices: list[tuple[str, str]]
) -> dict[str, list[dict[str, Any]]]:
    """Counts per value of each facet, with every other filter applied (one query each). The
    status options are the viewer's (``QueueFilterForm``), each counting the statuses it stands
    for, so a blind viewer gets one count for "settled", never one per way of settling."""
    out: dict[str, list[dict[str, Any]]] = {}
    flag_counts = Transcript.objects.filter(queue_conditions(values, without="flag")).aggregate(
        **{flag.value: Count("id", filter=Q(**{f"flag_{flag.value}": True})) for flag in Flag}
    )
    out["flag"] = [
        {"value": flag.value, "label": flag.label, "n": flag_counts[flag.value]} for flag in Flag
    ]
    by_status = dict(
        Transcript.objects.filter(queue_conditions(values, without="status"))
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    out["status"] = [
        {"value": value, "label": label, "n": _status_count(by_status, STATUS_MEMBERS[value])}
        for value, label in status_choices
    ]
    for name, (column, _label) in FACETS.items():
        rows = (
            Transcript.objects.filter(queue_conditions(values, without=name))
            .order_by()
            .values_list(column)
            .annotate(n=Count("id"))
            .order_by("-n", column)[:FACET_LIMIT]
        )
        items = [
            {
                "value": value,
                "label": f"#{value}" if name == "batch" else value or "(empty)",
                "n": n,
            }
            for value, n in rows
        ]
        selected = values[name]
        if selected not in ("", None) and all(str(i["value"]) != str(selected) for i in items):
            items.append({"value": selected, "label": str(selected), "n": 0})
        out[name] = items
    return out


def _status_count(by_status: dict[str, int], members: tuple[str, ...] | None) -> int:
    if members is None:
        return sum(by_status.values())
    return sum(by_status.get(status, 0) for status in members)


def _facet_selects(
    values: dict[str, Any], counts: dict[str, list[dict[str, Any]]], defaults: dict[str, str]
) -> list[dict[str, Any]]:
    """One select per facet, each option with its count, the current value selected."""
    specs = [
        ("flag", "Flag", "Any flag"),
        ("status", "Status", None),
        *((name, label, "Any") for name, (_column, label) in FACETS.items()),
    ]
    selects = []
    for name, label, blank in specs:
        current = "" if values[name] is None else str(values[name])
        options = [
            {
                "value": str(item["value"]),
                "label": item["label"],
                "n": item["n"],
                "selected": str(item["value"]) == current,
            }
            for item in counts[name]
        ]
        selects.append(
            {
                "name": name,
                "label": label,
                "blank": blank,
                "options": options,
                "active": current not in ("", defaults[name]),
                "default": defaults[name],
            }
        )
    return selects


def _queue_defaults() -> dict[str, str]:
    """What each filter means when it is left out (the cleaned values of an empty query)."""
    cleaned = QueueFilterForm(QueryDict()).cleaned()
    return {name: "" if value is None else str(value) for name, value in cleaned.items()}


def _clean_query(query: QueryDict, defaults: dict[str, str]) -> QueryDict:
    """The query without empty parameters or ones set to their default: the URL worth showing
    and bookmarking (a plain GET form submits every field, filled or not)."""
    clean = QueryDict(mutable=True)
    for name, values in query.lists():
        kept = [v for v in values if v.strip() and v != defaults.get(name, "")]
        if kept:
            clean.setlist(name, kept)
    return clean


def _page_url(query: QueryDict, page: int) -> str:
    params = query.copy()
    params["page"] = str(page)
    return f"{reverse('queue')}?{params.urlencode()}"


@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, AUDITOR):
        # The queue is the home page (and where login lands): everyone else starts on the
        # dashboard instead of a 403.
        return redirect("dashboard")
    defaults = _queue_defaults()
    query = _clean_query(request.GET, defaults)
    if not _is_htmx(request) and query.urlencode() != request.GET.urlencode():
        # A form submitted without JS: show the same queue under its clean URL.
        return redirect(f"{reverse('queue')}?{query.urlencode()}" if query else reverse("queue"))
    user = request.user
    knows_settlements = reviews.knows_settlements(user)
    form = QueueFilterForm(request.GET, full_status=knows_settlements)
    values = form.cleaned()
    queryset = queue_queryset(values)
    total = queryset.count()
    pages = max(1, min(MAX_PAGE, -(-total // PAGE_SIZE)))
    page = min(values["page"], pages)
    offset = (page - 1) * PAGE_SIZE
    rows = list(
        queryset.annotate(reviewed=Exists(_own_verdicts(user))).only(*ROW_FIELDS)[
            offset : offset + PAGE_SIZE
        ]
    )
    for row in rows:
        row.flag_list = flags(row)
        # Blindness per row, as on the item page: how an item was settled stays hidden from
        # a viewer who has not given their own verdict on it.
        see_all = knows_settlements or reviews.may_see(row, user, reviewed=row.reviewed)
        row.shown_status = reviews.shown_status(row, see_all=see_all)
    active = {key: value for key, value in query.items() if key != "page"}
    context = {
        "nav": "queue",
        "form": form,
        "values": values,
        "defaults": defaults,
        "selects": _facet_selects(
            values,
            _facet_counts(values, status_choices=form.fields["status"].choices),
            defaults,
        ),
        "rows": rows,
        "total": total,
        "page": page,
        "pages": pages,
        "first_row": offset + 1 if rows else 0,
        "last_row": offset + len(rows),
        "prev_url": _page_url(query, page - 1) if page > 1 else "",
        "next_url": _page_url(query, page + 1) if page < pages else "",
        "filters_qs": urlencode(active),
        "is_filtered": bool(active),
    }
    template = "audit/queue.html#results" if _is_htmx(request) else "audit/queue.html"
    return render(request, template, context)


# --- item ----------------------------------------------------------------------------------------


def _own_verdicts(viewer: Any) -> QuerySet[Review]:
    """The viewer's current verdicts on the outer row, for an EXISTS (``reviews.gave_verdict``
    in SQL: an UNSURE is not a verdict), so lists know per row what the viewer may see without
    one query per row."""
    return Review.objects.filter(
        transcript=OuterRef("pk"), auditor=viewer, superseded_by__isnull=True
    ).exclude(verdict=Verdict.UNSURE)


def _timeline(transcript: Transcript, viewer: Any) -> list[Transcript]:
    """The episode's steps, each with the category the viewer may see (``shown_category``):
    whether the viewer reviewed a step comes from an EXISTS in the same query, not one per step."""
    steps = list(
        Transcript.objects.filter(session_id=transcript.session_id, task_id=transcript.task_id)
        .annotate(reviewed=Exists(_own_verdicts(viewer)))
        .order_by("step_number", "id")
        .only(
            "id",
            "step_number",
            "action_type",
            "decision_type",
            "is_misbehavior",
            "final_alignment_category",
            "status",
            "in_queue",
        )[:TIMELINE_LIMIT]
    )
    labels = dict(Category.choices)
    for step in steps:
        step.shown_category = reviews.shown_category(step, viewer=viewer, reviewed=step.reviewed)
        step.shown_category_label = labels.get(step.shown_category, step.shown_category)
    return steps


def _history_rows(transcript: Transcript, history: list[Review]) -> list[dict[str, Any]]:
    rows = []
    for review in history:
        after = None
        if review.is_misbehavior is not None:
            after = {
                "is_misbehavior": review.is_misbehavior,
                "misbehavior_type": review.misbehavior_type,
                "correct_decision": review.correct_decision,
                "alignment_category": derive_category(
                    review.is_misbehavior, transcript.decision_type
                ),
            }
        rows.append({"review": review, "before": review.before or {}, "after": after})
    return rows


def _status_label(value: Any) -> str:
    if value == reviews.SETTLED:
        return "Settled"
    return Status(value).label if value in Status.values else "unknown"


def _conflict(
    seen: dict[str, Any] | None, all_reviews: list[Review], *, see_all: bool
) -> dict[str, Any]:
    """What changed since the auditor loaded the item.

    Blindness holds here too: the opened token carries only the status the viewer was shown, so
    a blind viewer learns that the item changed, its status as they may see it and who wrote
    reviews in between, not their verdicts or the final labels. A viewer who may see the
    reviews gets the final labels as they were, from the ``before`` of the first review written
    since (the state at the version they opened).
    """
    seen = seen or {}
    seen_version = seen.get("v", 0)
    since = [r for r in all_reviews if r.based_on_version >= seen_version]
    return {
        "seen_version": seen_version,
        "since": since,
        "see_all": see_all,
        "status_before": _status_label(seen.get("status")),
        "labels_before": since[0].before if see_all and since else {},
    }


def _opened(form: Any, transcript: Transcript, *, status: str, is_conflict: bool) -> str:
    """The signed ``opened`` token the form carries: an invalid form keeps the one it came
    with; a fresh form, or one offered again after a conflict, notes the version shown now
    (keeping the time the auditor first opened the item)."""
    if form.is_bound and not is_conflict:
        return form.data.get("opened", "")
    seen = form.seen() if form.is_bound else None
    return opened_token(transcript, status=status, at=seen.get("at") if seen else None)


def _item_context(
    request: HttpRequest,
    transcript: Transcript,
    *,
    form: VerdictForm | None = None,
    conflict_seen: dict[str, Any] | None = None,
    is_conflict: bool = False,
) -> dict[str, Any]:
    user = request.user
    all_reviews = list(
        Review.objects.filter(transcript=transcript)
        .select_related("auditor")
        .order_by("created_at", "id")
    )
    current = [r for r in all_reviews if r.superseded_by_id is None]
    see_all = reviews.may_see_reviews(transcript, user, current)
    status = reviews.shown_status(transcript, see_all=see_all)
    history = all_reviews if see_all else [r for r in all_reviews if r.auditor_id == user.pk]
    own = next(
        (r for r in current if r.auditor_id == user.pk and r.verdict != Verdict.ADJUDICATE), None
    )
    leases = reviews.live_leases(transcript)
    if reviews.has_room(transcript, auditor=user, reviews=current, leases=leases):
        # Opening an item reserves it, as "Next" does, so a second auditor is not handed it.
        claimed = reviews.reserve(transcript, auditor=user)
        if claimed is not None:
            claimed.auditor = user
            leases = [lease for lease in leases if lease.auditor_id != user.pk] + [claimed]
    timeline = _timeline(transcript, user)
    position = next((i for i, step in enumerate(timeline) if step.pk == transcript.pk), None)
    prev_step = timeline[position - 1] if position else None
    next_step = (
        timeline[position + 1] if position is not None and position + 1 < len(timeline) else None
    )
    if form is None:
        form = VerdictForm(initial=labels_initial(transcript), transcript=transcript)
    mode = form.data.get("verdict", "") if form.is_bound else ""
    return {
        "nav": "queue",
        "t": transcript,
        "status": status,
        "rec": present_record(transcript.raw),
        "problems": problems(transcript),
        "flags": flags(transcript),
        "timeline": timeline,
        "prev_step": prev_step,
        "next_step": next_step,
        "see_all": see_all,
        "history": _history_rows(transcript, history),
        "own": own,
        "lease": next((lease for lease in leases if lease.auditor_id == user.pk), None),
        "reserved_by": [lease for lease in leases if lease.auditor_id != user.pk],
        "form": form,
        "opened": _opened(form, transcript, status=status.value, is_conflict=is_conflict),
        "mode": mode if mode in (Verdict.RELABEL, Verdict.UNSURE) else "",
        "refusal": reviews.review_refusal(transcript, auditor=user, reviews=current),
        "confirm_blocked": reviews.incomplete_label(transcript),
        "conflict": _conflict(conflict_seen, all_reviews, see_all=see_all) if is_conflict else None,
        "original": reviews.original_labels(transcript),
        "original_category": derive_category(transcript.is_misbehavior, transcript.decision_type),
    }


def _render_item(
    request: HttpRequest, transcript: Transcript, *, status: int = 200, **kwargs: Any
) -> HttpResponse:
    context = _item_context(request, transcript, **kwargs)
    template = "audit/item.html#itempage" if _is_htmx(request) else "audit/item.html"
    return render(request, template, context, status=status)


@require_GET
@auditor_required
def item(request: HttpRequest, pk: int) -> HttpResponse:
    transcript = get_object_or_404(Transcript.objects.select_related("batch"), pk=pk)
    return _render_item(request, transcript)


def _session_filters(request: HttpRequest) -> Q | None:
    stored = request.session.get(FILTER_KEY)
    if not stored:
        return None
    values = QueueFilterForm(QueryDict(stored)).cleaned()
    # "Next" decides status and scope itself (open, queued items).
    values.update(status=ANY, scope="all")
    return queue_conditions(values)


def _go_next(request: HttpRequest) -> HttpResponse:
    """Claim the next item: swap it in (htmx) or redirect to it; back to the queue when none."""
    skipped = request.session.get(SKIP_KEY, [])
    transcript = reviews.claim_next(request.user, filters=_session_filters(request), skip=skipped)
    if transcript is None:
        messages.info(request, "Nothing left for you to review here. Well done.")
        return _redirect(request, reverse("queue"))
    url = reverse("item", args=[transcript.pk])
    if _is_htmx(request):
        transcript = Transcript.objects.select_related("batch").get(pk=transcript.pk)
        return _push(_render_item(request, transcript), url)
    return redirect(url)


@require_POST
@auditor_required
def next_item(request: HttpRequest) -> HttpResponse:
    if "filters" in request.POST:
        # Started from the queue: later "Next"s stay within the filters it showed.
        request.session[FILTER_KEY] = request.POST["filters"][:2000]
        request.session[SKIP_KEY] = []
    return _go_next(request)


@require_POST
@auditor_required
def skip_item(request: HttpRequest, pk: int) -> HttpResponse:
    transcript = get_object_or_404(Transcript, pk=pk)
    reviews.release_lease(transcript, auditor=request.user)
    skipped = [i for i in request.session.get(SKIP_KEY, []) if i != pk]
    request.session[SKIP_KEY] = [*skipped, pk][-MAX_SKIPPED:]
    return _go_next(request)


def _decide(
    request: HttpRequest,
    pk: int,
    *,
    form_class: type[VerdictForm] | type[AdjudicationForm],
    decide: Callable[..., reviews.ReviewOutcome],
    render_page: Callable[..., HttpResponse],
    done: Callable[[reviews.ReviewOutcome], HttpResponse],
) -> HttpResponse:
    """The POST half both verdict screens share: check the form, call the domain; a stale
    version shows the conflict view (409) offering the entries again against the current
    version; invalid input shows the errors (422)."""
    transcript = get_object_or_404(Transcript.objects.select_related("batch"), pk=pk)
    form = form_class(request.POST, transcript=transcript)
    if form.is_valid():
        try:
            outcome = decide(transcript, **form.domain_kwargs())
        except reviews.StaleVersion as stale:
            current = stale.transcript
            return render_page(
                request,
                current,
                form=form_class(rebased(form, current), transcript=current),
                conflict_seen=form.seen(),
                is_conflict=True,
                status=409,
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            return done(outcome)
    return render_page(request, transcript, form=form, status=422)


@require_POST
@auditor_required
def submit_review(request: HttpRequest, pk: int) -> HttpResponse:
    def done(outcome: reviews.ReviewOutcome) -> HttpResponse:
        t = outcome.transcript
        verdict = Verdict(outcome.review.verdict).label.lower()
        # Safe to name the status: after their own verdict the auditor may see it (an unsure
        # never settles an item, and newcomers cannot review settled ones).
        messages.success(
            request,
            f"Saved your {verdict} on step {t.step_number} of {t.session_id}; "
            f"status: {Status(outcome.state.status).label}.",
        )
        return _go_next(request)

    return _decide(
        request,
        pk,
        form_class=VerdictForm,
        decide=lambda t, **values: reviews.submit_review(t, auditor=request.user, **values),
        render_page=_render_item,
        done=done,
    )


# --- adjudication --------------------------------------------------------------------------------


@require_GET
@adjudicator_required
def adjudication_queue(request: HttpRequest) -> HttpResponse:
    show = request.GET.get("show", "disputed")
    status = Status.ADJUDICATED if show == "adjudicated" else Status.DISPUTED
    try:
        page = max(1, min(MAX_PAGE, int(request.GET.get("page", "1"))))
    except ValueError:
        page = 1
    queryset = Transcript.objects.filter(status=status).order_by("-priority", "id")
    total = queryset.count()
    offset = (page - 1) * PAGE_SIZE
    rows = list(queryset.only(*ROW_FIELDS)[offset : offset + PAGE_SIZE])
    counts = dict(
        Transcript.objects.filter(status__in=reviews.ADJUDICATION_STATUSES)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    base = f"{reverse('adjudication_queue')}?show={show}&page="
    context = {
        "nav": "adjudication",
        "rows": rows,
        "show": "adjudicated" if status == Status.ADJUDICATED else "disputed",
        "counts": counts,
        "total": total,
        "page": page,
        "prev_url": f"{base}{page - 1}" if page > 1 else "",
        "next_url": f"{base}{page + 1}" if offset + PAGE_SIZE < total else "",
    }
    template = (
        "audit/adjudication_list.html#results"
        if _is_htmx(request)
        else "audit/adjudication_list.html"
    )
    return render(request, template, context)


def _adjudication_context(
    request: HttpRequest,
    transcript: Transcript,
    *,
    form: AdjudicationForm | None = None,
    conflict_seen: dict[str, Any] | None = None,
    is_conflict: bool = False,
) -> dict[str, Any]:
    all_reviews = list(
        Review.objects.filter(transcript=transcript)
        .select_related("auditor")
        .order_by("created_at", "id")
    )
    current = [r for r in all_reviews if r.superseded_by_id is None]
    # The view only renders items in adjudication, where this holds for adjudicators; the
    # check keeps the page blind should that ever change.
    if not reviews.may_see_reviews(transcript, request.user, current):
        raise Http404("not in adjudication")
    side_by_side = [r for r in current if r.verdict != Verdict.ADJUDICATE]
    fields = ("is_misbehavior", "misbehavior_type", "correct_decision")
    differs = {
        name: len({getattr(r, name) for r in side_by_side if r.verdict != Verdict.UNSURE}) > 1
        for name in fields
    }
    if form is None:
        form = AdjudicationForm(initial=labels_initial(transcript), transcript=transcript)
    return {
        "nav": "adjudication",
        "t": transcript,
        "rec": present_record(transcript.raw),
        "problems": problems(transcript),
        "flags": flags(transcript),
        "side_by_side": [
            {
                "review": r,
                "category": derive_category(r.is_misbehavior, transcript.decision_type)
                if r.is_misbehavior is not None
                else "",
            }
            for r in side_by_side
        ],
        "differs": differs,
        "adjudications": [r for r in all_reviews if r.verdict == Verdict.ADJUDICATE],
        "history": _history_rows(transcript, all_reviews),
        "form": form,
        "opened": _opened(form, transcript, status=transcript.status, is_conflict=is_conflict),
        "original": reviews.original_labels(transcript),
        "original_category": derive_category(transcript.is_misbehavior, transcript.decision_type),
        "conflict": _conflict(conflict_seen, all_reviews, see_all=True) if is_conflict else None,
    }


def _render_adjudication(
    request: HttpRequest, transcript: Transcript, *, status: int = 200, **kwargs: Any
) -> HttpResponse:
    if transcript.status not in reviews.ADJUDICATION_STATUSES:
        # Not (or no longer) disputed: the page would show reviews its viewer may not see.
        messages.info(
            request, f"Item #{transcript.pk} is not disputed; there is nothing to adjudicate."
        )
        return _redirect(request, reverse("adjudication_queue"))
    context = _adjudication_context(request, transcript, **kwargs)
    template = (
        "audit/adjudication.html#adjudication" if _is_htmx(request) else "audit/adjudication.html"
    )
    return render(request, template, context, status=status)


@require_GET
@adjudicator_required
def adjudicate_item(request: HttpRequest, pk: int) -> HttpResponse:
    transcript = get_object_or_404(Transcript.objects.select_related("batch"), pk=pk)
    return _render_adjudication(request, transcript)


@require_POST
@adjudicator_required
def submit_adjudication(request: HttpRequest, pk: int) -> HttpResponse:
    def done(outcome: reviews.ReviewOutcome) -> HttpResponse:
        t = outcome.transcript
        messages.success(request, f"Adjudicated step {t.step_number} of {t.session_id}.")
        following = reviews.next_disputed(request.user)
        if following is None:
            return _redirect(request, reverse("adjudication_queue"))
        url = reverse("adjudicate_item", args=[following.pk])
        if _is_htmx(request):
            return _push(_render_adjudication(request, following), url)
        return redirect(url)

    return _decide(
        request,
        pk,
        form_class=AdjudicationForm,
        decide=lambda t, **values: reviews.adjudicate(t, adjudicator=request.user, **values),
        render_page=_render_adjudication,
        done=done,
    )
