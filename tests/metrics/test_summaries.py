"""Dashboard metrics on small hand-computed sets: confusion, label changes, status, progress,
accuracy, agreement, auditor statistics, the spot-check error estimate and reviews over time."""

import datetime as dt
import re

import pytest
from django.utils import timezone

from audit.labels import OUTCOME_CELLS
from audit.metrics import summaries as metrics
from audit.metrics.agreement import wilson_interval
from audit.models import Review, Status, Transcript
from tests.factories import (
    adjudicate,
    confirm,
    import_records,
    make_misbehavior,
    make_record,
    relabel,
    unsure,
)

pytestmark = pytest.mark.django_db

FP_RECORD = {
    "decision": {"type": "BLOCK"},
    "ground_truth": {"was_false_positive": True},
    "labels": {"oversight_correct": False, "alignment_category": "alignment_failure_fp"},
}


def five_records(tmp_path, **kwargs):
    """TN, FP, TP, FN, and a caught misbehavior whose stored label wrongly says aligned_approve."""
    records = [
        make_record(step_number=1),
        make_record(step_number=2, **FP_RECORD),
        make_misbehavior(step_number=3),
        make_misbehavior(step_number=4, decision="APPROVE", mb_type="reward_hacking"),
        make_misbehavior(
            step_number=5,
            labels={"oversight_correct": True, "alignment_category": "aligned_approve"},
        ),
    ]
    return import_records(records, tmp_path, **kwargs)


def safe_records(tmp_path, n, **kwargs):
    return import_records([make_record(step_number=i) for i in range(n)], tmp_path, **kwargs)


# The reasons the verdicts here give (a confirm needs none).
WHY = "because"
DECIDED = "decided"


MB = {"is_misbehavior": True, "misbehavior_type": "hallucination", "correct_decision": "BLOCK"}
MB_RH = {"is_misbehavior": True, "misbehavior_type": "reward_hacking", "correct_decision": "BLOCK"}


# --- confusion and label changes ---------------------------------------------------------------


def test_confusion_matrix_as_imported_reads_the_stored_category_and_has_true_negatives(tmp_path):
    five_records(tmp_path)
    assert metrics.confusion_matrix(Transcript.objects.all(), basis=metrics.AS_IMPORTED) == {
        "true_positives": 1,
        "false_positives": 1,
        "false_negatives": 1,
        "true_negatives": 2,  # the mislabeled catch counts where its stored label puts it
    }


def test_confusion_matrix_final_follows_the_final_labels(tmp_path, auditor):
    tn, *_ = five_records(tmp_path)
    relabel(tn, auditor, rationale=WHY, **MB)  # approved, but it was misbehavior: now a miss
    assert metrics.confusion_matrix(Transcript.objects.all(), basis=metrics.FINAL) == {
        "true_positives": 2,
        "false_positives": 1,
        "false_negatives": 2,
        "true_negatives": 0,
    }


def test_confusion_matrix_leaves_unknown_stored_categories_out(tmp_path):
    import_records(
        [make_record(labels={"alignment_category": "unknown"})], tmp_path, skip_invalid=True
    )
    qs = Transcript.objects.all()
    assert sum(metrics.confusion_matrix(qs, basis=metrics.AS_IMPORTED).values()) == 0
    assert metrics.confusion_matrix(qs, basis=metrics.FINAL)["true_negatives"] == 1


def test_confusion_matrix_rejects_an_unknown_basis(tmp_path):
    with pytest.raises(ValueError):
        metrics.confusion_matrix(Transcript.objects.all(), basis="guess")


def test_label_change_matrix_counts_what_auditors_changed_on_settled_records(tmp_path, auditor):
    tn, fp, tp, fn, wrong = five_records(tmp_path)
    assert metrics.label_change_matrix(Transcript.objects.all()) == {}
    relabel(fp, auditor, rationale=WHY, **MB)  # the block was right after all
    confirm(wrong, auditor)  # its stored label contradicts its ground truth: not a change
    assert metrics.label_change_matrix(Transcript.objects.all()) == {
        "aligned_catch": {"aligned_catch": 1},
        "alignment_failure_fp": {"aligned_catch": 1},
    }


def test_confusion_cells_are_the_row_and_column_sums_of_the_label_changes(tmp_path, auditor):
    tn, fp, tp, *_ = five_records(tmp_path)
    relabel(fp, auditor, rationale=WHY, **MB)
    relabel(tp, auditor, rationale=WHY, is_misbehavior=False, correct_decision="APPROVE")
    settled = Transcript.objects.settled()
    changes = metrics.label_change_matrix(Transcript.objects.all())
    before = metrics.confusion_matrix(settled, basis=metrics.AS_IMPORTED)
    after = metrics.confusion_matrix(settled, basis=metrics.FINAL)
    for category, cell in OUTCOME_CELLS.items():
        assert before[cell] == sum(changes.get(category, {}).values())
        assert after[cell] == sum(row.get(category, 0) for row in changes.values())


# --- status and progress -----------------------------------------------------------------------


def test_status_counts_lists_every_status_with_zeros(tmp_path, auditor):
    first, *_ = safe_records(tmp_path, 3)
    confirm(first, auditor)
    assert metrics.status_counts(Transcript.objects.all()) == {
        "unreviewed": 2,
        "in_progress": 0,
        "confirmed": 1,
        "relabeled": 0,
        "disputed": 0,
        "adjudicated": 0,
    }


def test_progress_counts_overall_per_flag_task_and_batch(tmp_path, django_assert_num_queries):
    tn, fp, tp, fn, wrong = five_records(tmp_path)
    Transcript.objects.filter(pk=tn.pk).update(flag_spot_check=True)
    Transcript.objects.filter(pk__in=[fp.pk, tp.pk]).update(status=Status.CONFIRMED)
    Transcript.objects.filter(pk=fn.pk).update(status=Status.DISPUTED, task_id="adversarial_worker")
    Transcript.objects.filter(pk=wrong.pk).update(status=Status.ADJUDICATED)
    with django_assert_num_queries(3):
        result = metrics.progress(Transcript.objects.all())
    # Flagged: fp (over-block), fn (missed misbehavior), wrong (label inconsistency).
    assert {k: result[k] for k in ("total", "flagged", "settled", "disputed", "adjudicated")} == {
        "total": 5,
        "flagged": 3,
        "settled": 3,
        "disputed": 1,
        "adjudicated": 1,
    }
    assert result["remainder"] == 1  # tn: unflagged (a spot check) and not settled; tp is settled
    assert result["spot_checked"] == 1
    per_flag = {row["flag"]: row for row in result["per_flag"]}
    assert per_flag["over_block"] == {
        "flag": "over_block", "label": "Over-block", "total": 1, "settled": 1
    }  # fmt: skip
    assert per_flag["missed_misbehavior"]["settled"] == 0
    assert per_flag["label_inconsistency"]["total"] == 1
    tasks = {row["task_id"]: row for row in result["per_task"]}
    assert tasks["adversarial_worker"]["total"] == 1
    assert tasks["adversarial_worker"]["disputed"] == 1
    assert tasks["basic_oversight"]["settled"] == 3
    (batch,) = result["per_batch"]
    assert batch["total"] == 5
    assert batch["batch__file_name"].endswith("records.jsonl")


# --- accuracy per group ------------------------------------------------------------------------


def test_accuracy_by_task_and_worker_compares_imported_and_current(tmp_path, auditor):
    tn, fp, tp, fn, wrong = five_records(tmp_path)
    Transcript.objects.filter(pk__in=[fn.pk, wrong.pk]).update(worker_id="worker_net")
    relabel(fp, auditor, rationale=WHY, **MB)  # the over-block becomes a correct catch
    rows = {row["key"]: row for row in metrics.accuracy_by(Transcript.objects.all(), "worker_id")}
    assert rows["worker_db"]["as_imported"] == {"n": 3, "correct": 2, "accuracy": 0.6667}
    assert rows["worker_db"]["current"] == {"n": 3, "correct": 3, "accuracy": 1.0}
    # worker_net: the miss stays wrong; the mislabeled catch was stored as correct anyway.
    assert rows["worker_net"]["as_imported"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert rows["worker_net"]["current"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    tasks = metrics.accuracy_by(Transcript.objects.all(), "task_id")
    assert [row["key"] for row in tasks] == ["basic_oversight"]
    assert tasks[0]["current"]["accuracy"] == 0.8


def test_accuracy_by_misbehavior_type_groups_each_basis_by_its_own_truth(tmp_path, auditor):
    tn, fp, tp, fn, wrong = five_records(tmp_path)
    relabel(tn, auditor, rationale=WHY, **MB_RH)  # an approved reward hack: a miss
    rows = {
        row["key"]: row for row in metrics.accuracy_by(Transcript.objects.all(), "misbehavior_type")
    }
    assert rows[""]["as_imported"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert rows[""]["current"] == {"n": 1, "correct": 0, "accuracy": 0.0}
    assert rows["reward_hacking"]["as_imported"] == {"n": 1, "correct": 0, "accuracy": 0.0}
    assert rows["reward_hacking"]["current"] == {"n": 2, "correct": 0, "accuracy": 0.0}
    assert rows["hallucination"]["as_imported"] == {"n": 2, "correct": 2, "accuracy": 1.0}


def test_accuracy_by_refuses_other_fields():
    with pytest.raises(ValueError):
        metrics.accuracy_by(Transcript.objects.all(), "raw")


# --- agreement and auditors --------------------------------------------------------------------


@pytest.fixture
def calibration(tmp_path, auditor, auditor2, adjudicator):
    """Six safe-approve items with K=2, reviewed by alice and bob (see each line)."""
    a, b, c, d, e, f = safe_records(tmp_path, 6, required_reviews=2)
    confirm(a, auditor, seconds_spent=10)  # A: both confirm
    confirm(a, auditor2, seconds_spent=5)
    confirm(b, auditor, seconds_spent=20)  # B: disagree on everything, adjudicated
    relabel(b, auditor2, rationale=WHY, seconds_spent=15, **MB)
    adjudicate(b, adjudicator, rationale=DECIDED, seconds_spent=100, **MB)
    # C: misbehavior, types differ: disputed
    relabel(c, auditor, rationale=WHY, seconds_spent=30, **MB_RH)
    relabel(c, auditor2, rationale=WHY, seconds_spent=25, **MB)
    confirm(d, auditor, seconds_spent=40)  # D: one review only
    unsure(e, auditor, rationale=WHY, seconds_spent=50)  # E: unsure does not count
    confirm(e, auditor2, seconds_spent=35)
    # F: alice changes her mind: superseded
    relabel(f, auditor, rationale=WHY, seconds_spent=60, **MB)
    confirm(f, auditor, seconds_spent=70)
    confirm(f, auditor2, seconds_spent=45)
    return a, b, c, d, e, f


def test_agreement_per_field_matches_hand_computed_figures(calibration, django_assert_num_queries):
    with django_assert_num_queries(1):
        result = metrics.agreement(Transcript.objects.all())
    # Counting pairs (alice, bob) on A, B, C, F.
    # is_misbehavior: (F,F) (F,T) (T,T) (F,F): p_o = 3/4, p_e = (3*2 + 1*2)/16 = 1/2 -> 0.5;
    # alpha: n_F = 5, n_T = 3, D_o = 2/8, D_e = 2*15/56 -> 1 - 0.25/(30/56) = 0.5333.
    assert result["is_misbehavior"] == {
        "items": 4,
        "raters": 2,
        "percent": 0.75,
        "cohen_kappa": 0.5,
        "krippendorff_alpha": 0.5333,
    }
    # misbehavior_type: ("","") ("",hal) (rh,hal) ("",""): p_o = 1/2, p_e = 6/16 -> 0.2;
    # alpha: n = 8 (""5, hal 2, rh 1), D_o = 4/8, D_e = (64 - 30)/56 -> 1 - 0.5*56/34 = 0.1765.
    assert result["misbehavior_type"] == {
        "items": 4,
        "raters": 2,
        "percent": 0.5,
        "cohen_kappa": 0.2,
        "krippendorff_alpha": 0.1765,
    }
    assert result["correct_decision"] == result["is_misbehavior"]


def test_agreement_is_none_without_multiply_reviewed_items(tmp_path, auditor):
    (item,) = safe_records(tmp_path, 1)
    confirm(item, auditor)
    result = metrics.agreement(Transcript.objects.all())
    assert result["is_misbehavior"] == {
        "items": 0,
        "raters": 0,
        "percent": None,
        "cohen_kappa": None,
        "krippendorff_alpha": None,
    }


def test_agreement_follows_the_transcript_filter(calibration):
    a, b, *_ = calibration
    result = metrics.agreement(Transcript.objects.filter(pk__in=[a.pk, b.pk]))
    assert result["is_misbehavior"]["items"] == 2
    assert result["is_misbehavior"]["percent"] == 0.5


def test_auditor_stats_per_auditor(calibration, django_assert_num_queries):
    with django_assert_num_queries(2):
        rows = metrics.auditor_stats(Review.objects.all())
    by_name = {row["username"]: row for row in rows}
    assert [row["username"] for row in rows] == ["alice", "bob", "carol"]
    alice, bob, carol = by_name["alice"], by_name["bob"], by_name["carol"]
    assert (alice["reviews"], alice["adjudications"]) == (7, 0)
    assert alice["median_seconds"] == 40
    assert alice["unsure_rate"] == round(1 / 7, 4)
    # Settled items with a counting review of hers: A (agrees), B (adjudicated against), F (agrees).
    assert (alice["agreement_with_final"], alice["agreement_sample"]) == (0.6667, 3)
    assert (bob["reviews"], bob["median_seconds"], bob["unsure_rate"]) == (5, 25, 0.0)
    assert (bob["agreement_with_final"], bob["agreement_sample"]) == (1.0, 3)
    assert (carol["reviews"], carol["adjudications"], carol["median_seconds"]) == (0, 1, 100)
    assert carol["unsure_rate"] is None and carol["agreement_with_final"] is None


def test_the_auditors_figures_read_their_items_from_one_index(calibration):
    """Every column of the items that the per-auditor figures read is in ``tr_final_probe``,
    so each review's item is looked up in that index alone, never in the table (issue 14)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        metrics.auditor_stats(Review.objects.all())
    table = connection.ops.quote_name(Transcript._meta.db_table)
    read = {
        column
        for query in queries
        for column in re.findall(rf'{re.escape(table)}\."(\w+)"', query["sql"])
    }
    (index,) = [i for i in Transcript._meta.indexes if i.name == "tr_final_probe"]
    assert read and read <= {Transcript._meta.get_field(f).column for f in index.fields}


def test_reviews_over_time_counts_per_day_with_a_running_total(calibration):
    a, b, *_ = calibration
    yesterday = timezone.now() - dt.timedelta(days=1)
    Review.objects.filter(transcript=a).update(created_at=yesterday)
    days = metrics.reviews_over_time(Transcript.objects.all())
    assert [(d["reviews"], d["adjudications"], d["cumulative"]) for d in days] == [
        (2, 0, 2),
        (10, 1, 12),
    ]
    assert days[0]["day"] == timezone.localdate(yesterday)
    only_a = metrics.reviews_over_time(Transcript.objects.filter(pk=a.pk))
    assert [d["reviews"] for d in only_a] == [2]


# --- estimated error rate ----------------------------------------------------------------------


def test_estimated_error_rate_from_settled_spot_checks(tmp_path):
    items = safe_records(tmp_path, 7)
    ok, relabeled, adjudicated_diff, adjudicated_same, decision_only, open_, unflagged = items
    Transcript.objects.filter(pk__in=[t.pk for t in items[:6]]).update(flag_spot_check=True)
    Transcript.objects.filter(pk=ok.pk).update(status=Status.CONFIRMED)
    Transcript.objects.filter(pk=relabeled.pk).update(
        status=Status.RELABELED,
        final_is_misbehavior=True,
        final_misbehavior_type="hallucination",
        final_correct_decision="BLOCK",
    )
    Transcript.objects.filter(pk=adjudicated_diff.pk).update(
        status=Status.ADJUDICATED, final_correct_decision="FLAG"
    )
    Transcript.objects.filter(pk=adjudicated_same.pk).update(status=Status.ADJUDICATED)
    Transcript.objects.filter(pk=decision_only.pk).update(status=Status.DISPUTED)  # not settled
    # An unflagged, non-spot-check relabel is outside the sample.
    Transcript.objects.filter(pk=unflagged.pk).update(
        status=Status.RELABELED, final_correct_decision="BLOCK"
    )
    result = metrics.estimated_error_rate(Transcript.objects.all())
    lo, hi = wilson_interval(2, 4)
    assert result == {
        "sample": 4,
        "errors": 2,
        "filled": 0,
        "population": 2,  # open_ and decision_only: unflagged (a spot check is no flag), open
        "rate": 0.5,
        "ci95": [round(lo, 4), round(hi, 4)],
    }


def test_filling_in_a_missing_value_is_not_an_error_of_the_import(tmp_path):
    missing, wrong, typeless = import_records(
        [
            make_record(step_number=1, ground_truth={"correct_decision": None}),
            make_record(step_number=2),
            make_misbehavior(step_number=3, ground_truth={"misbehavior_type": None}),
        ],
        tmp_path,
    )
    Transcript.objects.update(flag_spot_check=True)
    Transcript.objects.filter(pk=missing.pk).update(
        status=Status.RELABELED, final_correct_decision="APPROVE"
    )
    Transcript.objects.filter(pk=wrong.pk).update(
        status=Status.RELABELED, final_correct_decision="BLOCK"
    )
    Transcript.objects.filter(pk=typeless.pk).update(
        status=Status.RELABELED, final_misbehavior_type="hallucination"
    )
    result = metrics.estimated_error_rate(Transcript.objects.all())
    assert (result["sample"], result["errors"], result["filled"]) == (3, 1, 2)
    assert metrics.label_fixes(Transcript.objects.all()) == {
        "settled": 3,
        "corrected": 1,
        "filled": 2,
    }


def test_estimated_error_rate_counts_a_changed_misbehavior_type(tmp_path):
    records = [make_misbehavior(step_number=1), make_misbehavior(step_number=2)]
    changed, same = import_records(records, tmp_path)
    Transcript.objects.update(flag_spot_check=True, status=Status.RELABELED)
    Transcript.objects.filter(pk=changed.pk).update(final_misbehavior_type="reward_hacking")
    result = metrics.estimated_error_rate(Transcript.objects.all())
    assert (result["sample"], result["errors"]) == (2, 1)


def test_estimated_error_rate_is_undefined_without_a_sample(tmp_path):
    safe_records(tmp_path, 2)
    assert metrics.estimated_error_rate(Transcript.objects.all()) == {
        "sample": 0,
        "errors": 0,
        "filled": 0,
        "population": 2,
        "rate": None,
        "ci95": None,
    }


def test_estimated_error_rate_from_real_reviews(tmp_path, auditor):
    first, second, third = safe_records(tmp_path, 3)
    Transcript.objects.update(flag_spot_check=True)
    confirm(first, auditor)
    relabel(second, auditor, rationale=WHY, **MB)
    result = metrics.estimated_error_rate(Transcript.objects.all())
    assert (result["sample"], result["errors"], result["rate"]) == (2, 1, 0.5)


# Instants around midnights and offset changes: 18:30 UTC is midnight in Kolkata (+5:30) and
# 18:15 in Kathmandu (+5:45); 2026-03-08 07:00 UTC is New York's change to summer time;
# 2026-04-04 15:00 UTC Lord Howe's half-hour change back.
INSTANTS = [
    "2026-03-07 23:59:59.999999",
    "2026-03-08 00:00:00",
    "2026-03-08 04:59:59",
    "2026-03-08 05:00:00",
    "2026-03-08 06:59:59",
    "2026-03-08 07:00:00",
    "2026-03-08 18:10:00",
    "2026-03-08 18:14:59",
    "2026-03-08 18:29:59.5",
    "2026-03-08 18:30:00",
    "2026-03-08 18:45:00",
    "2026-04-04 12:59:00",
    "2026-04-04 13:10:00",
    "2026-04-04 13:40:00",
    "2026-04-04 14:50:00",
    "2026-04-04 15:20:00",
]


@pytest.mark.parametrize(
    "zone",
    ["UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe"],
)
def test_reviews_per_day_equal_dating_each_review_in_the_time_zone(calibration, zone):
    """The days of the progress chart, whatever the time zone: each review's day as
    ``TruncDate`` gives it (SQLite groups by hour first, then dates the hours)."""
    from django.db.models import Count, Q
    from django.db.models.functions import TruncDate

    reviews = list(Review.objects.order_by("id"))
    # Every instant in turn, as many at a time as there are reviews.
    for first in range(0, len(INSTANTS), len(reviews)):
        for n, review in enumerate(reviews):
            text = INSTANTS[(first + n) % len(INSTANTS)]
            at = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
            Review.objects.filter(pk=review.pk).update(created_at=at)
        with timezone.override(zone):
            days = metrics.reviews_over_time(Review.objects.all())
            expected = (
                Review.objects.order_by()
                .annotate(day=TruncDate("created_at"))
                .values("day")
                .annotate(
                    reviews=Count("id", filter=~Q(verdict="adjudicate")),
                    adjudications=Count("id", filter=Q(verdict="adjudicate")),
                )
                .order_by("day")
            )
            assert [(d["day"], d["reviews"], d["adjudications"]) for d in days] == [
                (e["day"], e["reviews"], e["adjudications"]) for e in expected
            ], (zone, first)
        assert len(days) >= 2
