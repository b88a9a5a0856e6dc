"""Blindness (audit.review.visibility): who may see other auditors' verdicts and the final labels,
what a blind viewer is told of a settled item, and ``gave_verdict`` checked against its SQL twin
``own_verdict_exists``."""

import pytest

from audit.models import Review, Status, Transcript
from audit.review import visibility
from audit.review.workflow import current_reviews, set_required_reviews
from tests.factories import adjudicate, confirm, fresh, relabel, unsure

pytestmark = pytest.mark.django_db


def test_unsure_review_does_not_unblind(items, auditor, auditor2):
    transcript = items[1]
    set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    confirm(transcript, auditor)
    unsure(transcript, auditor2, rationale="need more context")
    transcript = fresh(transcript)
    current = list(current_reviews(transcript))
    assert not visibility.item_visibility(transcript, auditor2, current).see_all
    assert transcript.status == Status.IN_PROGRESS


def test_staff_are_blind_too(items, auditor, staff_user):
    transcript = items[1]
    set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    confirm(transcript, auditor)
    transcript = fresh(transcript)
    current = list(current_reviews(transcript))
    assert not visibility.item_visibility(transcript, staff_user, current).see_all


def test_shown_status_hides_how_a_settled_item_was_settled(items, auditor):
    relabel(items[0], auditor, is_misbehavior=False, correct_decision="APPROVE")
    t = fresh(items[0])
    assert visibility.shown_status(t, see_all=False) == visibility.ShownStatus("settled", "Settled")
    assert visibility.shown_status(t, see_all=True).value == Status.RELABELED
    assert visibility.shown_status(fresh(items[1]), see_all=False).value == Status.UNREVIEWED


def test_shown_category_is_the_imported_one_until_the_viewer_may_see(items, auditor, auditor2):
    relabel(items[0], auditor, is_misbehavior=False, correct_decision="APPROVE")
    t = fresh(items[0])
    assert t.final_alignment_category == "aligned_approve"
    blind = visibility.visibility(t, auditor2, reviewed=False)
    reviewer = visibility.visibility(t, auditor, reviewed=True)
    assert visibility.shown_category(t, see_all=blind.see_all) == "alignment_failure_fn"
    assert visibility.shown_category(t, see_all=reviewer.see_all) == "aligned_approve"


# --- the twins: gave_verdict (Python) and own_verdict_exists (SQL) agree ----------------------

# Who does what on the item (items[0], K = 2 so it stays open for everyone) before we ask
# whether alice gave a verdict on it: (verdict, who), or ("elsewhere", who) for a confirm on
# another item.
VERDICTS = [
    # case, what happens first, whether alice gave a verdict
    ("no review", [], False),
    ("own confirm", [("confirm", "alice")], True),
    ("own relabel", [("relabel", "alice")], True),
    ("own unsure", [("unsure", "alice")], False),
    ("own superseded and current", [("relabel", "alice"), ("confirm", "alice")], True),
    ("own unsure, then a verdict", [("unsure", "alice"), ("confirm", "alice")], True),
    ("own verdict, then unsure", [("confirm", "alice"), ("unsure", "alice")], False),
    ("others' verdicts only", [("confirm", "bob"), ("unsure", "carol")], False),
    (
        "others' dispute, adjudicated",
        [("confirm", "bob"), ("relabel", "carol"), ("adjudicate", "carol")],
        False,
    ),
    ("own confirm on another item only", [("elsewhere", "alice")], False),
]


def give(items, step, users) -> None:
    verdict, who = step
    item, user = items[0], users[who]
    if verdict == "confirm":
        confirm(item, user)
    elif verdict == "relabel":
        relabel(item, user, is_misbehavior=False, correct_decision="APPROVE")
    elif verdict == "unsure":
        unsure(item, user)
    elif verdict == "adjudicate":
        adjudicate(item, user)
    elif verdict == "elsewhere":
        confirm(items[1], user)
    else:
        raise ValueError(step)


@pytest.mark.parametrize(
    ("steps", "expected"), [case[1:] for case in VERDICTS], ids=[case[0] for case in VERDICTS]
)
def test_gave_verdict_and_own_verdict_exists_agree(
    steps, expected, items, auditor, auditor2, adjudicator
):
    users = {"alice": auditor, "bob": auditor2, "carol": adjudicator}
    set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    for step in steps:
        give(items, step, users)
    # Every review, superseded ones too: gave_verdict must pick the current ones itself.
    every_review = list(Review.objects.filter(transcript=items[0]))
    gave = visibility.gave_verdict(auditor, every_review)
    annotated = dict(
        Transcript.objects.annotate(reviewed=visibility.own_verdict_exists(auditor)).values_list(
            "pk", "reviewed"
        )
    )
    assert (gave, annotated[items[0].pk]) == (expected, expected)
