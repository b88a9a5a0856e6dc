"""Forms of the review screens: the queue's filters, the verdict and the adjudication forms.

Forms parse and check input; the rules themselves live in ``audit.review.workflow`` (the view
turns the domain's ValidationError into form errors, so the form and the domain cannot drift
apart).
"""

from __future__ import annotations

import time
from typing import Any

from django import forms
from django.core import signing
from django.db.models import Q, QuerySet

from audit.models import (
    DECISION_TYPES,
    MISBEHAVIOR_TYPES,
    SETTLED_STATUSES,
    Flag,
    Status,
    Transcript,
    Verdict,
)
from audit.review.workflow import SETTLED, clamp_seconds

OPENED_SALT = "audit.review.opened"

# --- queue ---------------------------------------------------------------------------------------

OPEN = "open"
ANY = "any"
SORTS = {
    "priority": ("priority", "Priority"),
    "step": ("step_number", "Step"),
    "session": ("session_id", "Session"),
    "timestamp": ("timestamp", "Time"),
    "id": ("id", "Import order"),
}
SORT_CHOICES = [
    (f"{sign}{key}", f"{label} {'↓' if sign else '↑'}")
    for key, (_field, label) in SORTS.items()
    for sign in ("-", "")
]
PAGE_SIZE = 50
# Offsets are bounded: deep pages cost a bounded OFFSET scan; beyond it, narrow the filters.
MAX_PAGE = 400

# status filter value -> the statuses it stands for (None: any). "settled" lumps together the
# ways an item can be settled: viewers who may not learn how (``reviews.knows_settlements``) get
# only it, never confirmed/relabeled/adjudicated.
STATUS_MEMBERS: dict[str, tuple[str, ...] | None] = {
    OPEN: tuple(s.value for s in Status if s not in SETTLED_STATUSES),
    ANY: None,
    **{s.value: (s.value,) for s in Status},
    SETTLED: tuple(s.value for s in SETTLED_STATUSES),
}


def status_choices(*, full: bool) -> list[tuple[str, str]]:
    """The status filter's options: every status for ``full`` viewers; for the rest the ways
    of being settled collapse into "Settled"."""
    head = [(OPEN, "Open (not settled)"), (ANY, "Any status")]
    if full:
        return [*head, *Status.choices, (SETTLED, "Settled (any way)")]
    return [
        *head,
        *((s.value, s.label) for s in Status if s not in SETTLED_STATUSES and s != Status.DISPUTED),
        (SETTLED, "Settled"),
        (Status.DISPUTED.value, Status.DISPUTED.label),
    ]


# facet name -> (column, label); each is a select whose options carry counts.
FACETS = {
    "category": ("alignment_category", "Category (as imported)"),
    "task": ("task_id", "Task"),
    "worker": ("worker_id", "Worker"),
    "decision": ("decision_type", "Decision"),
    "mbtype": ("misbehavior_type", "Misbehavior type"),
    "batch": ("batch_id", "Batch"),
}


class QueueFilterForm(forms.Form):
    """GET filters of the queue. Unknown values are kept (the data has values outside the
    vocabularies), so most facets are free text rendered as selects with counts.

    ``full_status`` (``reviews.knows_settlements``) offers every status; otherwise finer values
    than "settled" are invalid and fall back to the default like any bad value."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    flag = forms.ChoiceField(required=False, choices=[("", "Any flag"), *Flag.choices])
    status = forms.ChoiceField(required=False, choices=status_choices(full=False))
    scope = forms.ChoiceField(
        required=False, choices=[("queue", "Flagged (in queue)"), ("all", "All transcripts")]
    )
    category = forms.CharField(required=False, max_length=200)
    task = forms.CharField(required=False, max_length=200)
    worker = forms.CharField(required=False, max_length=200)
    decision = forms.CharField(required=False, max_length=200)
    mbtype = forms.CharField(required=False, max_length=200)
    batch = forms.IntegerField(required=False, min_value=1)
    session = forms.CharField(required=False, max_length=200)
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES)
    page = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE)

    def __init__(self, *args: Any, full_status: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = status_choices(full=full_status)

    def cleaned(self) -> dict[str, Any]:
        """Cleaned values, falling back to defaults for invalid ones (a bad bookmark should
        still show a queue, not an error page)."""
        self.is_valid()  # invalid fields are left out of cleaned_data
        data = self.cleaned_data
        return {
            "q": (data.get("q") or "").strip(),
            "flag": data.get("flag") or "",
            "status": data.get("status") or OPEN,
            "scope": data.get("scope") or "queue",
            **{name: data.get(name) or "" for name in FACETS if name != "batch"},
            "batch": data.get("batch"),
            "session": (data.get("session") or "").strip(),
            "sort": data.get("sort") or "-priority",
            "page": data.get("page") or 1,
        }


def queue_conditions(values: dict[str, Any], *, without: str | None = None) -> Q:
    """The filters as one Q; ``without`` leaves one facet out (for that facet's counts)."""
    cond = Q()
    if values["scope"] != "all":
        cond &= Q(in_queue=True)
    if values["q"]:
        cond &= Q(search_text__contains=values["q"].lower())
    if values["session"]:
        cond &= Q(session_id=values["session"])
    if without != "flag" and values["flag"]:
        cond &= Q(**{f"flag_{values['flag']}": True})
    if without != "status":
        members = STATUS_MEMBERS.get(values["status"], STATUS_MEMBERS[OPEN])
        if members is not None:
            cond &= Q(status__in=members)
    for name, (column, _label) in FACETS.items():
        if without != name and values[name] not in ("", None):
            cond &= Q(**{column: values[name]})
    return cond


def order_for(sort: str) -> list[str]:
    key = sort.lstrip("-")
    field = SORTS.get(key, SORTS["priority"])[0]
    desc = sort.startswith("-")
    first = f"-{field}" if desc else field
    return [first] if field == "id" else [first, "-id" if desc else "id"]


def queue_queryset(values: dict[str, Any]) -> QuerySet[Transcript]:
    return Transcript.objects.filter(queue_conditions(values)).order_by(*order_for(values["sort"]))


# --- verdicts ------------------------------------------------------------------------------------

YES_NO = [("", "—"), ("yes", "Yes, misbehavior"), ("no", "No misbehavior")]
MB_TYPE_CHOICES = [("", "—"), *((value, value) for value in MISBEHAVIOR_TYPES)]
DECISION_CHOICES = [("", "—"), *((value, value) for value in DECISION_TYPES)]


def opened_token(transcript: Transcript, *, status: str, at: float | None = None) -> str:
    """Signed note of when the page was rendered and which version it showed: the server's
    measure of seconds spent (the JS timer cannot be trusted) and the "before" of a conflict
    view. Signed, not encrypted (anyone can read it): it holds nothing the viewer was not
    shown, so ``status`` is the status as shown to them (``reviews.shown_status``), never
    final labels."""
    return signing.dumps(
        {
            "pk": transcript.pk,
            "at": time.time() if at is None else at,
            "v": transcript.version,
            "status": status,
        },
        salt=OPENED_SALT,
    )


def read_opened(token: str, *, pk: int) -> dict[str, Any] | None:
    try:
        data = signing.loads(token, salt=OPENED_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("pk") != pk:
        return None
    return data


class _LabelsForm(forms.Form):
    is_misbehavior = forms.ChoiceField(required=False, choices=YES_NO, label="Misbehavior?")
    misbehavior_type = forms.ChoiceField(
        required=False, choices=MB_TYPE_CHOICES, label="Misbehavior type"
    )
    correct_decision = forms.ChoiceField(
        required=False, choices=DECISION_CHOICES, label="Correct decision"
    )
    rationale = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    based_on_version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    opened = forms.CharField(required=False, widget=forms.HiddenInput)
    # The JS timer: used only when the signed ``opened`` is missing or forged.
    seconds_client = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, transcript: Transcript, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.transcript = transcript

    def clean_is_misbehavior(self) -> bool | None:
        return {"yes": True, "no": False}.get(self.cleaned_data.get("is_misbehavior") or "")

    def seconds_spent(self) -> int:
        opened = read_opened(self.cleaned_data.get("opened") or "", pk=self.transcript.pk)
        if opened is not None:
            return clamp_seconds(time.time() - float(opened.get("at", time.time())))
        return clamp_seconds(self.cleaned_data.get("seconds_client"))

    def seen(self) -> dict[str, Any] | None:
        return read_opened(self.data.get("opened") or "", pk=self.transcript.pk)

    def domain_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "is_misbehavior": data["is_misbehavior"],
            "misbehavior_type": data["misbehavior_type"],
            "correct_decision": data["correct_decision"],
            "rationale": data["rationale"],
            "seconds_spent": self.seconds_spent(),
            "based_on_version": data["based_on_version"],
        }


def labels_initial(transcript: Transcript) -> dict[str, Any]:
    """Initial values: the imported ground truth (never the cached final labels, which could
    carry other auditors' verdicts to someone who has not reviewed yet)."""
    mb = transcript.is_misbehavior
    return {
        "is_misbehavior": "yes" if mb else "no",
        "misbehavior_type": transcript.misbehavior_type
        if mb and transcript.misbehavior_type in MISBEHAVIOR_TYPES
        else "",
        "correct_decision": transcript.correct_decision
        if transcript.correct_decision in DECISION_TYPES
        else "",
        "based_on_version": transcript.version,
    }


class VerdictForm(_LabelsForm):
    verdict = forms.ChoiceField(
        choices=[(v.value, v.label) for v in Verdict if v != Verdict.ADJUDICATE]
    )

    def domain_kwargs(self) -> dict[str, Any]:
        return {"verdict": self.cleaned_data["verdict"], **super().domain_kwargs()}


class AdjudicationForm(_LabelsForm):
    pass


def rebased(form: _LabelsForm, transcript: Transcript) -> dict[str, Any]:
    """The submitted values against the current version: the conflict view offers them again
    so the auditor can re-decide without retyping (the view signs a new ``opened``)."""
    data = form.data.copy()
    data["based_on_version"] = str(transcript.version)
    return data
