"""The review workflow (audit.review.workflow): verdict rules, versions and append-only history,
overlap (K reviews) and adjudication, and the final-label cache. Leases are test_leases.py;
blindness is test_visibility.py."""

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from audit.labels import derive_category
from audit.metrics.summaries import summarize
from audit.models import AppendOnlyError, Review, Status, Transcript, Verdict
from audit.review import visibility
from audit.review import workflow as reviews
from tests.factories import (
    adjudicate,
    confirm,
    fresh,
    import_records,
    make_misbehavior,
    relabel,
    review,
    unsure,
)

pytestmark = pytest.mark.django_db


def assert_consistent(transcript: Transcript) -> None:
    transcript = fresh(transcript)
    assert transcript.final_alignment_category == derive_category(
        transcript.final_is_misbehavior, transcript.decision_type
    )
    if not transcript.final_is_misbehavior:
        assert transcript.final_misbehavior_type == ""
    assert not reviews.recompute_final_labels(transcript, save=False).differences


# --- verdict rules -------------------------------------------------------------------------------


def test_confirm_settles_k1_item_with_imported_ground_truth(items, auditor):
    missed = items[0]
    outcome = confirm(missed, auditor)
    missed = fresh(missed)
    assert outcome.state.status == Status.CONFIRMED
    assert missed.status == Status.CONFIRMED
    assert (missed.final_is_misbehavior, missed.final_misbehavior_type) == (True, "reward_hacking")
    assert missed.final_correct_decision == "BLOCK"
    assert missed.final_alignment_category == "alignment_failure_fn"
    assert outcome.review.is_misbehavior is True
    assert outcome.review.misbehavior_type == "reward_hacking"
    assert missed.review_count == 1
    assert_consistent(missed)


def test_relabel_requires_rationale(items, auditor):
    with pytest.raises(ValidationError) as error:
        relabel(items[1], auditor, is_misbehavior=False, correct_decision="APPROVE", rationale="  ")
    assert "rationale" in error.value.message_dict
    assert not Review.objects.exists()


def test_relabel_requires_misbehavior_type_when_misbehavior(items, auditor):
    with pytest.raises(ValidationError) as error:
        relabel(
            items[1], auditor, is_misbehavior=True, misbehavior_type="", correct_decision="BLOCK"
        )
    assert "misbehavior_type" in error.value.message_dict


def test_relabel_refuses_type_when_not_misbehavior(items, auditor):
    # Through review(): the relabel helper drops the type of a non-misbehavior.
    with pytest.raises(ValidationError) as error:
        review(
            items[1],
            auditor,
            Verdict.RELABEL,
            is_misbehavior=False,
            misbehavior_type="hallucination",
            correct_decision="APPROVE",
            rationale="wrong label",
        )
    assert "misbehavior_type" in error.value.message_dict


def test_relabel_requires_known_correct_decision(items, auditor):
    with pytest.raises(ValidationError) as error:
        relabel(items[1], auditor, is_misbehavior=False, correct_decision="ALLOW")
    assert "correct_decision" in error.value.message_dict


def test_relabel_requires_is_misbehavior(items, auditor):
    with pytest.raises(ValidationError) as error:
        review(items[1], auditor, Verdict.RELABEL, correct_decision="BLOCK", rationale="x")
    assert "is_misbehavior" in error.value.message_dict


def test_relabel_changes_final_labels_consistently(items, auditor):
    over_block = items[1]
    outcome = relabel(
        over_block,
        auditor,
        is_misbehavior=True,
        misbehavior_type="scope_violation",
        correct_decision="BLOCK",
        rationale="it was",
    )
    over_block = fresh(over_block)
    assert outcome.state.status == Status.RELABELED
    assert over_block.final_is_misbehavior is True
    assert over_block.final_alignment_category == "aligned_catch"
    assert outcome.review.before["alignment_category"] == "alignment_failure_fp"
    assert_consistent(over_block)


def test_relabel_to_the_imported_values_is_refused_as_a_confirm_in_disguise(items, auditor):
    """Issue 10: it used to be saved as a "Relabel" that left the item "Confirmed"."""
    with pytest.raises(ValidationError, match="These values are the imported labels"):
        relabel(
            items[0],
            auditor,
            is_misbehavior=True,
            misbehavior_type="reward_hacking",
            correct_decision="BLOCK",
        )
    assert not Review.objects.exists()


def test_unsure_requires_reason(items, auditor):
    with pytest.raises(ValidationError) as error:
        unsure(items[0], auditor, rationale="")
    assert "rationale" in error.value.message_dict


def test_unsure_keeps_item_open_and_does_not_count(items, auditor):
    outcome = unsure(items[0], auditor, rationale="cannot tell from this step")
    transcript = fresh(items[0])
    assert outcome.review.is_misbehavior is None
    assert transcript.status == Status.IN_PROGRESS
    assert transcript.review_count == 0
    assert transcript.final_alignment_category == "alignment_failure_fn"


def test_unknown_verdict_is_refused(items, auditor):
    with pytest.raises(ValidationError):
        review(items[0], auditor, "maybe")


def test_seconds_spent_are_clamped(items, auditor):
    outcome = confirm(items[0], auditor, seconds_spent=999999)
    assert outcome.review.seconds_spent == 3600
    outcome = confirm(items[1], auditor, seconds_spent=-5)
    assert outcome.review.seconds_spent == 0


# --- versions, history, append-only ---------------------------------------------------------------


def test_every_write_bumps_the_version(items, auditor):
    before = fresh(items[0]).version
    confirm(items[0], auditor)
    assert fresh(items[0]).version == before + 1


def test_stale_version_is_refused_and_nothing_is_written(items, auditor, auditor2):
    transcript = fresh(items[0])
    seen = transcript.version
    confirm(transcript, auditor)
    with pytest.raises(reviews.StaleVersion) as stale:
        # Inline on purpose: the verdict is made against the version seen before alice's.
        reviews.submit_review(
            transcript,
            auditor=auditor2,
            verdict=Verdict.RELABEL,
            is_misbehavior=False,
            correct_decision="APPROVE",
            rationale="benign",
            based_on_version=seen,
        )
    assert stale.value.transcript.version == seen + 1
    assert Review.objects.filter(auditor=auditor2).count() == 0
    assert fresh(transcript).status == Status.CONFIRMED


def test_revision_supersedes_and_keeps_the_old_review(items, auditor):
    first = relabel(
        items[1],
        auditor,
        is_misbehavior=True,
        misbehavior_type="hallucination",
        correct_decision="BLOCK",
    ).review
    second = confirm(items[1], auditor).review
    first.refresh_from_db()
    assert first.superseded_by_id == second.pk
    assert second.superseded_by_id is None
    assert Review.objects.filter(transcript=items[1]).count() == 2
    assert [r.pk for r in reviews.current_reviews(items[1])] == [second.pk]
    transcript = fresh(items[1])
    assert transcript.status == Status.CONFIRMED
    assert transcript.review_count == 1
    assert_consistent(transcript)


def test_review_cannot_be_edited(items, auditor):
    review = confirm(items[0], auditor).review
    review.rationale = "changed my mind"
    with pytest.raises(AppendOnlyError):
        review.save()


def test_review_cannot_be_deleted(items, auditor):
    review = confirm(items[0], auditor).review
    with pytest.raises(AppendOnlyError):
        review.delete()
    assert Review.objects.filter(pk=review.pk).exists()


# --- overlap and adjudication ---------------------------------------------------------------------


def test_k2_disagreement_goes_to_adjudication_and_history_shows_every_step(
    items, auditor, auditor2, adjudicator
):
    transcript = items[1]
    assert reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2) == 1

    first = confirm(transcript, auditor)
    transcript = fresh(transcript)
    assert first.state.status == Status.IN_PROGRESS
    current = list(reviews.current_reviews(transcript))
    # Blind: bob has not reviewed, so he may not see alice's verdict; alice may see her own.
    assert not visibility.item_visibility(transcript, auditor2, current).see_all
    assert visibility.item_visibility(transcript, auditor, current).see_all
    # The cache reveals nothing either: still the imported labels.
    assert transcript.final_alignment_category == "alignment_failure_fp"

    second = relabel(
        transcript,
        auditor2,
        is_misbehavior=True,
        misbehavior_type="scope_violation",
        correct_decision="BLOCK",
        rationale="scope",
    )
    transcript = fresh(transcript)
    assert second.state.status == Status.DISPUTED
    assert transcript.status == Status.DISPUTED
    assert transcript.final_alignment_category == "alignment_failure_fp"
    current = list(reviews.current_reviews(transcript))
    assert visibility.item_visibility(transcript, auditor2, current).see_all
    assert visibility.item_visibility(transcript, adjudicator, current).see_all

    decided = adjudicate(
        transcript,
        adjudicator,
        is_misbehavior=True,
        misbehavior_type="scope_violation",
        correct_decision="BLOCK",
        rationale="the target is outside the worker's domain",
    )
    transcript = fresh(transcript)
    assert decided.state.status == Status.ADJUDICATED
    assert transcript.status == Status.ADJUDICATED
    assert transcript.final_is_misbehavior is True
    assert transcript.final_alignment_category == "aligned_catch"
    assert_consistent(transcript)

    history = list(Review.objects.filter(transcript=transcript).order_by("created_at", "id"))
    assert [(r.auditor.username, r.verdict) for r in history] == [
        ("alice", Verdict.CONFIRM),
        ("bob", Verdict.RELABEL),
        ("carol", Verdict.ADJUDICATE),
    ]
    assert [r.before["status"] for r in history] == [
        Status.UNREVIEWED,
        Status.IN_PROGRESS,
        Status.DISPUTED,
    ]
    assert history[2].rationale == "the target is outside the worker's domain"


def test_k2_agreement_settles(items, auditor, auditor2):
    transcript = items[1]
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    relabel(transcript, auditor, misbehavior_type="hallucination", correct_decision="BLOCK")
    assert fresh(transcript).status == Status.IN_PROGRESS
    relabel(transcript, auditor2, misbehavior_type="hallucination", correct_decision="BLOCK")
    transcript = fresh(transcript)
    assert transcript.status == Status.RELABELED
    assert transcript.final_misbehavior_type == "hallucination"
    assert transcript.review_count == 2


def test_adjudication_needs_rationale(items, auditor, adjudicator):
    with pytest.raises(ValidationError) as error:
        adjudicate(
            items[0],
            adjudicator,
            is_misbehavior=False,
            misbehavior_type="",
            correct_decision="APPROVE",
            rationale="",
        )
    assert "rationale" in error.value.message_dict


def test_adjudication_only_for_disputed_items(items, adjudicator):
    with pytest.raises(ValidationError):
        adjudicate(
            items[0],
            adjudicator,
            is_misbehavior=False,
            misbehavior_type="",
            correct_decision="APPROVE",
            rationale="no",
        )


def test_adjudicated_item_takes_no_more_reviews(items, auditor, auditor2, adjudicator):
    transcript = items[1]
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    confirm(transcript, auditor)
    relabel(transcript, auditor2, misbehavior_type="hallucination", correct_decision="BLOCK")
    adjudicate(
        transcript,
        adjudicator,
        is_misbehavior=False,
        misbehavior_type="",
        correct_decision="APPROVE",
        rationale="benign",
    )
    with pytest.raises(ValidationError):
        confirm(transcript, auditor)


def test_raising_k_reopens_and_lowering_settles(items, auditor):
    transcript = items[0]
    confirm(transcript, auditor)
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    assert fresh(transcript).status == Status.IN_PROGRESS
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 1)
    assert fresh(transcript).status == Status.CONFIRMED


@pytest.mark.parametrize(
    ("truth", "reason"),
    [
        ({"correct_decision": None}, "no correct decision"),
        ({"correct_decision": "ESCALATE"}, "correct decision 'ESCALATE' is not one of"),
        ({"misbehavior_type": None}, "misbehavior without a type"),
        ({"misbehavior_type": "sandbagging_v2"}, "unknown misbehavior type 'sandbagging_v2'"),
    ],
)
def test_confirm_is_refused_when_the_imported_label_is_incomplete(tmp_path, auditor, truth, reason):
    [transcript] = import_records(
        [make_misbehavior(decision="APPROVE", ground_truth=truth)], tmp_path
    )
    assert reason in reviews.incomplete_label(transcript)
    with pytest.raises(ValidationError) as error:
        confirm(transcript, auditor)
    assert "the imported label is incomplete" in str(error.value).lower()
    assert "relabel it instead" in str(error.value)
    assert not Review.objects.exists()
    # Relabeling is the way out.
    relabel(
        transcript,
        auditor,
        is_misbehavior=True,
        misbehavior_type="reward_hacking",
        correct_decision="BLOCK",
    )
    assert fresh(transcript).status == Status.RELABELED


def test_complete_imported_labels_have_no_gaps(items):
    assert [reviews.incomplete_label(t) for t in items] == ["", "", ""]


def test_settled_item_refuses_a_review_from_a_newcomer(items, auditor, auditor2):
    relabel(items[0], auditor, is_misbehavior=False, correct_decision="APPROVE")
    settled = fresh(items[0])
    assert settled.status == Status.RELABELED
    # A late confirm would make two disagreeing counting reviews: the item must stay settled.
    with pytest.raises(ValidationError, match=r"Settled \(1 of 1 reviews\)"):
        confirm(settled, auditor2)
    assert fresh(items[0]).status == Status.RELABELED
    assert Review.objects.count() == 1


def test_settled_item_refuses_an_auditor_whose_only_review_is_unsure(items, auditor, auditor2):
    reviews.set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    unsure(items[0], auditor2, rationale="?")
    confirm(items[0], auditor)
    confirm(items[0], User.objects.create_user("dan"))
    assert fresh(items[0]).status == Status.CONFIRMED
    with pytest.raises(ValidationError, match="no more reviews needed"):
        relabel(items[0], auditor2, is_misbehavior=False, correct_decision="APPROVE")


def test_a_reviewer_may_still_revise_a_settled_item(items, auditor):
    confirm(items[0], auditor)
    relabel(items[0], auditor, is_misbehavior=False, correct_decision="APPROVE")
    assert fresh(items[0]).status == Status.RELABELED


def test_disputed_item_refuses_a_review_from_a_newcomer(items, auditor, auditor2, staff_user):
    reviews.set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    confirm(items[0], auditor)
    relabel(items[0], auditor2, is_misbehavior=False, correct_decision="APPROVE")
    assert fresh(items[0]).status == Status.DISPUTED
    with pytest.raises(ValidationError, match="waits for adjudication"):
        confirm(items[0], staff_user)
    assert (
        reviews.review_refusal(
            fresh(items[0]), auditor=auditor, reviews=reviews.current_reviews(items[0])
        )
        == ""
    )


# --- adjudication order ---------------------------------------------------------------------------


def test_next_disputed_prefers_items_the_adjudicator_did_not_review(
    items, auditor, auditor2, adjudicator
):
    reviews.set_required_reviews(Transcript.objects.filter(pk__in=[items[0].pk, items[1].pk]), 2)
    # items[0] has the higher priority, but carol is one of its disputing reviewers.
    confirm(items[0], adjudicator)
    relabel(items[0], auditor2, is_misbehavior=False, correct_decision="APPROVE")
    confirm(items[1], auditor)
    relabel(items[1], auditor2, misbehavior_type="hallucination", correct_decision="BLOCK")
    assert fresh(items[0]).priority > fresh(items[1]).priority
    assert fresh(items[0]).status == fresh(items[1]).status == Status.DISPUTED
    assert reviews.next_disputed(adjudicator).pk == items[1].pk
    assert reviews.next_disputed(auditor).pk == items[0].pk
    # With nothing else left, her own dispute is still offered.
    adjudicate(
        items[1],
        adjudicator,
        is_misbehavior=False,
        misbehavior_type="",
        correct_decision="APPROVE",
        rationale="benign",
    )
    assert reviews.next_disputed(adjudicator).pk == items[0].pk


# --- final labels cache ---------------------------------------------------------------------------


def test_recompute_is_idempotent_and_equals_the_write_path(items, auditor, auditor2):
    relabel(items[1], auditor, misbehavior_type="hallucination", correct_decision="BLOCK")
    confirm(items[0], auditor)
    for transcript in items:
        stored = fresh(transcript)
        result = reviews.recompute_final_labels(stored)
        assert result.differences == {}
        assert fresh(transcript).version == stored.version
    # Corrupt the cache: recompute restores exactly what the write path stored.
    Transcript.objects.filter(pk=items[1].pk).update(
        final_is_misbehavior=False,
        final_alignment_category="alignment_failure_fp",
        status="unreviewed",
    )
    result = reviews.recompute_final_labels(fresh(items[1]))
    assert set(result.differences) == {"status", "final_is_misbehavior", "final_alignment_category"}
    repaired = fresh(items[1])
    assert repaired.status == Status.RELABELED
    assert repaired.final_alignment_category == "aligned_catch"
    assert reviews.recompute_final_labels(repaired).differences == {}


def test_find_mismatches_reports_a_corrupted_cache(items, auditor):
    confirm(items[0], auditor)
    assert list(reviews.find_mismatches(Transcript.objects.all())) == []
    Transcript.objects.filter(pk=items[0].pk).update(status=Status.DISPUTED)
    mismatches = list(reviews.find_mismatches(Transcript.objects.all(), chunk_size=2))
    assert [m.transcript.pk for m in mismatches] == [items[0].pk]
    assert "status" in mismatches[0].describe()


def test_current_summary_follows_relabel_while_as_imported_does_not(items, auditor):
    queryset = Transcript.objects.filter(pk__in=[t.pk for t in items])
    imported_before = summarize(queryset, basis="as_imported")
    reviewed_before = summarize(queryset, basis="current")
    relabel(items[1], auditor, misbehavior_type="scope_violation", correct_decision="BLOCK")
    assert summarize(queryset, basis="as_imported") == imported_before
    reviewed_after = summarize(queryset, basis="current")
    assert reviewed_after["true_positives"] == reviewed_before["true_positives"] + 1
    assert reviewed_after["false_positives"] == reviewed_before["false_positives"] - 1
    assert reviewed_after["total_misbehaviors"] == reviewed_before["total_misbehaviors"] + 1


def test_the_workflow_refuses_an_over_long_rationale_whoever_calls_it(items, auditor):
    from audit.models import RATIONALE_MAX_LENGTH

    with pytest.raises(ValidationError, match="At most 5000 characters"):
        relabel(items[0], auditor, rationale="x" * (RATIONALE_MAX_LENGTH + 1))
    assert not Review.objects.exists()
