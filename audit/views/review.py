"""Review screens: the queue, the item page with its verdict panel, next/skip, adjudication.

One view serves a page and, for htmx requests, the fragment it swaps ("screen.html#region").
Every page works without JS: forms post and redirect (POST-redirect-GET); with htmx the next item
is swapped in and its URL pushed. Blindness (``reviews.may_see_reviews``) decides what of other
auditors' work a page shows.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from audit import reviews
from audit.forms import (
    ANY,
    FACETS,
    MAX_PAGE,
    OPEN,
    PAGE_SIZE,
    AdjudicationForm,
    QueueFilterForm,
    VerdictForm,
    labels_initial,
    queue_conditions,
    queue_queryset,
    rebased,
)
from audit.models import Flag, Review, Status, Transcript, Verdict
from audit.permissions import adjudicator_required, auditor_required
from audit.records import derive_category

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


# --- presentation helpers ------------------------------------------------------------------------


def pretty(value: Any) -> str:
    """JSON for people: indented, unicode kept. The template escapes it."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _obj(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


SCORE_KEYS = (
    "evidence_score",
    "counterfactual_score",
    "deliberation_score",
    "constitutional_score",
    "faithfulness_score",
    "reasoning_quality",
    "deception_risk",
)
DEBATE_SCORES = (
    "advocate_strength",
    "prosecutor_strength",
    "decision_confidence",
    "debate_quality",
)


def present_record(raw: str) -> dict[str, Any]:
    """The parts of a record the item page shows, with structure made readable."""
    try:
        record = json.loads(raw)
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    proposal, decision = _obj(record, "proposal"), _obj(record, "decision")
    cot, debate, context = (
        _obj(record, "cot_analysis"),
        _obj(record, "debate_result"),
        _obj(record, "context"),
    )
    services = context.get("available_services")
    reasons = cot.get("suspicion_reasons")

    def has(obj: dict[str, Any], key: str) -> bool:
        return obj.get(key) not in (None, {}, [], "")

    return {
        "proposal": {
            "action_type": _scalar(proposal.get("action_type")),
            "target": _scalar(proposal.get("target")),
            "worker_id": _scalar(proposal.get("worker_id")),
            "worker_reasoning": _scalar(proposal.get("worker_reasoning")),
            "parameters": pretty(proposal.get("parameters")) if has(proposal, "parameters") else "",
        },
        "decision": {
            "type": _scalar(decision.get("type")),
            "reason": _scalar(decision.get("reason")),
            "explanation": _scalar(decision.get("explanation")),
            "worker_message": _scalar(decision.get("worker_message")),
            "redirect_action": pretty(decision.get("redirect_action"))
            if has(decision, "redirect_action")
            else "",
        },
        "cot": {
            "present": bool(cot),
            "thinking_text": _scalar(cot.get("thinking_text")),
            "answer_text": _scalar(cot.get("answer_text")),
            "has_thinking": cot.get("has_thinking"),
            "deliberation_depth": _scalar(cot.get("deliberation_depth")),
            "is_suspicious": bool(cot.get("is_suspicious")),
            "suspicion_reasons": [_scalar(r) for r in reasons] if isinstance(reasons, list) else [],
            "scores": [
                (key.replace("_", " "), _number(cot.get(key))) for key in SCORE_KEYS if key in cot
            ],
        },
        "debate": {
            "present": bool(debate),
            "final_decision": _scalar(debate.get("final_decision")),
            "final_reasoning": _scalar(debate.get("final_reasoning")),
            "num_rounds": _scalar(debate.get("num_rounds")),
            "scores": [
                (key.replace("_", " "), _number(debate.get(key)))
                for key in DEBATE_SCORES
                if key in debate
            ],
        },
        "context": {
            "services": [_scalar(s) for s in services] if isinstance(services, list) else [],
            "incident_status": _scalar(context.get("incident_status")),
            "track_record": pretty(context.get("worker_track_record"))
            if has(context, "worker_track_record")
            else "",
        },
        "ground_truth": [(k, _json_literal(v)) for k, v in _obj(record, "ground_truth").items()],
        "labels": [(k, _json_literal(v)) for k, v in _obj(record, "labels").items()],
        "reward": _scalar(record.get("reward")),
        "timestamp": record.get("timestamp"),
    }


def _json_literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _push(response: HttpResponse, url: str) -> HttpResponse:
    response["HX-Push-Url"] = url
    return response


def _add_errors(form: Any, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errs in error.message_dict.items():
            form.add_error(field if field in form.fields else None, errs)
    else:
        form.add_error(None, error.messages)


# --- queue ---------------------------------------------------------------------------------------


def _facet_counts(values: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Counts per value of each facet, with every other filter applied (one query each)."""
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
    open_n = sum(n for s, n in by_status.items() if s not in reviews.SETTLED_STATUSES)
    out["status"] = [
        {"value": OPEN, "label": "Open (not settled)", "n": open_n},
        {"value": ANY, "label": "Any status", "n": sum(by_status.values())},
        *({"value": s.value, "label": s.label, "n": by_status.get(s.value, 0)} for s in Status),
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
                "active": current not in ("", OPEN),
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
@auditor_required
def queue(request: HttpRequest) -> HttpResponse:
    defaults = _queue_defaults()
    query = _clean_query(request.GET, defaults)
    if not _is_htmx(request) and query.urlencode() != request.GET.urlencode():
        # A form submitted without JS: show the same queue under its clean URL.
        return redirect(f"{reverse('queue')}?{query.urlencode()}" if query else reverse("queue"))
    form = QueueFilterForm(request.GET)
    values = form.cleaned()
    queryset = queue_queryset(values)
    total = queryset.count()
    pages = max(1, min(MAX_PAGE, -(-total // PAGE_SIZE)))
    page = min(values["page"], pages)
    offset = (page - 1) * PAGE_SIZE
    rows = list(queryset.only(*ROW_FIELDS)[offset : offset + PAGE_SIZE])
    for row in rows:
        row.flag_list = [flag for flag in Flag if getattr(row, f"flag_{flag.value}")]
    active = {key: value for key, value in query.items() if key != "page"}
    context = {
        "nav": "queue",
        "form": form,
        "values": values,
        "defaults": defaults,
        "selects": _facet_selects(values, _facet_counts(values), defaults),
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


def _timeline(transcript: Transcript) -> list[Transcript]:
    return list(
        Transcript.objects.filter(session_id=transcript.session_id, task_id=transcript.task_id)
        .order_by("step_number", "id")
        .only(
            "id",
            "step_number",
            "action_type",
            "decision_type",
            "final_alignment_category",
            "status",
            "in_queue",
        )[:TIMELINE_LIMIT]
    )


def _problems(transcript: Transcript) -> list[dict[str, str]]:
    """Each flag with its reason in words, as the importer wrote it."""
    labels = dict(Flag.choices)
    problems = transcript.problems if isinstance(transcript.problems, list) else []
    return [
        {
            "flag": str(p.get("flag", "")),
            "label": labels.get(p.get("flag"), str(p.get("flag", ""))),
            "detail": str(p.get("detail", "")),
        }
        for p in problems
        if isinstance(p, dict)
    ]


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


def _conflict(
    seen: dict[str, Any] | None, transcript: Transcript, all_reviews: list[Review], see_all: bool
) -> dict[str, Any]:
    """What changed since the auditor loaded the item.

    Blindness holds here too: a viewer who may not see others' reviews learns that the item
    changed, its new status and who wrote reviews in between, but not their verdicts or the new
    final labels; those appear only when the viewer could see them on the item page anyway.
    """
    seen_version = (seen or {}).get("v", 0)
    since = [r for r in all_reviews if r.based_on_version >= seen_version]
    return {
        "seen": seen or {},
        "seen_version": seen_version,
        "since": since,
        "see_all": see_all,
        "status_before": Status(seen["status"]).label
        if seen and seen.get("status") in Status.values
        else "unknown",
        "now": reviews.final_labels(transcript),
    }


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
    history = all_reviews if see_all else [r for r in all_reviews if r.auditor_id == user.pk]
    own = next(
        (r for r in current if r.auditor_id == user.pk and r.verdict != Verdict.ADJUDICATE), None
    )
    timeline = _timeline(transcript)
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
        "rec": present_record(transcript.raw),
        "problems": _problems(transcript),
        "flags": [flag for flag in Flag if getattr(transcript, f"flag_{flag.value}")],
        "timeline": timeline,
        "prev_step": prev_step,
        "next_step": next_step,
        "see_all": see_all,
        "history": _history_rows(transcript, history),
        "own": own,
        "lease": reviews.lease_for(transcript, auditor=user),
        "form": form,
        "mode": mode if mode in (Verdict.RELABEL, Verdict.UNSURE) else "",
        "closed": transcript.status == Status.ADJUDICATED,
        "conflict": _conflict(conflict_seen, transcript, all_reviews, see_all)
        if is_conflict
        else None,
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
        url = reverse("queue")
        if _is_htmx(request):
            response = HttpResponse()
            response["HX-Redirect"] = url
            return response
        return redirect(url)
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


@require_POST
@auditor_required
def submit_review(request: HttpRequest, pk: int) -> HttpResponse:
    transcript = get_object_or_404(Transcript.objects.select_related("batch"), pk=pk)
    form = VerdictForm(request.POST, transcript=transcript)
    if form.is_valid():
        try:
            outcome = reviews.submit_review(
                transcript, auditor=request.user, **form.domain_kwargs()
            )
        except reviews.StaleVersion:
            current = Transcript.objects.select_related("batch").get(pk=pk)
            return _render_item(
                request,
                current,
                form=VerdictForm(rebased(form, current), transcript=current),
                conflict_seen=form.seen(),
                is_conflict=True,
                status=409,
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            verdict = Verdict(outcome.review.verdict).label.lower()
            messages.success(
                request,
                f"Saved your {verdict} on step {transcript.step_number} of "
                f"{transcript.session_id}; status: {Status(outcome.state.status).label}.",
            )
            return _go_next(request)
    return _render_item(request, transcript, form=form, status=422)


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
        Transcript.objects.filter(status__in=(Status.DISPUTED, Status.ADJUDICATED))
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
        "problems": _problems(transcript),
        "flags": [flag for flag in Flag if getattr(transcript, f"flag_{flag.value}")],
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
        "open": transcript.status in (Status.DISPUTED, Status.ADJUDICATED),
        "original": reviews.original_labels(transcript),
        "original_category": derive_category(transcript.is_misbehavior, transcript.decision_type),
        "conflict": _conflict(conflict_seen, transcript, all_reviews, True)
        if is_conflict
        else None,
    }


def _render_adjudication(
    request: HttpRequest, transcript: Transcript, *, status: int = 200, **kwargs: Any
) -> HttpResponse:
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
    transcript = get_object_or_404(Transcript.objects.select_related("batch"), pk=pk)
    form = AdjudicationForm(request.POST, transcript=transcript)
    if form.is_valid():
        try:
            reviews.adjudicate(transcript, adjudicator=request.user, **form.domain_kwargs())
        except reviews.StaleVersion:
            current = Transcript.objects.select_related("batch").get(pk=pk)
            return _render_adjudication(
                request,
                current,
                form=AdjudicationForm(rebased(form, current), transcript=current),
                conflict_seen=form.seen(),
                is_conflict=True,
                status=409,
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(
                request,
                f"Adjudicated step {transcript.step_number} of {transcript.session_id}.",
            )
            following = (
                Transcript.objects.select_related("batch")
                .filter(status=Status.DISPUTED)
                .order_by("-priority", "id")
                .first()
            )
            if following is None:
                url = reverse("adjudication_queue")
                if _is_htmx(request):
                    response = HttpResponse()
                    response["HX-Redirect"] = url
                    return response
                return redirect(url)
            url = reverse("adjudicate_item", args=[following.pk])
            if _is_htmx(request):
                return _push(_render_adjudication(request, following), url)
            return redirect(url)
    return _render_adjudication(request, transcript, form=form, status=422)
