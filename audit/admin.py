"""Django admin for every model, for staff: browse, export, publish, set overlap.

Labels never change here: transcripts are read-only (labels change only through reviews), reviews
are read-only for everyone including superusers (they are append-only history), and releases
cannot be changed or deleted. Staff see every audit model without per-model permissions, because
the staff role is what grants imports, exports and releases (README, Roles).

Blind review holds here too, because staff are often auditors as well: the admin shows verdicts
only for settled items (status confirmed, relabeled or adjudicated), whose reviews are over.
The Review list and pages hold only reviews of settled items; the Transcript list, its "final
category" filter and its pages show final labels only for settled items. The export actions are
the exception: an export is staff's deliberate act and carries every review (as the command-line
exports do).

"Publish release from selected" runs as a background task (``audit.tasks.publish_release_task``):
with "select all N matching" it passes the changelist's filter as a release filter spec when every
parameter has one (status, flag, task, worker, decision, category, batch), else the chosen ids.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import (  # type: ignore[attr-defined]  # stubs lack IS_FACETS_VAR
    ALL_VAR,
    IS_FACETS_VAR,
    ORDER_VAR,
    PAGE_VAR,
    SEARCH_VAR,
    ChangeList,
)
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import CharField, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.tasks import TaskResult, TaskResultStatus
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from audit import rollup
from audit.api import tokens as api_tokens
from audit.labels import Category
from audit.models import (
    ApiScope,
    ApiToken,
    Assignment,
    AssignmentTask,
    Comment,
    CommentRevision,
    DiscussionMark,
    Flag,
    GuidelineVersion,
    ImportBatch,
    ImportJob,
    Lease,
    RejectedLine,
    Release,
    Review,
    SavedView,
    Transcript,
    TranscriptQuerySet,
    parse_id,
)
from audit.permissions import is_staff
from audit.publish import export as exporters
from audit.publish import selection
from audit.publish.release import ReleaseError, check_new
from audit.review import visibility
from audit.review.forms import FILTER_MAX_LENGTH
from audit.review.workflow import set_required_reviews
from audit.tasks import publish_release_task

MAX_REQUIRED_REVIEWS = 10
FINAL_FIELDS = (
    "final_is_misbehavior",
    "final_misbehavior_type",
    "final_correct_decision",
    "final_alignment_category",
)


class ListFiltersOnly(ChangeList):
    """A changelist that filters only by its own list filters. Django's admin also takes a
    lookup on any local field from the URL (``?id__in=...``, ``?final_alignment_category=...``):
    that would show final labels of unsettled items by filtering on them (blind review), and
    sends values no filter checked to the database (an id past SQLite's integer range is an
    OverflowError). Such a URL is refused with 400, as Django refuses a relation it does not
    allow. The plain and ``__exact`` forms of a text field's filter stay allowed (the filter
    links say ``?task_id=``, the release filter mapping ``?task_id__exact=``): a text value,
    NUL refused before, is safe to compare on both databases."""

    def get_filters(self, request: HttpRequest) -> Any:
        specs, has_filters, remaining, may_have_duplicates, has_active = super().get_filters(
            request
        )
        refused = sorted(set(remaining) - _text_filter_lookups(self.model, self.list_filter))
        if refused:
            raise DisallowedModelAdminLookup(f"Filtering by {', '.join(refused)} is not offered")
        return specs, has_filters, remaining, may_have_duplicates, has_active


def _text_filter_lookups(model: Any, list_filter: Any) -> set[str]:
    lookups = set()
    for spec in list_filter:
        if isinstance(spec, tuple):
            spec = spec[0]
        if isinstance(spec, str):
            field = model._meta.get_field(spec)
            if isinstance(field, CharField):
                lookups |= {spec, f"{spec}__exact"}
    return lookups


class RolledUpCount(Paginator):
    """The transcripts' changelist pages when nothing filters them: the count (the pages, "N
    transcripts") is the rollup's (``rollup.total``), the same transcripts, rather than a count
    of every row (at 1,000,000 records on PostgreSQL, 62 ms of a 100-250 ms page)."""

    @cached_property
    def count(self) -> int:
        return rollup.total()


# What a changelist URL may hold and still show every row: the ordering, the page, "show all"
# and the filters' counts switch, and an empty search. (A popup's parameters can narrow it.)
_ROW_NEUTRAL_PARAMS = frozenset({ALL_VAR, ORDER_VAR, PAGE_VAR, IS_FACETS_VAR, SEARCH_VAR})


def _unfiltered(request: HttpRequest) -> bool:
    """Whether the changelist shows every row: no filter and no search in its URL."""
    return not request.GET.get(SEARCH_VAR) and set(request.GET) <= _ROW_NEUTRAL_PARAMS


class RolledUpValuesFilter(admin.AllValuesFieldListFilter):
    """Django's "all values" filter with its choices read from the rollup (``audit.rollup``):
    Django's own choices are a DISTINCT over every transcript row. The same choices (the values
    visible transcripts have), the same parameters."""

    def __init__(
        self,
        field: Any,
        request: HttpRequest,
        params: Any,
        model: Any,
        model_admin: Any,
        field_path: str,
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        # Replaces the lazy DISTINCT queryset before anything runs it.
        self.lookup_choices = rollup.values(field_path)  # type: ignore[assignment]


class DateFilter(admin.DateFieldListFilter):
    """Django's date filter, refusing a moment the database cannot hold: the URL may carry any
    offset, and ``0001-01-01T00:00+14:00`` is a year before 1 in UTC, an OverflowError when
    SQLite's adapter converts it. Django answers IncorrectLookupParameters as for any bad date."""

    def __init__(self, field: Any, request: HttpRequest, params: Any, *args: Any, **kwargs: Any):
        super().__init__(field, request, params, *args, **kwargs)
        for key in (self.lookup_kwarg_since, self.lookup_kwarg_until):
            given: list[Any] = self.used_parameters.get(key) or []  # type: ignore[assignment]
            for value in given:
                try:
                    moment = field.to_python(value)
                    if isinstance(moment, dt.datetime) and timezone.is_aware(moment):
                        moment.astimezone(dt.UTC)
                except ValidationError as error:
                    raise IncorrectLookupParameters(error) from error
                except OverflowError as error:
                    raise IncorrectLookupParameters(f"{value!r}: out of range") from error


class StaffReadOnly(admin.ModelAdmin):
    """Viewable by staff, never added, changed or deleted through the admin. Changelists filter
    only by their list filters (``ListFiltersOnly``), refuse a NUL in the query string and a
    selection that is not row ids, and leave out a search over the length limit, saying so."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ListFiltersOnly

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # PostgreSQL refuses a NUL in any text parameter (DataError, a 500); no value holds one.
        if any("\x00" in key + "".join(values) for key, values in request.GET.lists()):
            return HttpResponseBadRequest("A filter or search holds a NUL character.")
        chosen = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if not all(parse_id(value) is not None for value in chosen):
            # Django's action would pass them to pk__in: a ValueError or, past SQLite's range,
            # an OverflowError (a 500).
            return HttpResponseBadRequest("The selection holds a value that is not a row id.")
        search = request.GET.get(SEARCH_VAR, "")
        if len(search) > FILTER_MAX_LENGTH:
            # Said, and left out: the list without it, never a search for a cut-down text.
            self.message_user(
                request,
                f"Search: at most {FILTER_MAX_LENGTH} characters (this has {len(search)}), "
                "so it was not applied.",
                messages.ERROR,
            )
            query = request.GET.copy()
            del query[SEARCH_VAR]
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        return super().changelist_view(request, extra_context)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_staff(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_staff(request.user)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ImportBatch)
class ImportBatchAdmin(StaffReadOnly):
    list_display = (
        "id",
        "file_name",
        "created_at",
        "created_by",
        "source",
        "lines",
        "imported",
        "duplicates",
        "rejected",
        "required_reviews",
    )
    list_filter = ("source", ("created_at", DateFilter))
    search_fields = ("file_name", "sha256")
    list_select_related = ("created_by",)


@admin.register(RejectedLine)
class RejectedLineAdmin(StaffReadOnly):
    list_display = ("batch", "line_number", "error")
    list_filter = ("batch",)
    search_fields = ("error",)
    list_select_related = ("batch",)


@admin.register(ImportJob)
class ImportJobAdmin(StaffReadOnly):
    list_display = ("id", "file_name", "created_at", "created_by", "state", "batch")
    list_filter = ("state",)
    list_select_related = ("created_by", "batch")


@admin.register(Lease)
class LeaseAdmin(StaffReadOnly):
    list_display = ("transcript", "auditor", "claimed_at", "expires_at")
    list_select_related = ("transcript", "auditor")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Freeing a stuck claim is the one write staff may need here.
        return is_staff(request.user)


@admin.register(Review)
class ReviewAdmin(StaffReadOnly):
    list_display = (
        "id",
        "transcript",
        "auditor",
        "verdict",
        "is_misbehavior",
        "misbehavior_type",
        "correct_decision",
        "seconds_spent",
        "created_at",
        "is_current",
    )
    list_filter = ("verdict", ("created_at", DateFilter))
    search_fields = ("rationale", "transcript__session_id")
    list_select_related = ("transcript", "auditor")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Blind review: verdicts on an item are shown once it is settled (module docstring).
        return visibility.settled_reviews(super().get_queryset(request))

    @admin.display(boolean=True, description="current")
    def is_current(self, review: Review) -> bool:
        return review.superseded_by_id is None


class FlagFilter(admin.SimpleListFilter):
    title = "flag"
    parameter_name = "flag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Flag.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value in Flag.values:
            assert isinstance(queryset, TranscriptQuerySet)
            return queryset.with_flag(value)
        return queryset


class SettledFinalCategoryFilter(admin.SimpleListFilter):
    """Final category, over settled items only: on others it would reveal verdicts in progress."""

    title = "final category (settled items)"
    parameter_name = "final_category"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Category.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value in Category.values:
            assert isinstance(queryset, TranscriptQuerySet)
            return visibility.settled_only(queryset).filter(final_alignment_category=value)
        return queryset


class PublishReleaseForm(forms.Form):
    version = forms.CharField(max_length=50, help_text="Semantic version X.Y.Z, e.g. 1.0.0")
    include_unreviewed = forms.BooleanField(
        required=False, help_text="Also write data/unreviewed.jsonl (labels as imported)."
    )

    def clean_version(self) -> str:
        version = self.cleaned_data["version"].strip()
        try:
            check_new(version, settings.RELEASES_ROOT)
        except ReleaseError as exc:
            raise forms.ValidationError(str(exc)) from None
        return version


class RequiredReviewsForm(forms.Form):
    k = forms.IntegerField(
        label="Reviews needed (K)", min_value=1, max_value=MAX_REQUIRED_REVIEWS, initial=2
    )


def _plain(queryset: QuerySet[Transcript]) -> TranscriptQuerySet:
    """The changelist's selection as a plain queryset: the changelist's own carries its
    ordering, deferred fields and search joins, which exports and releases must not inherit
    (a search join can repeat rows)."""
    return Transcript.objects.filter(pk__in=queryset.values("pk"))


def _timestamp() -> str:
    return timezone.now().strftime("%Y%m%d-%H%M%S")


@admin.register(Transcript)
class TranscriptAdmin(StaffReadOnly):
    list_display = (
        "id",
        "session_id",
        "step_number",
        "task_id",
        "worker_id",
        "decision_type",
        "alignment_category",
        "final_category",
        "status",
        "review_count",
        "required_reviews",
        "priority",
    )
    list_filter = (
        "status",
        FlagFilter,
        "in_queue",
        SettledFinalCategoryFilter,
        ("alignment_category", RolledUpValuesFilter),
        ("decision_type", RolledUpValuesFilter),
        ("task_id", RolledUpValuesFilter),
        ("worker_id", RolledUpValuesFilter),
        ("required_reviews", RolledUpValuesFilter),
        "batch",
    )
    search_fields = ("session_id", "task_id", "fingerprint", "target")
    list_select_related = ()
    show_full_result_count = False
    actions = (
        "export_reviewed_jsonl",
        "export_all_jsonl",
        "export_summary",
        "publish_release_action",
        "require_reviews",
    )
    readonly_fields = ("raw",)

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        if _unfiltered(request):
            return RolledUpCount(queryset, per_page, orphans, allow_empty_first_page)
        return super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and match.url_name == "audit_transcript_change":
            # The change page shows the record, from its own table (TranscriptText).
            return queryset.select_related("text")
        return queryset.defer("problems")

    @admin.display(description="raw")
    def raw(self, transcript: Transcript) -> str:
        """The record's line as imported (the item page's raw record)."""
        return transcript.text.raw

    @admin.display(description="final category")
    def final_category(self, transcript: Transcript) -> str:
        # Blind review: before an item settles its final labels may carry a verdict.
        if transcript.is_settled:
            return transcript.final_alignment_category
        return "—"

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        exclude = tuple(super().get_exclude(request, obj) or ())
        if obj is not None and not obj.is_settled:
            exclude += FINAL_FIELDS
        return exclude

    # --- exports -------------------------------------------------------------------------------

    def _stream(self, request: HttpRequest, queryset: QuerySet, *, reviewed_only: bool) -> Any:
        chosen = _plain(queryset)
        selected = chosen.count()
        records = chosen.settled() if reviewed_only else chosen
        count = records.count() if reviewed_only else selected
        self.message_user(
            request,
            f"Exported {count} of {selected} selected transcripts"
            + (" (reviewed only)." if reviewed_only else " (all, unreviewed ones as imported)."),
            messages.SUCCESS,
        )
        kind = "reviewed" if reviewed_only else "all"
        response = StreamingHttpResponse(
            exporters.iter_encoded_lines(records), content_type="application/jsonl; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="transcripts-{kind}-{_timestamp()}.jsonl"'
        )
        return response

    @admin.action(description="Export selected (reviewed only) as JSONL")
    def export_reviewed_jsonl(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return self._stream(request, queryset, reviewed_only=True)

    @admin.action(description="Export selected (all) as JSONL")
    def export_all_jsonl(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return self._stream(request, queryset, reviewed_only=False)

    @admin.action(description="Export summary (JSON) of selected")
    def export_summary(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        chosen = _plain(queryset)
        counts = exporters.selection_counts(chosen)
        summary = exporters.build_summary(chosen, files={"selected": chosen})
        self.message_user(
            request,
            f"Summary of {counts['total']} selected transcripts "
            f"({counts['reviewed']} reviewed, {counts['unreviewed']} not).",
            messages.SUCCESS,
        )
        response = HttpResponse(exporters.dump_summary(summary), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="summary-{_timestamp()}.json"'
        return response

    # --- actions with a form -------------------------------------------------------------------

    def _form_page(
        self,
        request: HttpRequest,
        *,
        form: forms.Form,
        action: str,
        title: str,
        intro: str,
        submit_label: str,
    ) -> TemplateResponse:
        select_across = request.POST.get("select_across") == "1"
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "intro": intro,
            "form": form,
            "action": action,
            # With "select all N matching", the changelist's query string carries the
            # selection; one id only satisfies the admin's "something is selected" check.
            "selected": selected[:1] if select_across else selected,
            "select_across": select_across,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_url": request.get_full_path(),
            "submit_label": submit_label,
        }
        return TemplateResponse(request, "admin/audit/transcript/action_form.html", context)

    @admin.action(description="Publish release from selected")
    def publish_release_action(self, request: HttpRequest, queryset: QuerySet) -> Any:
        chosen = _plain(queryset)
        form = PublishReleaseForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            version = form.cleaned_data["version"]
            select_across = request.POST.get("select_across") == "1"
            changelist = {
                key: request.GET.getlist(key)
                for key in sorted(request.GET)
                if key not in selection.CHANGELIST_DISPLAY
            }
            matching = selection.from_changelist(changelist) if select_across else None
            spec = matching.as_dict() if matching is not None else None
            filters: dict[str, Any] = {
                "source": "admin",
                "changelist": changelist,
                "selection": "all matching" if select_across else "chosen by hand",
            }
            if spec is not None:
                filters["filter"] = spec
                records: dict[str, Any] = {"filter": spec}
            else:
                records = {"pks": list(chosen.order_by("pk").values_list("pk", flat=True))}
            result = publish_release_task.enqueue(
                version,
                records,
                include_unreviewed=form.cleaned_data["include_unreviewed"],
                user_id=request.user.pk,
                filters=filters,
            )
            self._report_publish(request, version, result)
            return None
        counts = exporters.selection_counts(chosen)
        return self._form_page(
            request,
            form=form,
            action="publish_release_action",
            title="Publish release",
            intro=(
                f"{counts['total']} transcripts selected: {counts['reviewed']} reviewed, "
                f"{counts['unreviewed']} not. A release is immutable once published. It is "
                "written in the background and appears under Releases when done."
            ),
            submit_label="Publish",
        )

    def _report_publish(self, request: HttpRequest, version: str, result: TaskResult) -> None:
        # A task backend that runs tasks at once (ImmediateBackend, in development) has finished
        # by now; a worker backend has only queued it.
        if result.status == TaskResultStatus.SUCCESSFUL:
            outcome = result.return_value
            if "error" in outcome:  # a ReleaseError: the task's own refusal, its message as is
                self.message_user(
                    request,
                    f"Release {version} was not published: {outcome['error']}",
                    messages.ERROR,
                )
                return
            counts = outcome["counts"]
            self.message_user(
                request,
                f"Published release {outcome['version']}: {counts.get('reviewed', 0)} reviewed"
                + (f" and {counts['unreviewed']} unreviewed" if "unreviewed" in counts else "")
                + f" records from {counts.get('selection', 0)} selected.",
                messages.SUCCESS,
            )
            return
        if result.status == TaskResultStatus.FAILED:
            # A crash, not a refusal: there is no result, and the last line of the traceback is
            # the exception with its message.
            error = result.errors[-1] if result.errors else None
            reason = error.traceback.strip().splitlines()[-1] if error else "unknown error"
            self.message_user(
                request, f"Release {version} was not published: {reason}", messages.ERROR
            )
            return
        self.message_user(
            request,
            f"Publishing release {version} in the background; it will appear in Releases "
            "when done.",
            messages.INFO,
        )

    @admin.action(description="Require K independent reviews for selected")
    def require_reviews(self, request: HttpRequest, queryset: QuerySet) -> Any:
        chosen = _plain(queryset)
        form = RequiredReviewsForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            k = form.cleaned_data["k"]
            changed = set_required_reviews(chosen, k)
            self.message_user(
                request, f"{changed} transcripts now need {k} reviews.", messages.SUCCESS
            )
            return None
        return self._form_page(
            request,
            form=form,
            action="require_reviews",
            title="Require K reviews",
            intro=f"{chosen.count()} transcripts selected.",
            submit_label="Set K",
        )


@admin.register(Release)
class ReleaseAdmin(StaffReadOnly):
    list_display = ("version", "created_at", "created_by", "counts_text", "download")
    list_select_related = ("created_by",)
    readonly_fields = ("download",)

    @admin.display(description="counts")
    def counts_text(self, release: Release) -> str:
        return ", ".join(f"{key} {value}" for key, value in release.counts.items())

    @admin.display(description="archive")
    def download(self, release: Release) -> str:
        url = reverse("release_download", args=[release.version])
        return format_html('<a href="{}">zip</a> · <a href="{}?format=tar.gz">tar.gz</a>', url, url)


# --- API tokens (issue 13) -----------------------------------------------------------------------


class ApiTokenForm(forms.ModelForm):
    """A new token: whose (superusers choose; other staff make their own), what for, scopes.
    The secret is made on save and shown once (``ApiTokenAdmin.response_add``)."""

    scope_choices = forms.MultipleChoiceField(
        choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple, label="Scopes"
    )

    # The admin's request, set on the class ``ApiTokenAdmin.get_form`` makes per request.
    request: HttpRequest | None = None

    class Meta:
        model = ApiToken
        fields = ("user", "name")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.request is not None and not self.request.user.is_superuser:
            del self.fields["user"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        user: Any = cleaned.get("user") or (self.request.user if self.request else None)
        for scope in cleaned.get("scope_choices") or ():
            if user is not None and (refusal := api_tokens.scope_refusal(user, scope)):
                raise ValidationError(f"Cannot make a {scope} token: {refusal}.")
        return cleaned


ISSUED_PAGE = """{% extends "admin/base_site.html" %}
{% block content %}
<h1>API token for {{ token.user.username }}</h1>
<p>Scopes: {{ token.scopes }}. Copy it now: only its sha256 is kept, so it cannot be shown
again.</p>
<p><code>{{ secret }}</code></p>
<p>Use it as <code>Authorization: Bearer {{ token.prefix }}…</code>.
<a href="{{ back }}">Back to the tokens</a></p>
{% endblock %}
"""


@admin.register(ApiToken)
class ApiTokenAdmin(StaffReadOnly):
    """Tokens are made here (the secret shown once), listed and revoked; never edited or
    deleted, so a revoked token's history stays."""

    list_display = (
        "prefix_shown",
        "user",
        "name",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("scopes", ("created_at", DateFilter))
    list_select_related = ("user",)
    search_fields = ("prefix", "name", "user__username")
    readonly_fields = list_display
    fields = readonly_fields
    actions = ("revoke_tokens",)

    @admin.display(description="token")
    def prefix_shown(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_staff(request.user)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            chosen = ["name", "scope_choices"]
            return ["user", *chosen] if request.user.is_superuser else chosen
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)

        return type("ApiTokenAddForm", (ApiTokenForm,), {"request": request})

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        user: Any = form.cleaned_data.get("user") or request.user
        issued = api_tokens.issue_token(
            user, scopes=form.cleaned_data["scope_choices"], name=form.cleaned_data["name"]
        )
        obj.pk = issued.token.pk
        request._issued_token = issued  # type: ignore[attr-defined]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        issued = getattr(request, "_issued_token", None)
        return super().log_addition(request, issued.token if issued else obj, message)

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: Any = None
    ) -> HttpResponse:
        issued = request._issued_token  # type: ignore[attr-defined]
        page = engines["django"].from_string(ISSUED_PAGE)
        context = {
            **self.admin_site.each_context(request),
            "title": "API token made",
            "token": issued.token,
            "secret": issued.secret,
            "back": reverse("admin:audit_apitoken_changelist"),
        }
        response = TemplateResponse(request, page, context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = api_tokens.revoke(queryset)
        self.message_user(request, f"Revoked {count} token{'s' if count != 1 else ''}.")


# Guidelines --------------------------------------------------------------------------------------
# Read-only here: a version is edited (as a new one) on the guidelines page, which checks for
# concurrent edits and gaps (audit.team.guidelines.save_version).


@admin.register(GuidelineVersion)
class GuidelineVersionAdmin(StaffReadOnly):
    list_display = ("number", "created_at", "created_by", "note")
    list_select_related = ("created_by",)
    search_fields = ("note", "text")
    fields = ("number", "created_at", "created_by", "note", "text")
    readonly_fields = fields


# Assignments -------------------------------------------------------------------------------------
# Made here by the same form as the assignments page (which calls audit.team.assignments.assign);
# never changed or deleted: its tasks were fixed when it was made.


class AssignmentTaskInline(admin.TabularInline):
    model = AssignmentTask
    fields = ("transcript", "auditor")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AssignmentTask]:
        return super().get_queryset(request).select_related("transcript", "auditor")

    # Read-only: no field to edit, no row to add or delete, and the assignment's change view
    # refuses every POST (StaffReadOnly).
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_staff(request.user)


@admin.register(Assignment)
class AssignmentAdmin(StaffReadOnly):
    list_display = ("name", "created_at", "created_by", "k", "items", "progress")
    list_select_related = ("created_by",)
    search_fields = ("name",)
    fields = (
        "name",
        "created_at",
        "created_by",
        "selection",
        "sample",
        "seed",
        "k",
        "items",
        "progress_per_auditor",
    )
    readonly_fields = fields
    inlines = (AssignmentTaskInline,)

    @admin.display(description="tasks finished (n = tasks)")
    def progress(self, assignment: Assignment) -> str:
        from audit.team import assignments

        counts = assignments.total(assignments.progress([assignment])[assignment.pk])
        return (
            f"{counts.finished} of {counts.total} ({counts.done} done, "
            f"{counts.settled_without} settled without their auditor)"
        )

    @admin.display(description="progress per auditor (n = their tasks)")
    def progress_per_auditor(self, assignment: Assignment) -> str:
        from audit.team import assignments

        (entry,) = assignments.report([assignment])
        return "; ".join(assignments.report_lines(entry)[1:]).strip() or "no tasks"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_staff(request.user)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        from django.core.exceptions import PermissionDenied
        from django.shortcuts import redirect

        from audit.team.assignment_views import AssignmentForm

        if not self.has_add_permission(request):
            raise PermissionDenied
        user: Any = request.user  # staff: a real user (has_add_permission)
        form = AssignmentForm(request.POST or None, viewer=user)
        status = 200
        if request.method == "POST":
            result = form.save(by=user) if form.is_valid() else None
            if result is not None:
                self.log_addition(request, result.assignment, "made by the assignment form")
                self.message_user(request, result.describe(), messages.SUCCESS)
                return redirect("admin:audit_assignment_change", result.assignment.pk)
            status = 422
        context = {
            **self.admin_site.each_context(request),
            "title": "Add assignment",
            "form": form,
            "opts": self.opts,
        }
        return TemplateResponse(request, "audit/assignments_admin_add.html", context, status=status)


# Discussion --------------------------------------------------------------------------------------
# Read-only: comments and marks are append-only history (audit.team.discussion). Blind like the
# reviews: the admin shows the discussion of settled items only, whoever the staff member is (an
# open item's thread is read on its item page, under visibility.may_read_discussion).


def _settled_items() -> QuerySet:
    """The ids of the settled items, as the admin's blind rule (``visibility.settled_only``)."""
    return visibility.settled_only(Transcript.objects.all()).values("pk")


@admin.register(Comment)
class CommentAdmin(StaffReadOnly):
    list_display = ("id", "transcript", "author", "created_at")
    list_filter = (("created_at", DateFilter),)
    list_select_related = ("transcript", "author")
    fields = ("transcript", "author", "created_at", "revisions")
    readonly_fields = fields

    @admin.display(description="texts (oldest first; the last is current)")
    def revisions(self, comment: Comment) -> str:
        rows = CommentRevision.objects.filter(comment=comment).order_by("number")
        return format_html_join(
            "", "<p>{}. {}: {}</p>", ((r.number, r.created_at, r.text) for r in rows)
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(transcript__in=_settled_items())


@admin.register(DiscussionMark)
class DiscussionMarkAdmin(StaffReadOnly):
    list_display = ("transcript", "set_by", "set_at", "cleared_by", "cleared_at")
    list_filter = (("set_at", DateFilter),)
    list_select_related = ("transcript", "set_by", "cleared_by")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(transcript__in=_settled_items())


# Saved views -------------------------------------------------------------------------------------


@admin.register(SavedView)
class SavedViewAdmin(StaffReadOnly):
    """Saved views hold filters only; owners delete theirs on /views/ (staff, shared ones)."""

    list_display = ("name", "screen", "owner", "shared", "created_at")
    list_filter = ("screen", "shared")
    list_select_related = ("owner",)
    fields = ("name", "screen", "owner", "shared", "query", "created_at")
    readonly_fields = fields
