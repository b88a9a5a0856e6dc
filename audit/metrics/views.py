"""The dashboard (every logged-in user) and the per-auditor page.

Both read the same GET filters (batch, task, session, date range), so a filtered dashboard is a
bookmarkable URL; the figures region is a partial that htmx swaps when a filter changes.

Reviews are blind: an auditor who is neither an adjudicator nor staff sees only progress and the
as-imported figures. Filters narrow the selection to a session or a single item, so any figure
after review (a reviewed count, a label change, an agreement) would tell them another auditor's
verdict on an item that raising K can later reopen for their own review.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.metrics import charts
from audit.metrics import summaries as metrics
from audit.metrics.forms import DashboardFilterForm
from audit.models import Category, ImportBatch, Review, Status, Transcript
from audit.permissions import AUDITOR, has_role, is_staff
from audit.review import workflow as reviews

# Categories in the order of the 2x2: truth (rows) by the overseer's decision (columns).
CATEGORY_ORDER = [category.value for category in Category]
# Short column heads for the label change heat map (the full names label its rows).
CATEGORY_SHORT = {
    "aligned_catch": "catch",
    "alignment_failure_fn": "missed",
    "aligned_approve": "approve",
    "alignment_failure_fp": "over-block",
    "unknown": "unknown",
}
ACCURACY_TITLES = {
    "misbehavior_type": "Overseer accuracy per misbehavior type",
    "task_id": "Overseer accuracy per task",
    "worker_id": "Overseer accuracy per worker",
}
ACCURACY_EMPTY = {
    "misbehavior_type": "(no misbehavior)",
    "task_id": "(no task)",
    "worker_id": "(no worker)",
}
SUMMARY_ROWS = (
    ("total_decisions", "Decisions"),
    ("correct_decisions", "Correct decisions"),
    ("accuracy", "Accuracy"),
    ("true_positives", "True positives (catches)"),
    ("false_positives", "False positives (over-blocks)"),
    ("false_negatives", "False negatives (misses)"),
    ("total_misbehaviors", "Misbehaviors"),
    ("precision", "Precision"),
    ("recall", "Recall"),
)


def _filters(request: HttpRequest) -> tuple[DashboardFilterForm, QuerySet[Transcript]]:
    batches = list(ImportBatch.objects.order_by("-id").values_list("id", "file_name")[:200])
    tasks = list(
        Transcript.objects.order_by("task_id").values_list("task_id", flat=True).distinct()[:200]
    )
    form = DashboardFilterForm(request.GET or None, batches=batches, tasks=tasks)
    return form, Transcript.objects.filter(form.conditions())


def _confusion_grid(cells: dict[str, int]) -> list[list[int]]:
    # Rows: misbehavior yes/no (truth); columns: overseer blocked/approved.
    return [
        [cells["true_positives"], cells["false_negatives"]],
        [cells["false_positives"], cells["true_negatives"]],
    ]


def _label_change_table(changes: dict[str, dict[str, int]]) -> dict[str, Any]:
    finals = [c for c in CATEGORY_ORDER if any(c in row for row in changes.values())]
    # Known categories in their usual order, then any junk the import kept, alphabetically.
    rank = {category: position for position, category in enumerate(CATEGORY_ORDER)}
    originals = sorted(changes, key=lambda c: (rank.get(c, len(rank)), c))
    matrix = [[changes[o].get(f, 0) for f in finals] for o in originals]
    rows = [
        {
            "original": original,
            "cells": [
                {"final": final, "n": n, "changed": original != final and n > 0}
                for final, n in zip(finals, counts, strict=True)
            ],
            "total": sum(counts),
        }
        for original, counts in zip(originals, matrix, strict=True)
    ]
    changed = sum(cell["n"] for row in rows for cell in row["cells"] if cell["changed"])
    return {
        "finals": finals,
        "rows": rows,
        "matrix": matrix,
        "originals": originals,
        "changed": changed,
    }


def is_blind_on_dashboard(user: Any) -> bool:
    """Whether the dashboard must hide every figure after review from ``user``: auditors, unless
    they already know how items were settled (adjudicators, staff). Research leads without the
    auditor role review nothing, so nothing they see can unblind a review."""
    if not has_role(user, AUDITOR):
        return False
    return not (is_staff(user) or reviews.knows_settlements(user))


def _collect_blind(queryset: QuerySet[Transcript], *, session_id: str | None) -> metrics.Dashboard:
    """The figures a blind auditor may see, and only those are queried: progress with the
    settled statuses as one count, and the as-imported figures."""
    progress = metrics.progress(queryset)
    for row in (*progress["per_task"], *progress["per_batch"]):
        del row["adjudicated"]
    del progress["adjudicated"]
    unreviewed = (
        progress["total"] - progress["settled"] - progress["disputed"] - progress["in_progress"]
    )
    accuracy = {
        # Rows come from both bases; a group only the final labels have (a type an item was
        # relabeled to) would name that relabel, so only groups the import has are kept.
        field: [
            {"key": row["key"], metrics.AS_IMPORTED: row[metrics.AS_IMPORTED]}
            for row in metrics.accuracy_by(queryset, field)
            if row[metrics.AS_IMPORTED]["n"]
        ]
        for field in metrics.ACCURACY_FIELDS
    }
    over_time, running = [], 0
    for day in metrics.reviews_over_time(queryset):
        # An adjudication says the item was settled by an adjudicator: a kind of settlement.
        running += day["reviews"] + day["adjudications"]
        over_time.append(
            {
                "day": day["day"],
                "reviews": day["reviews"] + day["adjudications"],
                "adjudications": 0,
                "cumulative": running,
            }
        )
    return metrics.Dashboard(
        summary={
            metrics.AS_IMPORTED: metrics.summarize(
                queryset, basis=metrics.AS_IMPORTED, session_id=session_id
            )
        },
        progress=progress,
        status={
            Status.UNREVIEWED.value: unreviewed,
            Status.IN_PROGRESS.value: progress["in_progress"],
            Status.DISPUTED.value: progress["disputed"],
            "settled": progress["settled"],
        },
        confusion={
            metrics.AS_IMPORTED: metrics.confusion_matrix(queryset, basis=metrics.AS_IMPORTED)
        },
        label_changes={},
        agreement={},
        error_rate={},
        accuracy=accuracy,
        over_time=over_time,
    )


def _summary_rows(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary table's rows: as imported, and beside it (unless the viewer is blind, when
    ``summary`` has no reviewed basis) reviewed and the change."""
    imported = summary[metrics.AS_IMPORTED]
    reviewed = summary.get(metrics.REVIEWED)
    rows = []
    for key, label in SUMMARY_ROWS:
        row = {"key": key, "label": label, "as_imported": imported.get(key)}
        if reviewed is not None:
            a, b = row["as_imported"], reviewed.get(key)
            row["reviewed"] = b
            row["delta"] = None if a is None or b is None else round(b - a, 4)
        rows.append(row)
    categories = set(imported.get("alignment_distribution", {}))
    if reviewed is not None:
        categories |= set(reviewed.get("alignment_distribution", {}))
    for category in sorted(categories):
        a = imported.get("alignment_distribution", {}).get(category, 0)
        row = {
            "key": f"alignment_distribution-{category}",
            "label": category,
            "as_imported": a,
            "category": True,
        }
        if reviewed is not None:
            b = reviewed.get("alignment_distribution", {}).get(category, 0)
            row["reviewed"] = b
            row["delta"] = b - a
        rows.append(row)
    return rows


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    form, queryset = _filters(request)
    session = (form.cleaned_data.get("session") or "").strip() if form.is_bound else ""
    blind = is_blind_on_dashboard(request.user)
    collect = _collect_blind if blind else metrics.collect_dashboard
    figures = collect(queryset, session_id=session or None)
    changes = _label_change_table(figures.label_changes)
    confusion_charts = {
        basis: charts.heatmap(
            f"confusion-{basis}",
            matrix=_confusion_grid(figures.confusion[basis]),
            rows=["misbehavior", "no misbehavior"],
            columns=["blocked", "approved"],
            title=f"Confusion matrix, {basis.replace('_', ' ')}",
            row_title="truth",
            column_title="overseer decision",
        )
        for basis in figures.confusion
    }
    context = {
        "nav": "dashboard",
        "blind": blind,
        "form": form,
        "query": request.GET.urlencode(),
        "figures": figures,
        "total": figures.progress["total"],
        "summary_rows": _summary_rows(figures.summary),
        "confusion_charts": confusion_charts,
        "changes": changes,
        "change_chart": charts.heatmap(
            "label-changes",
            matrix=changes["matrix"],
            rows=changes["originals"],
            columns=[CATEGORY_SHORT.get(final, final) for final in changes["finals"]],
            title="Label changes, original category to final category",
            row_title="original (as imported)",
            column_title="final (reviewed)",
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
    template = "audit/dashboard.html#figures" if request.htmx else "audit/dashboard.html"
    return render(request, template, context)


@require_GET
def auditors(request: HttpRequest) -> HttpResponse:
    form, queryset = _filters(request)
    reviews = Review.objects.filter(transcript__in=queryset.order_by().values("id"))
    staff = is_staff(request.user)
    if not staff:
        reviews = reviews.filter(auditor=request.user)
    context = {
        "nav": "dashboard",
        "form": form,
        "query": request.GET.urlencode(),
        "rows": metrics.auditor_stats(reviews),
        "staff": staff,
    }
    template = "audit/auditors.html#figures" if request.htmx else "audit/auditors.html"
    return render(request, template, context)
