"""The dashboard's figures for one filtered selection, and the tables the screen shows them in.

``collect_dashboard`` queries every figure; ``collect_blind_dashboard`` only those a blind
auditor may see (who is blind is ``audit.review.visibility.blind_on_dashboard``): progress,
with the ways of being settled as one count, and the as-imported figures. Nothing after review
reaches a blind auditor, not even by subtraction.

Both take a ``audit.rollup.Scope``: counts come from the rollup when it answers the filter, the
rows otherwise; the reviews of the selection answer the agreement and the reviews per day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit.labels import Category
from audit.metrics import summaries as metrics
from audit.models import Status
from audit.rollup import Scope

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

    summary: dict[str, dict[str, Any]]  # by view: as_imported, current, settled_before/after
    progress: dict[str, Any]
    status: dict[str, int]
    confusion: dict[str, dict[str, int]]
    label_changes: dict[str, dict[str, int]]
    label_fixes: dict[str, int]
    inconsistent_labels: int
    agreement: dict[str, dict[str, Any]]
    error_rate: dict[str, Any]
    accuracy: dict[str, list[dict[str, Any]]]
    over_time: list[dict[str, Any]]


def collect_dashboard(scope: Scope, *, session_id: str | None = None) -> Dashboard:
    """The dashboard's figures: a fixed number of aggregate queries (about thirty), whatever
    the size of the selection."""
    counts = scope.counts
    return Dashboard(
        summary=metrics.summaries(counts, session_id=session_id, records=scope.records),
        progress=metrics.progress(counts),
        status=metrics.status_counts(counts),
        confusion=metrics.confusion_matrices(counts),
        label_changes=metrics.label_change_matrix(counts),
        label_fixes=metrics.label_fixes(counts),
        inconsistent_labels=metrics.inconsistent_labels(counts),
        agreement=metrics.agreement(scope.reviews),
        error_rate=metrics.estimated_error_rate(counts),
        accuracy={field: metrics.accuracy_by(counts, field) for field in metrics.ACCURACY_FIELDS},
        over_time=metrics.reviews_over_time(scope.reviews),
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


def collect_blind_dashboard(scope: Scope, *, session_id: str | None = None) -> Dashboard:
    """The figures a blind auditor may see (``visibility.blind_on_dashboard``), and only those
    are queried: progress with the settled statuses as one count, and the as-imported
    figures."""
    queryset = scope.counts
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
    for day in metrics.reviews_over_time(scope.reviews):
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
                queryset, basis=metrics.AS_IMPORTED, session_id=session_id, records=scope.records
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
        label_fixes={},
        inconsistent_labels=metrics.inconsistent_labels(queryset),
        agreement={},
        error_rate={},
        accuracy=accuracy,
        over_time=over_time,
    )


# The summary table's columns: view name -> heading.
SUMMARY_COLUMNS = {
    "as_imported": "As imported",
    "current": "Current",
    "settled_before": "Settled, before review",
    "settled_after": "Settled, after review",
}


def summary_columns(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns the viewer may see (a blind viewer: as imported only), each with its n."""
    return [
        {
            "name": name,
            "label": label,
            "n": summary[name].get("total_decisions", summary[name].get("total", 0)),
        }
        for name, label in SUMMARY_COLUMNS.items()
        if name in summary
    ]


def summary_rows(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary table's rows: one value per visible view, and the change review made on the
    settled records (after minus before)."""
    columns = [name for name in SUMMARY_COLUMNS if name in summary]
    categories: set[str] = set()
    for name in columns:
        categories |= set(summary[name].get("alignment_distribution", {}))
    keys = [(key, label, False) for key, label in SUMMARY_ROWS] + [
        (category, category, True) for category in sorted(categories)
    ]
    rows = []
    for key, label, is_category in keys:
        values = {
            name: summary[name].get("alignment_distribution", {}).get(key, 0)
            if is_category
            else summary[name].get(key)
            for name in columns
        }
        before, after = values.get("settled_before"), values.get("settled_after")
        rows.append(
            {
                "key": f"alignment_distribution-{key}" if is_category else key,
                "label": label,
                "category": is_category,
                "cells": [{"name": name, "value": values[name]} for name in columns],
                "delta": None if before is None or after is None else round(after - before, 4),
            }
        )
    return rows
