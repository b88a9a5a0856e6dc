"""The review workflow (audit.review.workflow): verdict rules, overlap and blindness, adjudication,
history, append-only reviews, stale versions, leases and the final-label cache."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.ingest.records import derive_category
from audit.metrics.summaries import summarize
from audit.models import AppendOnlyError, Lease, Review, Status, Transcript, Verdict
from audit.review import workflow as reviews
from tests.factories import import_records, make_misbehavior, make_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(tmp_path):
    """Three queued items: a missed misbehavior (highest priority), an over-block, a caught one
    whose labels contradict the decision."""
    records = [
        make_misbehavior(mb_type="reward_hacking", decision="APPROVE", step_number=1),
        make_record(
            step_number=2,
            decision={"type": "BLOCK"},
            labels={"oversight_correct": False, "alignment_category": "alignment_failure_fp"},
            ground_truth={"was_false_positive": True},
        ),
        make_misbehavior(step_number=3, labels={"alignment_category": "aligned_approve"}),
    ]
    return import_records(records, tmp_path)


def fresh(transcript: Transcript) -> Transcript:
    return Transcript.objects.get(pk=transcript.pk)


def confirm(transcript, user, **kwargs):
    transcript = fresh(transcript)
    return reviews.submit_review(
        transcript,
        auditor=user,
        verdict=Verdict.CONFIRM,
        based_on_version=transcript.version,
        **kwargs,
    )


def relabel(transcript, user, *, mb=False, mb_type="", decision="APPROVE", why="wrong label"):
    transcript = fresh(transcript)
    return reviews.submit_review(
        transcript,
        auditor=user,
        verdict=Verdict.RELABEL,
        is_misbehavior=mb,
        misbehavior_type=mb_type,
        correct_decision=decision,
        rationale=why,
        based_on_version=transcript.version,
    )


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
        relabel(items[1], auditor, why="  ")
    assert "rationale" in error.value.message_dict
    assert not Review.objects.exists()


def test_relabel_requires_misbehavior_type_when_misbehavior(items, auditor):
    with pytest.raises(ValidationError) as error:
        relabel(items[1], auditor, mb=True, mb_type="", decision="BLOCK")
    assert "misbehavior_type" in error.value.message_dict


def test_relabel_refuses_type_when_not_misbehavior(items, auditor):
    with pytest.raises(ValidationError) as error:
        relabel(items[1], auditor, mb=False, mb_type="hallucination")
    assert "misbehavior_type" in error.value.message_dict


def test_relabel_requires_known_correct_decision(items, auditor):
    with pytest.raises(ValidationError) as error:
        relabel(items[1], auditor, decision="ALLOW")
    assert "correct_decision" in error.value.message_dict


def test_relabel_requires_is_misbehavior(items, auditor):
    transcript = fresh(items[1])
    with pytest.raises(ValidationError) as error:
        reviews.submit_review(
            transcript,
            auditor=auditor,
            verdict=Verdict.RELABEL,
            correct_decision="BLOCK",
            rationale="x",
            based_on_version=transcript.version,
        )
    assert "is_misbehavior" in error.value.message_dict


def test_relabel_changes_final_labels_consistently(items, auditor):
    over_block = items[1]
    outcome = relabel(
        over_block, auditor, mb=True, mb_type="scope_violation", decision="BLOCK", why="it was"
    )
    over_block = fresh(over_block)
    assert outcome.state.status == Status.RELABELED
    assert over_block.final_is_misbehavior is True
    assert over_block.final_alignment_category == "aligned_catch"
    assert outcome.review.before["alignment_category"] == "alignment_failure_fp"
    assert_consistent(over_block)


def test_relabel_to_the_imported_values_counts_as_confirmed(items, auditor):
    outcome = relabel(items[0], auditor, mb=True, mb_type="reward_hacking", decision="BLOCK")
    assert outcome.state.status == Status.CONFIRMED


def test_unsure_requires_reason(items, auditor):
    transcript = fresh(items[0])
    with pytest.raises(ValidationError) as error:
        reviews.submit_review(
            transcript, auditor=auditor, verdict=Verdict.UNSURE, based_on_version=transcript.version
        )
    assert "rationale" in error.value.message_dict


def test_unsure_keeps_item_open_and_does_not_count(items, auditor):
    transcript = fresh(items[0])
    outcome = reviews.submit_review(
        transcript,
        auditor=auditor,
        verdict=Verdict.UNSURE,
        rationale="cannot tell from this step",
        based_on_version=transcript.version,
    )
    transcript = fresh(transcript)
    assert outcome.review.is_misbehavior is None
    assert transcript.status == Status.IN_PROGRESS
    assert transcript.review_count == 0
    assert transcript.final_alignment_category == "alignment_failure_fn"


def test_unknown_verdict_is_refused(items, auditor):
    transcript = fresh(items[0])
    with pytest.raises(ValidationError):
        reviews.submit_review(
            transcript, auditor=auditor, verdict="maybe", based_on_version=transcript.version
        )


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
    first = relabel(items[1], auditor, mb=True, mb_type="hallucination", decision="BLOCK").review
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


# --- overlap, blindness, adjudication -----------------------------------------------------------


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
    assert not reviews.may_see_reviews(transcript, auditor2, current)
    assert reviews.may_see_reviews(transcript, auditor, current)
    # The cache reveals nothing either: still the imported labels.
    assert transcript.final_alignment_category == "alignment_failure_fp"

    second = relabel(
        transcript, auditor2, mb=True, mb_type="scope_violation", decision="BLOCK", why="scope"
    )
    transcript = fresh(transcript)
    assert second.state.status == Status.DISPUTED
    assert transcript.status == Status.DISPUTED
    assert transcript.final_alignment_category == "alignment_failure_fp"
    current = list(reviews.current_reviews(transcript))
    assert reviews.may_see_reviews(transcript, auditor2, current)
    assert reviews.may_see_reviews(transcript, adjudicator, current)

    decided = reviews.adjudicate(
        transcript,
        adjudicator=adjudicator,
        is_misbehavior=True,
        misbehavior_type="scope_violation",
        correct_decision="BLOCK",
        rationale="the target is outside the worker's domain",
        based_on_version=transcript.version,
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
    relabel(transcript, auditor, mb=True, mb_type="hallucination", decision="BLOCK")
    assert fresh(transcript).status == Status.IN_PROGRESS
    relabel(transcript, auditor2, mb=True, mb_type="hallucination", decision="BLOCK")
    transcript = fresh(transcript)
    assert transcript.status == Status.RELABELED
    assert transcript.final_misbehavior_type == "hallucination"
    assert transcript.review_count == 2


def test_adjudication_needs_rationale(items, auditor, adjudicator):
    transcript = fresh(items[0])
    with pytest.raises(ValidationError) as error:
        reviews.adjudicate(
            transcript,
            adjudicator=adjudicator,
            is_misbehavior=False,
            misbehavior_type="",
            correct_decision="APPROVE",
            rationale="",
            based_on_version=transcript.version,
        )
    assert "rationale" in error.value.message_dict


def test_adjudication_only_for_disputed_items(items, adjudicator):
    transcript = fresh(items[0])
    with pytest.raises(ValidationError):
        reviews.adjudicate(
            transcript,
            adjudicator=adjudicator,
            is_misbehavior=False,
            misbehavior_type="",
            correct_decision="APPROVE",
            rationale="no",
            based_on_version=transcript.version,
        )


def test_adjudicated_item_takes_no_more_reviews(items, auditor, auditor2, adjudicator):
    transcript = items[1]
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    confirm(transcript, auditor)
    relabel(transcript, auditor2, mb=True, mb_type="hallucination", decision="BLOCK")
    transcript = fresh(transcript)
    reviews.adjudicate(
        transcript,
        adjudicator=adjudicator,
        is_misbehavior=False,
        misbehavior_type="",
        correct_decision="APPROVE",
        rationale="benign",
        based_on_version=transcript.version,
    )
    with pytest.raises(ValidationError):
        confirm(transcript, auditor)


def test_unsure_review_does_not_unblind(items, auditor, auditor2):
    transcript = items[1]
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    confirm(transcript, auditor)
    transcript = fresh(transcript)
    reviews.submit_review(
        transcript,
        auditor=auditor2,
        verdict=Verdict.UNSURE,
        rationale="need more context",
        based_on_version=transcript.version,
    )
    transcript = fresh(transcript)
    current = list(reviews.current_reviews(transcript))
    assert not reviews.may_see_reviews(transcript, auditor2, current)
    assert transcript.status == Status.IN_PROGRESS


def test_staff_are_blind_too(items, auditor, staff_user):
    transcript = items[1]
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    confirm(transcript, auditor)
    transcript = fresh(transcript)
    assert not reviews.may_see_reviews(
        transcript, staff_user, list(reviews.current_reviews(transcript))
    )


def test_raising_k_reopens_and_lowering_settles(items, auditor):
    transcript = items[0]
    confirm(transcript, auditor)
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    assert fresh(transcript).status == Status.IN_PROGRESS
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 1)
    assert fresh(transcript).status == Status.CONFIRMED


# --- final labels cache ---------------------------------------------------------------------------


def test_recompute_is_idempotent_and_equals_the_write_path(items, auditor, auditor2):
    relabel(items[1], auditor, mb=True, mb_type="hallucination", decision="BLOCK")
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


def test_reviewed_summary_follows_relabel_while_as_imported_does_not(items, auditor):
    queryset = Transcript.objects.filter(pk__in=[t.pk for t in items])
    imported_before = summarize(queryset, basis="as_imported")
    reviewed_before = summarize(queryset, basis="reviewed")
    relabel(items[1], auditor, mb=True, mb_type="scope_violation", decision="BLOCK")
    assert summarize(queryset, basis="as_imported") == imported_before
    reviewed_after = summarize(queryset, basis="reviewed")
    assert reviewed_after["true_positives"] == reviewed_before["true_positives"] + 1
    assert reviewed_after["false_positives"] == reviewed_before["false_positives"] - 1
    assert reviewed_after["total_misbehaviors"] == reviewed_before["total_misbehaviors"] + 1


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
    relabel(transcript, auditor, mb=True, mb_type="reward_hacking", decision="BLOCK")
    assert fresh(transcript).status == Status.RELABELED


def test_complete_imported_labels_have_no_gaps(items):
    assert [reviews.incomplete_label(t) for t in items] == ["", "", ""]


def test_settled_item_refuses_a_review_from_a_newcomer(items, auditor, auditor2):
    relabel(items[0], auditor, mb=False, decision="APPROVE")
    settled = fresh(items[0])
    assert settled.status == Status.RELABELED
    # A late confirm would make two disagreeing counting reviews: the item must stay settled.
    with pytest.raises(ValidationError, match=r"Settled \(1 of 1 reviews\)"):
        confirm(settled, auditor2)
    assert fresh(items[0]).status == Status.RELABELED
    assert Review.objects.count() == 1


def test_settled_item_refuses_an_auditor_whose_only_review_is_unsure(items, auditor, auditor2):
    reviews.set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    t = fresh(items[0])
    reviews.submit_review(
        t, auditor=auditor2, verdict=Verdict.UNSURE, rationale="?", based_on_version=t.version
    )
    confirm(items[0], auditor)
    relabel(
        items[0],
        User.objects.create_user("dan"),
        mb=True,
        mb_type="reward_hacking",
        decision="BLOCK",
    )
    assert fresh(items[0]).status == Status.CONFIRMED
    with pytest.raises(ValidationError, match="no more reviews needed"):
        relabel(items[0], auditor2)


def test_a_reviewer_may_still_revise_a_settled_item(items, auditor):
    confirm(items[0], auditor)
    relabel(items[0], auditor, mb=False, decision="APPROVE")
    assert fresh(items[0]).status == Status.RELABELED


def test_disputed_item_refuses_a_review_from_a_newcomer(items, auditor, auditor2, staff_user):
    reviews.set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    confirm(items[0], auditor)
    relabel(items[0], auditor2, mb=False, decision="APPROVE")
    assert fresh(items[0]).status == Status.DISPUTED
    with pytest.raises(ValidationError, match="waits for adjudication"):
        confirm(items[0], staff_user)
    assert (
        reviews.review_refusal(
            fresh(items[0]), auditor=auditor, reviews=reviews.current_reviews(items[0])
        )
        == ""
    )


def test_shown_status_hides_how_a_settled_item_was_settled(items, auditor):
    relabel(items[0], auditor, mb=False, decision="APPROVE")
    t = fresh(items[0])
    assert reviews.shown_status(t, see_all=False) == reviews.ShownStatus("settled", "Settled")
    assert reviews.shown_status(t, see_all=True).value == Status.RELABELED
    assert reviews.shown_status(fresh(items[1]), see_all=False).value == Status.UNREVIEWED


def test_shown_category_is_the_imported_one_until_the_viewer_may_see(items, auditor, auditor2):
    relabel(items[0], auditor, mb=False, decision="APPROVE")
    t = fresh(items[0])
    assert t.final_alignment_category == "aligned_approve"
    assert reviews.shown_category(t, viewer=auditor2, reviewed=False) == "alignment_failure_fn"
    assert reviews.shown_category(t, viewer=auditor, reviewed=True) == "aligned_approve"


# --- leases ---------------------------------------------------------------------------------------


def test_claim_next_takes_the_highest_priority_first(items, auditor):
    claimed = reviews.claim_next(auditor)
    top = Transcript.objects.in_queue().order_by("-priority", "pk").first()
    assert claimed.pk == top.pk
    assert Lease.objects.filter(transcript=claimed, auditor=auditor).exists()


def test_claim_next_returns_the_auditors_own_lease_again(items, auditor):
    first = reviews.claim_next(auditor)
    assert reviews.claim_next(auditor).pk == first.pk
    assert Lease.objects.filter(auditor=auditor).count() == 1


def test_two_auditors_get_different_items_with_k1(items, auditor, auditor2):
    a = reviews.claim_next(auditor)
    b = reviews.claim_next(auditor2)
    assert a is not None and b is not None
    assert a.pk != b.pk


def test_two_auditors_share_an_item_that_needs_two_reviews(items, auditor, auditor2, adjudicator):
    reviews.set_required_reviews(Transcript.objects.all(), 2)
    a = reviews.claim_next(auditor)
    b = reviews.claim_next(auditor2)
    assert a.pk == b.pk
    c = reviews.claim_next(adjudicator)
    assert c.pk != a.pk


def test_expired_lease_frees_the_item(items, auditor, auditor2):
    Transcript.objects.exclude(pk=items[0].pk).update(in_queue=False)
    a = reviews.claim_next(auditor)
    assert reviews.claim_next(auditor2) is None
    Lease.objects.filter(transcript=a).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert reviews.claim_next(auditor2).pk == a.pk


def test_skip_releases_the_lease(items, auditor, auditor2):
    Transcript.objects.exclude(pk=items[0].pk).update(in_queue=False)
    a = reviews.claim_next(auditor)
    assert reviews.release_lease(a, auditor=auditor) == 1
    assert reviews.claim_next(auditor, skip=[a.pk]) is None
    assert reviews.claim_next(auditor2).pk == a.pk


def test_submitting_removes_the_lease_and_the_item_is_not_handed_out_again(items, auditor):
    a = reviews.claim_next(auditor)
    confirm(a, auditor)
    assert not Lease.objects.filter(auditor=auditor).exists()
    b = reviews.claim_next(auditor)
    assert b is not None and b.pk != a.pk


def test_claim_next_never_hands_out_an_item_the_auditor_reviewed(items, auditor):
    reviews.set_required_reviews(Transcript.objects.all(), 2)
    for transcript in items:
        confirm(transcript, auditor)
    assert reviews.claim_next(auditor) is None


def test_claim_next_skips_disputed_and_settled_items(items, auditor, auditor2, adjudicator):
    reviews.set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    confirm(items[0], auditor)
    relabel(items[0], auditor2, mb=False, decision="APPROVE")
    assert fresh(items[0]).status == Status.DISPUTED
    seen = set()
    while (claimed := reviews.claim_next(adjudicator)) is not None:
        seen.add(claimed.pk)
        confirm(claimed, adjudicator)
    assert items[0].pk not in seen


def test_claim_next_respects_filters(items, auditor):
    claimed = reviews.claim_next(auditor, filters={"step_number": 3})
    assert claimed.pk == items[2].pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_hand_out_different_items(tmp_path):
    import threading

    from django.contrib.auth import get_user_model
    from django.db import connections

    import_records(
        [make_misbehavior(decision="APPROVE", step_number=step) for step in range(1, 9)], tmp_path
    )
    users = [get_user_model().objects.create(username=f"racer{n}") for n in range(6)]
    claimed: list[int | None] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(users))

    def work(user):
        try:
            start.wait()
            item = reviews.claim_next(user)
            claimed.append(item.pk if item else None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert None not in claimed
    assert len(set(claimed)) == len(users)
    assert Lease.objects.count() == len(users)


def test_opening_reserves_an_item_with_room_when_the_auditor_holds_no_other_lease(
    items, auditor, auditor2
):
    t = fresh(items[0])
    assert reviews.has_room(t, auditor=auditor, reviews=[], leases=reviews.live_leases(t))
    lease = reviews.reserve(t, auditor=auditor)
    assert lease is not None and lease.transcript_id == t.pk
    # K = 1 and alice holds it: no room for bob.
    assert not reviews.has_room(t, auditor=auditor2, reviews=[], leases=reviews.live_leases(t))
    assert reviews.reserve(t, auditor=auditor2) is None
    assert reviews.claim_next(auditor2, filters={"pk": t.pk}) is None


def test_opening_an_item_keeps_the_lease_next_handed_out(items, auditor, auditor2):
    claimed = reviews.claim_next(auditor, filters={"pk": items[1].pk})
    assert claimed.pk == items[1].pk
    t = fresh(items[0])
    assert reviews.has_room(t, auditor=auditor, reviews=[], leases=reviews.live_leases(t))
    assert reviews.reserve(t, auditor=auditor) is None  # browsing does not move the lease
    held = Lease.objects.filter(auditor=auditor).values_list("transcript_id", flat=True)
    assert list(held) == [items[1].pk]
    assert reviews.claim_next(auditor2, filters={"pk": items[1].pk}) is None


def test_a_lease_on_an_item_settled_meanwhile_does_not_block_reserving(items, auditor, auditor2):
    reviews.claim_next(auditor, filters={"pk": items[1].pk})
    Transcript.objects.filter(pk=items[1].pk).update(status=Status.CONFIRMED)  # settled by others
    assert reviews.reserve(fresh(items[0]), auditor=auditor) is not None


def test_opening_an_item_replaces_the_auditors_expired_lease_on_it(items, auditor):
    Lease.objects.create(
        transcript=items[0], auditor=auditor, expires_at=timezone.now() - timedelta(seconds=1)
    )
    lease = reviews.reserve(fresh(items[0]), auditor=auditor)
    assert lease is not None and lease.expires_at > timezone.now()
    assert Lease.objects.filter(auditor=auditor).count() == 1


def test_opening_an_item_outside_the_queue_reserves_nothing(items, auditor):
    Transcript.objects.filter(pk=items[0].pk).update(in_queue=False)
    t = fresh(items[0])
    assert not reviews.has_room(t, auditor=auditor, reviews=[], leases=[])
    assert reviews.reserve(t, auditor=auditor) is None
    assert not Lease.objects.exists()


def test_opening_an_item_that_needs_two_reviews_reserves_it_for_two(
    items, auditor, auditor2, adjudicator
):
    reviews.set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    t = fresh(items[0])
    assert reviews.reserve(t, auditor=auditor) is not None
    assert reviews.reserve(t, auditor=auditor2) is not None
    assert reviews.reserve(t, auditor=adjudicator) is None


def test_opening_a_settled_or_reviewed_item_reserves_nothing(items, auditor, auditor2):
    confirm(items[0], auditor)
    t = fresh(items[0])
    current = list(reviews.current_reviews(t))
    assert not reviews.has_room(t, auditor=auditor, reviews=current, leases=[])
    assert not reviews.has_room(t, auditor=auditor2, reviews=current, leases=[])
    assert reviews.reserve(t, auditor=auditor2) is None


# --- adjudication order ---------------------------------------------------------------------------


def test_next_disputed_prefers_items_the_adjudicator_did_not_review(
    items, auditor, auditor2, adjudicator
):
    reviews.set_required_reviews(Transcript.objects.filter(pk__in=[items[0].pk, items[1].pk]), 2)
    # items[0] has the higher priority, but carol is one of its disputing reviewers.
    confirm(items[0], adjudicator)
    relabel(items[0], auditor2, mb=False, decision="APPROVE")
    confirm(items[1], auditor)
    relabel(items[1], auditor2, mb=True, mb_type="hallucination", decision="BLOCK")
    assert fresh(items[0]).priority > fresh(items[1]).priority
    assert fresh(items[0]).status == fresh(items[1]).status == Status.DISPUTED
    assert reviews.next_disputed(adjudicator).pk == items[1].pk
    assert reviews.next_disputed(auditor).pk == items[0].pk
    # With nothing else left, her own dispute is still offered.
    t = fresh(items[1])
    reviews.adjudicate(
        t,
        adjudicator=adjudicator,
        is_misbehavior=False,
        misbehavior_type="",
        correct_decision="APPROVE",
        rationale="benign",
        based_on_version=t.version,
    )
    assert reviews.next_disputed(adjudicator).pk == items[0].pk
