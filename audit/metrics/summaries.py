"""Metrics as database aggregates: the exporter-compatible summaries on each basis, and the
review figures.

``summarize`` returns exactly the keys and arithmetic of the exporter's ``export_summary()``.
"As imported" counts the stored labels and flags, as the exporter did, so for a one-session file
it equals that file's own summary. "Reviewed" counts the final labels, which are consistent by
construction (derived from the final ground truth and the decision).

Every count takes either transcripts (``Transcript.objects...``: a scan of the rows) or the
rollup of the same selection (``Rollup.objects...``, ``audit.rollup``: the same counts summed
from the maintained aggregate). The conditions are the same Q objects on the same column names,
so both give the same figures; ``audit.rollup.scope`` picks the rollup whenever the filter is
one of its columns.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Any

from django.db import connections
from django.db.models import (
    Aggregate,
    Case,
    CharField,
    Count,
    F,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Substr, TruncDate
from django.utils import timezone

from audit.labels import FINAL as FINAL_COLUMNS
from audit.labels import IMPORTED as IMPORTED_COLUMNS
from audit.labels import (
    OUTCOME_CELLS,
    REVIEW,
    Labels,
    category_case,
    corrected_q,
    filled_q,
    labels_match_q,
    outcome_conditions,
)
from audit.metrics.agreement import (
    cohen_kappa,
    krippendorff_alpha_nominal,
    percent_agreement,
    wilson_interval,
)
from audit.models import (
    COUNTING_VERDICTS,
    SETTLED_STATUSES,
    Flag,
    Review,
    ReviewQuerySet,
    RollupQuerySet,
    Status,
    TranscriptQuerySet,
    Verdict,
    any_flag,
)

# What counts are taken over: transcripts row by row, or their rollup.
Countable = TranscriptQuerySet | RollupQuerySet

# The bases a figure is computed on (README, Summaries):
# - as imported: the stored labels and flags, the exporter's own figures;
# - current: each record as an export of it reads: settled records with their final labels,
#   the rest exactly as imported (inconsistencies included: a flag, not a silent fix);
# - final: the final labels of every record, which are the imported ground truth re-derived
#   for unsettled records. Only meaningful over settled records ("settled after review").
AS_IMPORTED = "as_imported"
CURRENT = "current"
FINAL = "final"
BASES = (AS_IMPORTED, CURRENT, FINAL)
SETTLED = Q(status__in=SETTLED_STATUSES)


def _count(queryset: Countable, condition: Q | None = None) -> Aggregate | Func:
    """How many transcripts of ``queryset`` meet ``condition``: counted, or summed from the
    rollup's per-combination counts."""
    if isinstance(queryset, RollupQuerySet):
        return Coalesce(Sum("transcripts", filter=condition), 0, output_field=IntegerField())
    return Count("id", filter=condition)


def _ratio(numerator: int, denominator: int) -> float | int:
    return round(numerator / denominator, 4) if denominator > 0 else 0


def _imported_conditions() -> dict[str, Q]:
    return {
        "correct": Q(oversight_correct=True),
        "tp": Q(was_true_positive=True),
        "fp": Q(was_false_positive=True),
        "fn": Q(was_false_negative=True),
        "misbehaviors": Q(is_misbehavior=True),
    }


def _final_conditions() -> dict[str, Q]:
    outcome = outcome_conditions("final_alignment_category")
    return {
        "correct": outcome["correct"],
        "tp": outcome["true_positives"],
        "fp": outcome["false_positives"],
        "fn": outcome["false_negatives"],
        "misbehaviors": Q(final_is_misbehavior=True),
    }


def _check_basis(basis: str) -> None:
    if basis not in BASES:
        raise ValueError(f"unknown summary basis {basis!r}")


def basis_conditions(basis: str) -> dict[str, Q]:
    """Per summary count, the condition that counts a record under it on ``basis``."""
    _check_basis(basis)
    if basis == AS_IMPORTED:
        return _imported_conditions()
    if basis == FINAL:
        return _final_conditions()
    imported, final = _imported_conditions(), _final_conditions()
    return {name: SETTLED & final[name] | ~SETTLED & imported[name] for name in imported}


def category_expression(basis: str) -> F | Case:
    """The alignment category a record is counted under on ``basis``."""
    _check_basis(basis)
    if basis == AS_IMPORTED:
        return F("alignment_category")
    if basis == FINAL:
        return F("final_alignment_category")
    return Case(
        When(SETTLED, then=F("final_alignment_category")),
        default=F("alignment_category"),
        output_field=CharField(),
    )


def summary_counts(queryset: Countable, *, basis: str) -> dict[str, Any]:
    """The counts behind a summary, in one aggregate query plus one group-by."""
    conditions = basis_conditions(basis)
    counts = queryset.aggregate(
        total=_count(queryset),
        **{name: _count(queryset, cond) for name, cond in conditions.items()},
    )
    distribution = dict(
        queryset.order_by()
        .annotate(category=category_expression(basis))
        .values_list("category")
        .annotate(n=_count(queryset))
        .values_list("category", "n")
    )
    counts["distribution"] = dict(sorted(distribution.items()))
    return counts


def single_session(queryset: TranscriptQuerySet) -> str | None:
    """The session every record belongs to, or None when they span several."""
    sessions = list(queryset.order_by().values_list("session_id", flat=True).distinct()[:2])
    return sessions[0] if len(sessions) == 1 else None


def summarize(
    queryset: Countable,
    *,
    basis: str = AS_IMPORTED,
    session_id: str | None = None,
    records: TranscriptQuerySet | None = None,
) -> dict[str, Any]:
    """``export_summary()`` for the records in ``queryset``.

    ``session_id`` is reported as given, else the records' one session, else None (the exporter
    always had exactly one). An empty set gives ``{"total": 0}``, as the exporter does. When
    ``queryset`` is a rollup, ``records`` are its transcripts, where the session is looked up.
    """
    # Looked up whether or not the set is empty, so a page's query count does not depend on
    # whether anything is settled yet.
    session = session_id if session_id is not None else _session(queryset, records)
    return _summary(queryset, basis=basis, session_id=session)


def _session(queryset: Countable, records: TranscriptQuerySet | None) -> str | None:
    if isinstance(queryset, RollupQuerySet):
        if records is None:
            raise TypeError("a summary of a rollup needs its records to name the session")
        return single_session(records)
    return single_session(queryset)


def _summary(queryset: Countable, *, basis: str, session_id: str | None) -> dict[str, Any]:
    counts = summary_counts(queryset, basis=basis)
    session = session_id
    n = counts["total"]
    if n == 0:
        return {"total": 0}
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {
        "session_id": session,
        "total_decisions": n,
        "correct_decisions": counts["correct"],
        "accuracy": _ratio(counts["correct"], n),
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "total_misbehaviors": counts["misbehaviors"],
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "alignment_distribution": counts["distribution"],
    }


# The views every summary surface shows (summarize, dashboard, summary.json, the card): name ->
# (basis, settled records only). "settled_before"/"settled_after" are the same settled records
# as imported and after review: the honest measure of what review changed.
VIEWS = {
    "as_imported": (AS_IMPORTED, False),
    "current": (CURRENT, False),
    "settled_before": (AS_IMPORTED, True),
    "settled_after": (FINAL, True),
}


def summaries(
    queryset: Countable,
    *,
    session_id: str | None = None,
    records: TranscriptQuerySet | None = None,
) -> dict[str, dict[str, Any]]:
    """``summarize`` on every view in ``VIEWS``: the session of all the records and that of the
    settled ones are each looked up once."""
    sessions = {
        settled: session_id
        if session_id is not None
        else _session(
            queryset.settled() if settled else queryset,
            records.settled() if settled and records is not None else records,
        )
        for settled in (False, True)
    }
    return {
        name: _summary(
            queryset.settled() if settled else queryset,
            basis=basis,
            session_id=sessions[settled],
        )
        for name, (basis, settled) in VIEWS.items()
    }


def confusion_matrices(queryset: Countable) -> dict[str, dict[str, int]]:
    """``confusion_matrix`` on every view in ``VIEWS``."""
    return {
        name: confusion_matrix(queryset.settled() if settled else queryset, basis=basis)
        for name, (basis, settled) in VIEWS.items()
    }


# --- Review metrics for the dashboard and summary.json ------------------------------------------
#
# Every function below takes a Transcript queryset (already filtered) and answers with a fixed
# number of aggregate queries, whatever the data size. The one data-proportional read is
# ``agreement``: kappa and alpha need the individual ratings, so it fetches the current
# counting reviews of multiply-reviewed items in one query.

AGREEMENT_FIELDS = ("is_misbehavior", "misbehavior_type", "correct_decision")
# Agreement rates COUNTING_VERDICTS only: "unsure" says nothing about the labels, and an
# adjudication is a decision over the raters, not one more rater.
ACCURACY_FIELDS = ("misbehavior_type", "task_id", "worker_id")
QUEUE_FLAGS = tuple(flag for flag in Flag if flag != Flag.SPOT_CHECK)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def confusion_matrix(queryset: Countable, *, basis: str) -> dict[str, int]:
    """True/false positives/negatives, true negatives included, in one aggregate query.

    "As imported" reads the stored ``labels.alignment_category`` (catch = TP, fp = FP, fn = FN,
    approve = TN): the exporter's ``was_*`` flags have no true negative, and the category is the
    one label that partitions the records. Records whose stored category is none of the four
    (``unknown``, null, junk) fall in no cell. "Final" reads the final category, which is
    always one of the four, so the cells add up to the total; "current" reads the final
    category of settled records and the stored one of the rest.
    """
    _check_basis(basis)
    imported = outcome_conditions("alignment_category")
    final = outcome_conditions("final_alignment_category")
    if basis == AS_IMPORTED:
        cells = imported
    elif basis == FINAL:
        cells = final
    else:
        cells = {name: SETTLED & final[name] | ~SETTLED & imported[name] for name in final}
    return queryset.aggregate(
        **{cell: _count(queryset, cells[cell]) for cell in OUTCOME_CELLS.values()}
    )


def label_change_matrix(queryset: Countable) -> dict[str, dict[str, int]]:
    """``{original: {final: n}}`` over settled records: the category the imported ground truth
    derives to the final one. Only what auditors changed: a stored category that contradicts
    its own ground truth is not a change (``inconsistent_labels`` counts those), and unsettled
    records are not in it at all.
    """
    rows = (
        queryset.settled()
        .order_by()
        .annotate(original=category_case("is_misbehavior", "decision_type"))
        .values_list("original", "final_alignment_category")
        .annotate(n=_count(queryset))
        .values_list("original", "final_alignment_category", "n")
    )
    matrix: dict[str, dict[str, int]] = {}
    for original, final, n in rows:
        matrix.setdefault(original, {})[final] = n
    return {original: dict(sorted(finals.items())) for original, finals in sorted(matrix.items())}


def inconsistent_labels(queryset: Countable) -> int:
    """Records whose stored labels contradict their own ground truth and decision (the label
    inconsistency flag): shown as a count of their own, never fixed silently."""
    counts = queryset.aggregate(n=_count(queryset, Q(flag_label_inconsistency=True)))
    return int(counts["n"])


def label_fixes(queryset: Countable) -> dict[str, int]:
    """Over settled records: how many review corrected (a value the import had changed) and
    how many it only completed (a missing correct decision or type filled in)."""
    return queryset.settled().aggregate(
        settled=_count(queryset),
        corrected=_count(queryset, corrected_q(FINAL_COLUMNS, IMPORTED_COLUMNS)),
        filled=_count(queryset, filled_q(FINAL_COLUMNS, IMPORTED_COLUMNS)),
    )


def status_counts(queryset: Countable) -> dict[str, int]:
    """Items per review status, every status present (zeros included), in status order."""
    counts = dict(
        queryset.order_by()
        .values_list("status")
        .annotate(n=_count(queryset))
        .values_list("status", "n")
    )
    return {status.value: counts.get(status.value, 0) for status in Status}


def estimated_error_rate(queryset: Countable) -> dict[str, Any]:
    """Label error rate of the unreviewed, unflagged remainder, estimated from the settled
    spot-check sample (a random draw from the unflagged records), with a Wilson 95% interval.

    An error is a settled spot-check item whose review corrected a value of the imported ground
    truth, whether it was relabeled or adjudicated to different values; one whose review only
    filled in a missing value is not an error of the import and is counted apart (``filled``).
    ``population`` is how many records the estimate is for: the unflagged ones not settled yet.
    ``rate`` and ``ci95`` are None while the sample is empty.
    """
    counts = queryset.aggregate(
        sample=_count(queryset, Q(flag_spot_check=True) & SETTLED),
        errors=_count(
            queryset,
            Q(flag_spot_check=True) & SETTLED & corrected_q(FINAL_COLUMNS, IMPORTED_COLUMNS),
        ),
        filled=_count(
            queryset,
            Q(flag_spot_check=True) & SETTLED & filled_q(FINAL_COLUMNS, IMPORTED_COLUMNS),
        ),
        population=_count(queryset, ~flagged_q() & ~SETTLED),
    )
    sample, errors = counts["sample"], counts["errors"]
    interval = wilson_interval(errors, sample)
    return {
        "sample": sample,
        "errors": errors,
        "filled": counts["filled"],
        "population": counts["population"],
        "rate": _rounded(errors / sample) if sample else None,
        "ci95": [round(interval[0], 4), round(interval[1], 4)] if interval else None,
    }


def flagged_q() -> Q:
    """Flagged: the record has a reason to be reviewed, any flag but spot check (a spot check
    is a random draw from the unflagged records). The one definition of the word: the
    dashboard's figures and the queue's summary both count by it."""
    return any_flag(QUEUE_FLAGS)


def _progress_counts(queryset: Countable, *, blind: bool) -> dict[str, Aggregate | Func]:
    settled = Q(status__in=SETTLED_STATUSES)
    counts = {
        "total": _count(queryset),
        "flagged": _count(queryset, flagged_q()),
        "settled": _count(queryset, settled),
        "disputed": _count(queryset, Q(status=Status.DISPUTED)),
    }
    if not blind:
        counts["adjudicated"] = _count(queryset, Q(status=Status.ADJUDICATED))
    return counts


def progress(queryset: Countable, *, blind: bool = False) -> dict[str, Any]:
    """How far review has got: overall, per flag, per task and per batch (three queries).

    ``flagged`` counts records with a reason to be reviewed (any flag but spot check);
    ``settled`` counts confirmed, relabeled and adjudicated ones; ``remainder`` is the
    unflagged, unsettled part whose error rate ``estimated_error_rate`` estimates. ``blind``
    leaves out how many were adjudicated (a way of being settled).
    """
    settled = Q(status__in=SETTLED_STATUSES)
    per_flag_counts: dict[str, Aggregate | Func] = {}
    for flag in Flag:
        has = Q(**{f"flag_{flag.value}": True})
        per_flag_counts[f"total_{flag.value}"] = _count(queryset, has)
        per_flag_counts[f"settled_{flag.value}"] = _count(queryset, has & settled)
    overall = queryset.aggregate(
        **_progress_counts(queryset, blind=blind),
        in_progress=_count(queryset, Q(status=Status.IN_PROGRESS)),
        remainder=_count(queryset, ~flagged_q() & ~settled),
        spot_checked=_count(queryset, Q(flag_spot_check=True)),
        **per_flag_counts,
    )
    per_flag = [
        {
            "flag": flag.value,
            "label": flag.label,
            "total": overall.pop(f"total_{flag.value}"),
            "settled": overall.pop(f"settled_{flag.value}"),
        }
        for flag in Flag
    ]
    per_task = list(
        queryset.order_by()
        .values("task_id")
        .annotate(**_progress_counts(queryset, blind=blind))
        .order_by("task_id")
    )
    per_batch = list(
        queryset.order_by()
        .values("batch_id", "batch__file_name")
        .annotate(**_progress_counts(queryset, blind=blind))
        .order_by("batch_id")
    )
    return {**overall, "per_flag": per_flag, "per_task": per_task, "per_batch": per_batch}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def accuracy_by(queryset: Countable, field: str) -> list[dict[str, Any]]:
    """The overseer's accuracy per misbehavior type, task or worker, as imported and current.

    Accuracy is the share of records whose category is a correct one, counted as the summary
    counts it on each basis (``basis_conditions``). Tasks and workers group both bases the same
    way (one query). Misbehavior types group each basis by its own truth (two queries): as
    imported by the imported type of imported misbehaviors, current by the settled type of
    settled records and the imported one of the rest, so "" collects the non-misbehaviors.
    """
    if field not in ACCURACY_FIELDS:
        raise ValueError(f"accuracy is grouped by one of {ACCURACY_FIELDS}, not {field!r}")
    current_correct = basis_conditions(CURRENT)["correct"]
    groups: dict[str, dict[str, dict[str, Any]]] = {}

    def add(basis: str, rows: Any) -> None:
        for key, n, correct in rows:
            entry = {"n": n, "correct": correct, "accuracy": _share(correct, n)}
            groups.setdefault(key, {})[basis] = entry

    if field == "misbehavior_type":
        imported_key = Case(
            When(is_misbehavior=True, then=F("misbehavior_type")),
            default=Value(""),
            output_field=CharField(),
        )
        add(
            AS_IMPORTED,
            queryset.order_by()
            .annotate(key=imported_key)
            .values_list("key")
            .annotate(n=_count(queryset), correct=_count(queryset, Q(oversight_correct=True)))
            .values_list("key", "n", "correct"),
        )
        current_key = Case(
            When(SETTLED, then=F("final_misbehavior_type")),
            default=imported_key,
            output_field=CharField(),
        )
        add(
            CURRENT,
            queryset.order_by()
            .annotate(key=current_key)
            .values_list("key")
            .annotate(n=_count(queryset), correct=_count(queryset, current_correct))
            .values_list("key", "n", "correct"),
        )
    else:
        rows = list(
            queryset.order_by()
            .values_list(field)
            .annotate(
                n=_count(queryset),
                imported=_count(queryset, Q(oversight_correct=True)),
                current=_count(queryset, current_correct),
            )
            .values_list(field, "n", "imported", "current")
        )
        add(AS_IMPORTED, [(key, n, imported) for key, n, imported, _ in rows])
        add(CURRENT, [(key, n, current) for key, n, _, current in rows])
    empty = {"n": 0, "correct": 0, "accuracy": None}
    return [
        {
            "key": key,
            AS_IMPORTED: entries.get(AS_IMPORTED, empty),
            CURRENT: entries.get(CURRENT, empty),
        }
        for key, entries in sorted(groups.items())
    ]


def reviews_of(queryset: TranscriptQuerySet | ReviewQuerySet) -> ReviewQuerySet:
    """The reviews of the items in ``queryset``; given reviews, those reviews."""
    if isinstance(queryset, ReviewQuerySet):
        return queryset
    return Review.objects.filter(transcript__in=queryset.order_by().values("id"))


def _counting_reviews(queryset: TranscriptQuerySet | ReviewQuerySet) -> QuerySet[Review]:
    """Current (not superseded) confirm and relabel reviews of the items in ``queryset``."""
    return reviews_of(queryset).counting()


def agreement(queryset: TranscriptQuerySet | ReviewQuerySet) -> dict[str, dict[str, Any]]:
    """Inter-rater agreement per label field, over items with two or more counting reviews.

    Counting reviews are current (not superseded) confirms and relabels: unsure says nothing
    about the labels and an adjudication is not one more rater. Per field:

    - ``items``: items with two or more counting reviews; ``raters``: distinct auditors on them.
    - ``percent``: share of those items on which all their reviews agree (with K=2, the share
      that settled without adjudication on this field).
    - ``cohen_kappa``: over items with exactly two counting reviews, the lower auditor id as
      rater A and the higher as rater B. With two auditors overall this is textbook Cohen's
      kappa; with more, it pairs "an auditor" with "another auditor" per item.
    - ``krippendorff_alpha``: nominal, every item's reviews, any number of raters, missing data.

    Figures are None where undefined (no items, or a single category so chance agreement is 1).
    One query reads the ratings.
    """
    counting = _counting_reviews(queryset)
    multiple = (
        counting.order_by()
        .values("transcript_id")
        .annotate(n=Count("id"))
        .filter(n__gte=2)
        .values("transcript_id")
    )
    rows = (
        counting.filter(transcript_id__in=multiple)
        .order_by("transcript_id", "auditor_id", "id")
        .values_list(
            "transcript_id",
            "auditor_id",
            "is_misbehavior",
            "misbehavior_type",
            "correct_decision",
        )
    )
    units: dict[int, list[dict[str, Any]]] = {}
    raters: set[int] = set()
    for transcript_id, auditor_id, is_mb, mb_type, decision in rows:
        # Normalised: a stray type on a "no" would count as disagreement otherwise.
        units.setdefault(transcript_id, []).append(Labels.of(is_mb, mb_type, decision).as_dict())
        raters.add(auditor_id)
    result = {}
    for field in AGREEMENT_FIELDS:
        values = [[rating[field] for rating in ratings] for ratings in units.values()]
        pairs = [(unit[0], unit[1]) for unit in values if len(unit) == 2]
        result[field] = {
            "items": len(values),
            "raters": len(raters),
            "percent": _rounded(percent_agreement(values)),
            "cohen_kappa": _rounded(cohen_kappa(pairs)),
            "krippendorff_alpha": _rounded(krippendorff_alpha_nominal(values)),
        }
    return result


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def auditor_stats(reviews: QuerySet[Review]) -> list[dict[str, Any]]:
    """Per auditor: reviews written, adjudications, median seconds per review, agreement with
    the final label, unsure rate. Two queries: one GROUP BY and one (auditor, seconds) list for
    the medians (medians are not a portable SQL aggregate).

    Agreement with the final label is the share of the auditor's current counting reviews of
    settled items whose values equal the item's final values.
    """
    counting = Q(superseded_by__isnull=True, verdict__in=COUNTING_VERDICTS) & Q(
        transcript__status__in=SETTLED_STATUSES
    )
    matches_final = labels_match_q(REVIEW, FINAL_COLUMNS.prefixed("transcript__"))
    rows = list(
        reviews.order_by()
        .values("auditor_id", "auditor__username")
        .annotate(
            reviews=Count("id", filter=~Q(verdict=Verdict.ADJUDICATE)),
            adjudications=Count("id", filter=Q(verdict=Verdict.ADJUDICATE)),
            unsure=Count("id", filter=Q(verdict=Verdict.UNSURE)),
            counted=Count("id", filter=counting),
            agreeing=Count("id", filter=counting & matches_final),
        )
        .order_by("auditor__username")
    )
    seconds: dict[int, list[int]] = {}
    for auditor_id, spent in reviews.order_by().values_list("auditor_id", "seconds_spent"):
        seconds.setdefault(auditor_id, []).append(spent)
    return [
        {
            "auditor_id": row["auditor_id"],
            "username": row["auditor__username"],
            "reviews": row["reviews"],
            "adjudications": row["adjudications"],
            "median_seconds": _median(seconds.get(row["auditor_id"], [])),
            "agreement_with_final": _share(row["agreeing"], row["counted"]),
            "agreement_sample": row["counted"],
            "unsure_rate": _share(row["unsure"], row["reviews"]),
        }
        for row in rows
    ]


def reviews_over_time(queryset: TranscriptQuerySet | ReviewQuerySet) -> list[dict[str, Any]]:
    """Reviews written per day (in the current time zone) on the items in ``queryset`` (or the
    reviews given), with the running total: the progress-over-time picture. One GROUP BY
    query (``_per_day``)."""
    running = 0
    days = []
    for row in _per_day(reviews_of(queryset).order_by()):
        running += row["reviews"]
        days.append({**row, "cumulative": running})
    return days


# The grain SQLite groups reviews by before they are dated (``_per_day``).
HOUR = dt.timedelta(hours=1)
MICROSECOND = dt.timedelta(microseconds=1)


def _per_day(reviews: QuerySet[Review]) -> list[dict[str, Any]]:
    """``day``, ``reviews`` and ``adjudications`` of ``reviews`` per day in the current time
    zone, in day order.

    PostgreSQL dates each row in SQL (``TruncDate``). On SQLite that is a Python function
    called for every row (some 13 µs each: 650 ms over 50,000 reviews), so the rows are grouped
    by their UTC hour instead (the stored text's first 13 characters, in C) and each hour is
    dated here; an hour that local midnight falls inside (a time zone whose offset is not a
    whole number of hours, or a change of offset) is dated row by row, as ``TruncDate`` does."""
    counts = {
        "reviews": Count("id", filter=~Q(verdict=Verdict.ADJUDICATE)),
        "adjudications": Count("id", filter=Q(verdict=Verdict.ADJUDICATE)),
    }
    if connections[reviews.db].vendor != "sqlite":
        by_day = reviews.annotate(day=TruncDate("created_at")).values("day").annotate(**counts)
        return [dict(row) for row in by_day.order_by("day")]
    zone = timezone.get_current_timezone()
    days: dict[dt.date, dict[str, Any]] = {}

    def add(day: dt.date, row: Any) -> None:
        into = days.setdefault(day, {"day": day, "reviews": 0, "adjudications": 0})
        into["reviews"] += row["reviews"]
        into["adjudications"] += row["adjudications"]

    hours = reviews.annotate(hour=Substr("created_at", 1, 13)).values("hour").annotate(**counts)
    for row in hours.order_by():
        start = dt.datetime.strptime(row["hour"], "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
        first, last = start.astimezone(zone), (start + HOUR - MICROSECOND).astimezone(zone)
        if first.date() == last.date():
            add(first.date(), row)
            continue
        within = reviews.filter(created_at__gte=start, created_at__lt=start + HOUR)
        for exact in within.annotate(day=TruncDate("created_at")).values("day").annotate(**counts):
            add(exact["day"], exact)
    return [days[day] for day in sorted(days)]
