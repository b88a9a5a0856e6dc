"""Forms of the review screens: the queue's filters, the verdict and the adjudication forms.

Forms parse and check input; the rules themselves live in ``audit.review.workflow`` (the view
turns the domain's ValidationError into form errors, so the form and the domain cannot drift
apart).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from django import forms
from django.core import signing
from django.http import QueryDict

from audit.labels import DECISION_TYPES, MISBEHAVIOR_TYPES
from audit.models import MAX_ID, RATIONALE_MAX_LENGTH, Flag, Transcript, Verdict
from audit.review.queue import (
    CURSOR_MAX_LENGTH,
    DISCUSSION,
    FACETS,
    MINE,
    SORT_CHOICES,
    QueueFilters,
    defaults,
    oversees_queue,
)
from audit.review.visibility import status_choices
from audit.review.workflow import UNUSUAL, VerdictBasis, clamp_seconds

if TYPE_CHECKING:
    from django.contrib.auth.models import User

OPENED_SALT = "audit.review.opened"
# Item versions (PositiveIntegerField): PostgreSQL's integer range, held to on SQLite too.
MAX_VERSION = 2**31 - 1
# What a person may type: queue and dashboard filters match columns of at most 200 characters
# (audit.models); a rationale is shown in every history view of its item.
FILTER_MAX_LENGTH = 200
# Over the limit is an error that says so; the value is never cut to fit.
TOO_LONG = "at most %(limit_value)d characters (this has %(show_value)d), so it was not applied"


def _filter_text(label: str | None = None) -> forms.CharField:
    return forms.CharField(
        required=False,
        max_length=FILTER_MAX_LENGTH,
        label=label,
        error_messages={"max_length": TOO_LONG},
    )


class QueueFilterForm(forms.Form):
    """GET filters of the queue. Unknown values are kept (the data has values outside the
    vocabularies), so most facets are free text rendered as selects with counts.

    The status options are the viewer's (``visibility.status_choices``): values finer than a
    blind viewer may use are invalid and fall back to the default like any bad value."""

    q = _filter_text("Search")
    flag = forms.ChoiceField(required=False, choices=[("", "Any flag"), *Flag.choices])
    status = forms.ChoiceField(required=False)
    scope = forms.ChoiceField(
        required=False, choices=[("queue", "In the queue"), ("all", "All transcripts")]
    )
    mine = forms.ChoiceField(required=False, choices=[("", "Everyone's"), *MINE.items()])
    # Only for those who oversee the queue (``queue.oversees_queue``): for everyone else the
    # field is removed, so a value in their URL (a shared saved view) is dropped like an
    # unknown parameter.
    discussion = forms.ChoiceField(
        required=False, choices=[("", "Any"), *DISCUSSION.items()], label="Discussion"
    )
    category = _filter_text("Category")
    task = _filter_text("Task")
    worker = _filter_text("Worker")
    decision = _filter_text("Decision")
    mbtype = _filter_text("Misbehavior type")
    batch = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    session = _filter_text("Session")
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES)
    # Keyset cursors (``audit.review.queue``): plain fields, checked against the sort there, so
    # a stale or hand-edited one falls back to the first page like any bad value.
    after = forms.Field(required=False)
    before = forms.Field(required=False)
    # Old links' page numbers: read only to be dropped (the view redirects to the first page).
    page = forms.Field(required=False)

    def __init__(
        self,
        *args: Any,
        viewer: User | None = None,
        skipped: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.viewer = viewer
        self.skipped = skipped
        status = self.fields["status"]
        assert isinstance(status, forms.ChoiceField)
        status.choices = status_choices(viewer)
        if not oversees_queue(viewer):
            del self.fields["discussion"]

    def filters(self) -> QueueFilters:
        """Cleaned values, falling back to defaults for invalid ones (a bad bookmark should
        still show a queue, not an error page)."""
        self.is_valid()  # invalid fields are left out of cleaned_data
        data = self.cleaned_data
        default = defaults({"q": data.get("q") or "", "mine": data.get("mine") or ""})
        return QueueFilters(
            q=(data.get("q") or "").strip(),
            flag=data.get("flag") or default["flag"],
            status=data.get("status") or default["status"],
            scope=data.get("scope") or default["scope"],
            mine=data.get("mine") or "",
            discussion=data.get("discussion") or "",
            viewer=self.viewer,
            skipped=self.skipped,
            **{name: data.get(name) or "" for name in FACETS if name != "batch"},
            batch=data.get("batch"),
            session=(data.get("session") or "").strip(),
            sort=data.get("sort") or default["sort"],
            after=_cursor(data.get("after")),
            before=_cursor(data.get("before")),
        )

    def too_long(self) -> list[str]:
        """One sentence per filter left out for being over its length limit: unlike a stale
        value, which quietly falls back, a person typed it and must be told."""
        self.is_valid()
        return [
            f"{self.fields[name].label}: {error.messages[0]}"
            for name, errors in self.errors.as_data().items()
            for error in errors
            if error.code == "max_length"
        ]


def _cursor(value: Any) -> str:
    text = str(value or "")
    return text if len(text) <= CURSOR_MAX_LENGTH else ""


# --- verdicts ------------------------------------------------------------------------------------

YES_NO = [("", "—"), ("yes", "Yes, misbehavior"), ("no", "No misbehavior")]
MB_TYPE_CHOICES = [("", "—"), *((value, value) for value in MISBEHAVIOR_TYPES)]
DECISION_CHOICES = [("", "—"), *((value, value) for value in DECISION_TYPES)]


def opened_token(
    transcript: Transcript,
    *,
    status: str,
    at: float | None = None,
    own_review: int | None = None,
) -> str:
    """Signed note of when the page was rendered and which version it showed: the server's
    measure of seconds spent (the JS timer cannot be trusted), the "before" of a conflict
    view, and what a verdict depends on (``workflow.VerdictBasis``: the viewer's own current
    review, ``own_review``, and K). Signed, not encrypted (anyone can read it): it holds nothing
    the viewer was not shown, so ``status`` is the status as shown to them
    (``visibility.shown_status``), never final labels."""
    return signing.dumps(
        {
            "pk": transcript.pk,
            "at": time.time() if at is None else at,
            "v": transcript.version,
            "status": status,
            "own": own_review,
            "k": transcript.required_reviews,
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


class LabelsForm(forms.Form):
    """The label fields of both verdict screens; adjudication uses it as it is."""

    is_misbehavior = forms.ChoiceField(required=False, choices=YES_NO, label="Misbehavior?")
    misbehavior_type = forms.ChoiceField(
        required=False, choices=MB_TYPE_CHOICES, label="Misbehavior type"
    )
    correct_decision = forms.ChoiceField(
        required=False, choices=DECISION_CHOICES, label="Correct decision"
    )
    rationale = forms.CharField(
        required=False,
        max_length=RATIONALE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={
            "max_length": "At most %(limit_value)d characters (this has %(show_value)d): "
            "shorten it, nothing was saved."
        },
    )
    # Hidden: the templates show its errors with the form's own, so each says what is wrong in
    # words (the auditor never saw the field).
    based_on_version = forms.IntegerField(
        widget=forms.HiddenInput,
        min_value=1,
        max_value=MAX_VERSION,
        error_messages={
            "required": "This verdict does not say which version of the item it was made "
            "against (based_on_version is missing), so it was not saved. Reload the item "
            "and decide again.",
            **dict.fromkeys(
                ("invalid", "min_value", "max_value"),
                "This verdict names no valid version of the item (based_on_version must be "
                f"a whole number from 1 to {MAX_VERSION}), so it was not saved. Reload the "
                "item and decide again.",
            ),
        },
    )
    # Plain fields, not CharFields (which refuse a NUL): only measures of the time spent, so
    # junk in them is ignored below rather than refusing the verdict over a field the auditor
    # never saw.
    opened = forms.Field(required=False, widget=forms.HiddenInput)
    # The JS timer: used only when the signed ``opened`` is missing or forged.
    seconds_client = forms.Field(required=False, widget=forms.HiddenInput)
    # The second confirmation of labels that contradict each other (workflow.UNUSUAL).
    confirm_unusual = forms.BooleanField(required=False, label="I mean this combination")
    # The guidelines version the page showed (audit.team.guidelines), recorded on the review;
    # absent (an older page), the current version.
    guideline_version = forms.IntegerField(
        required=False,
        widget=forms.HiddenInput,
        min_value=1,
        max_value=MAX_VERSION,
        error_messages=dict.fromkeys(
            ("invalid", "min_value", "max_value"),
            "This verdict names no valid guidelines version (guideline_version must be a "
            f"whole number from 1 to {MAX_VERSION}), so it was not saved. Reload the page "
            "and decide again.",
        ),
    )

    def __init__(self, *args: Any, transcript: Transcript, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.transcript = transcript
        # No maxlength in the page: a browser cuts a paste to it without a word; the server's
        # error says how long the text is instead.
        self.fields["rationale"].widget.attrs.pop("maxlength", None)

    def clean_is_misbehavior(self) -> bool | None:
        return {"yes": True, "no": False}.get(self.cleaned_data.get("is_misbehavior") or "")

    def clean_opened(self) -> str:
        return str(self.cleaned_data.get("opened") or "")

    def clean_seconds_client(self) -> int | None:
        raw = str(self.cleaned_data.get("seconds_client") or "").strip()
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else None

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
            "confirm_unusual": data["confirm_unusual"],
            "guideline_version": data.get("guideline_version"),
        }

    @property
    def asks_to_confirm_unusual(self) -> bool:
        """Whether to offer "I mean this combination": the labels were refused as an
        ``unusual_combination``, or the auditor ticked it already."""
        if not self.is_bound:
            return False
        return self.has_error("correct_decision", code=UNUSUAL) or bool(
            self.data.get("confirm_unusual")
        )


def labels_initial(transcript: Transcript) -> dict[str, Any]:
    """Initial values: the imported ground truth (never the cached final labels, which could
    carry other auditors' verdicts to someone who has not reviewed yet)."""
    imported = transcript.imported_labels
    return {
        "is_misbehavior": "yes" if imported.is_misbehavior else "no",
        # Values outside the vocabularies are not offered: the auditor must choose one.
        "misbehavior_type": imported.misbehavior_type
        if imported.misbehavior_type in MISBEHAVIOR_TYPES
        else "",
        "correct_decision": imported.correct_decision
        if imported.correct_decision in DECISION_TYPES
        else "",
        "based_on_version": transcript.version,
    }


class VerdictForm(LabelsForm):
    verdict = forms.ChoiceField(
        choices=[(v.value, v.label) for v in Verdict if v != Verdict.ADJUDICATE]
    )

    def domain_kwargs(self) -> dict[str, Any]:
        return {
            "verdict": self.cleaned_data["verdict"],
            "basis": self.basis(),
            **super().domain_kwargs(),
        }

    def basis(self) -> VerdictBasis | None:
        """What the verdict depends on, as the page showed it (the signed ``opened``); None
        for a token without it (forged, or signed before it was kept): then any change since
        the page makes the verdict stale."""
        seen = self.seen()
        if not seen or "k" not in seen:
            return None
        own, k = seen.get("own"), seen.get("k")
        if not isinstance(k, int) or not (own is None or isinstance(own, int)):
            return None
        return VerdictBasis(own_review=own, required_reviews=k)


def rebased(form: LabelsForm, transcript: Transcript) -> QueryDict:
    """The submitted values against the current version: the conflict view offers them again
    so the auditor can re-decide without retyping (the view signs a new ``opened``)."""
    assert isinstance(form.data, QueryDict)  # a bound form of a POST
    data = form.data.copy()
    data["based_on_version"] = str(transcript.version)
    return data
