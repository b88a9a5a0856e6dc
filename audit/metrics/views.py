"""The dashboard (every logged-in user) and the per-auditor page.

Both read the same GET filters (batch, task, session, date range), so a filtered dashboard is a
bookmarkable URL; the figures region is a partial that htmx swaps when a filter changes.

Reviews are blind: an auditor who is neither an adjudicator nor staff sees only progress and the
as-imported figures. Filters narrow the selection to a session or a single item, so any figure
after review (a reviewed count, a label change, an agreement) would tell them another auditor's
verdict on an item that raising K can later reopen for their own review.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, QueryDict
from django.views.decorators.http import require_GET

from audit.htmx import render_screen
from audit.metrics import charts, monitors
from audit.metrics import summaries as metrics
from audit.metrics.dashboard import (
    ACCURACY_EMPTY,
    ACCURACY_TITLES,
    CATEGORY_SHORT,
    collect_blind_dashboard,
    collect_dashboard,
    confusion_grid,
    label_change_table,
    summary_columns,
    summary_rows,
)
from audit.metrics.forms import DashboardFilterForm
from audit.models import ImportBatch
from audit.permissions import AuditRequest, is_staff
from audit.review.visibility import blind_on_dashboard
from audit.rollup import Scope, scope, values


def filter_form(data: QueryDict | None) -> DashboardFilterForm:
    """The dashboard's filter form for ``data`` (None: unbound), with its choices (two
    queries); saved views of the dashboard are cleaned by it too (``audit.team.saved_views``)."""
    batches = list(ImportBatch.objects.order_by("-id").values_list("id", "file_name")[:200])
    # The task choices from the rollup: a DISTINCT over the transcripts reads every row.
    tasks = values("task_id", limit=200)
    return DashboardFilterForm(data or None, batches=batches, tasks=tasks)


def _filters(request: AuditRequest) -> tuple[DashboardFilterForm, Scope]:
    form = filter_form(request.GET)
    return form, scope(form.selection(), narrower=form.dates())


@require_GET
def dashboard(request: AuditRequest) -> HttpResponse:
    form, selected = _filters(request)
    session = (form.cleaned_data.get("session") or "").strip() if form.is_bound else ""
    blind = blind_on_dashboard(request.user)
    collect = collect_blind_dashboard if blind else collect_dashboard
    figures = collect(selected, session_id=session or None)
    changes = label_change_table(figures.label_changes)
    columns = {column["name"]: column for column in summary_columns(figures.summary)}
    confusion_rows = [
        {
            "basis": basis,
            "label": columns[basis]["label"],
            "n": columns[basis]["n"],
            "cells": cells,
            "chart": charts.heatmap(
                f"confusion-{basis}",
                matrix=confusion_grid(cells),
                rows=["misbehavior", "no misbehavior"],
                columns=["blocked", "approved"],
                title=f"Confusion matrix, {columns[basis]['label'].lower()}",
                row_title="truth",
                column_title="overseer decision",
            ),
        }
        for basis, cells in figures.confusion.items()
    ]
    context = {
        "nav": "dashboard",
        "blind": blind,
        "form": form,
        "query": request.GET.urlencode(),
        "figures": figures,
        "total": figures.progress["total"],
        "summary_columns": list(columns.values()),
        "summary_rows": summary_rows(figures.summary),
        "confusion_rows": confusion_rows,
        "changes": changes,
        "change_chart": charts.heatmap(
            "label-changes",
            matrix=changes["matrix"],
            rows=changes["originals"],
            columns=[CATEGORY_SHORT.get(final, final) for final in changes["finals"]],
            title="Label changes on settled records, imported category to settled category",
            row_title="imported (from the ground truth)",
            column_title="settled",
            cell=62,
        )
        if changes["rows"]
        else None,
        "accuracy_charts": [
            {
                "field": field,
                "title": ACCURACY_TITLES[field],
                "empty_label": ACCURACY_EMPTY[field],
                "rows": rows,
                # The paired bars draw both bases; a blind viewer gets the as-imported table.
                "chart": None
                if blind
                else charts.accuracy_bars(
                    f"accuracy-{field}",
                    groups=rows,
                    title=ACCURACY_TITLES[field],
                    empty_label=ACCURACY_EMPTY[field],
                ),
            }
            for field, rows in figures.accuracy.items()
        ],
        "progress_chart": charts.progress_chart(
            "progress-over-time", days=figures.over_time, title="Reviews per day"
        ),
    }
    return render_screen(request, "audit/dashboard.html", "figures", context)


@require_GET
def dashboard_monitors(request: AuditRequest) -> HttpResponse:
    """The dashboard's monitor evaluation (``audit.metrics.monitors``) for the same filters, on
    its own: the dashboard fetches it once it has loaded (htmx, on load), since it reads every
    settled item's signals and bootstraps them, seconds once tens of thousands are settled, and
    the rest of the dashboard should not wait for that. Kept in the cache until what it reads
    changes (``monitors.evaluate_cached``). After review, so not for a blind viewer (403)."""
    if blind_on_dashboard(request.user):
        raise PermissionDenied("The monitor evaluation is after review: blind auditors see none.")
    form, selected = _filters(request)
    report = monitors.evaluate_cached(
        selected.records, population=monitors.count_population(selected.counts)
    )
    context = {
        "nav": "dashboard",
        "form": form,
        "query": request.GET.urlencode(),
        "monitors": monitors.dashboard_section(report),
    }
    return render_screen(request, "audit/monitors.html", "section", context)


@require_GET
def auditors(request: AuditRequest) -> HttpResponse:
    form, selected = _filters(request)
    # Unfiltered, every review: no list of every transcript to check them against.
    written = selected.reviews
    staff = is_staff(request.user)
    if not staff:
        written = written.filter(auditor=request.user)
    context = {
        "nav": "dashboard",
        "form": form,
        "query": request.GET.urlencode(),
        "rows": metrics.auditor_stats(written),
        "staff": staff,
    }
    return render_screen(request, "audit/auditors.html", "figures", context)
