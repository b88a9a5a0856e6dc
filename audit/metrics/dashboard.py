"""The dashboard's figures for one filtered selection, and the tables the screen shows them in.

``collect_dashboard`` queries every figure; ``collect_blind_dashboard`` only those a blind
auditor may see (who is blind is ``audit.review.visibility.blind_on_dashboard``): progress,
with the ways of being settled as one count, and the as-imported figures. Nothing after review
reaches a blind auditor, not even by subtraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit.labels import Category
from audit.metrics import summaries as metrics
from audit.models import Status, TranscriptQuerySet

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


@dataclass(frozen=True)
class Dashboard:
    """Every figure of the dashboard for one filtered selection."""

    summary: dict[str, dict[str, Any]]
    progress: dict[str, Any]
    status: dict[str, int]
    confusion: dict[str, dict[str, int]]
    label_changes: dict[str, dict[str, int]]
    agreement: dict[str, dict[str, Any]]
    error_rate: dict[str, Any]
    accuracy: dict[str, list[dict[str, Any]]]
    over_time: list[dict[str, Any]]


def collect_dashboard(queryset: TranscriptQuerySet, *, session_id: str | None = None) -> Dashboard:
    """The dashboard's figures: a fixed number of aggregate queries (about twenty), whatever
    the size of the selection."""
    return Dashboard(
        summary={
            basis: metrics.summarize(queryset, basis=basis, session_id=session_id)
            for basis in (metrics.AS_IMPORTED, metrics.REVIEWED)
        },
        progress=metrics.progress(queryset),
        status=metrics.status_counts(queryset),
        confusion={
            basis: metrics.confusion_matrix(queryset, basis=basis)
            for basis in (metrics.AS_IMPORTED, metrics.REVIEWED)
        },
        label_changes=metrics.label_change_matrix(queryset),
        agreement=metrics.agreement(queryset),
        error_rate=metrics.estimated_error_rate(queryset),
        accuracy={field: metrics.accuracy_by(queryset, field) for field in metrics.ACCURACY_FIELDS},
        over_time=metrics.reviews_over_time(queryset),
    )


def confusion_grid(cells: dict[str, int]) -> list[list[int]]:
    # Rows: misbehavior yes/no (truth); columns: overseer blocked/approved.
    return [
        [cells["true_positives"], cells["false_negatives"]],
        [cells["false_positives"], cells["true_negatives"]],
    ]


def label_change_table(changes: dict[str, dict[str, int]]) -> dict[str, Any]:
    finals = [c for c in CATEGORY_ORDER if any(c in row for row in changes.values())]
    # Known categories in their usual order, then any junk the import kept, alphabetically.
    rank = {category: position for position, category in enumerate(CATEGORY_ORDER)}
    originals = sorted(changes, key=lambda c: (rank.get(c, len(rank)), c))
    matrix = [[changes[o].get(f, 0) for f in finals] for o in originals]
    rows: list[dict[str, Any]] = [
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


def collect_blind_dashboard(
    queryset: TranscriptQuerySet, *, session_id: str | None = None
) -> Dashboard:
    """The figures a blind auditor may see (``visibility.blind_on_dashboard``), and only those
    are queried: progress with the settled statuses as one count, and the as-imported
    figures."""
    progress = metrics.progress(queryset, blind=True)
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
    return Dashboard(
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


def summary_rows(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
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
