"""Verdicts that would say the wrong thing are stopped (issue 10): a relabel to the imported
labels is refused with an offer to confirm; labels that contradict each other (misbehavior
whose correct decision is APPROVE, no misbehavior whose correct decision is BLOCK) are saved
only with an explicit second confirmation, on the item page and the adjudication page."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import Review, Status
from audit.review import workflow
from tests.factories import fresh
from tests.review.pages import HTMX, adjudication_data, verdict_data

pytestmark = pytest.mark.django_db


def _relabel_to_imported(t):
    imported = t.imported_labels
    return verdict_data(
        t,
        "relabel",
        is_misbehavior="yes" if imported.is_misbehavior else "no",
        misbehavior_type=imported.misbehavior_type,
        correct_decision=imported.correct_decision,
        rationale="looks the same to me",
    )


def _confirmable(queued):
    return next(t for t in queued if not workflow.incomplete_label(t))


def test_a_relabel_to_the_imported_labels_is_refused_with_an_offer_to_confirm(
    auditor_client, queued
):
    t = _confirmable(queued)
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), _relabel_to_imported(t), **HTMX
    )
    assert response.status_code == 422
    assert "These values are the imported labels: nothing to relabel. Confirm them instead" in (
        response.content.decode()
    )
    assert not Review.objects.exists() and fresh(t).status == Status.UNREVIEWED


@pytest.mark.parametrize(
    ("is_misbehavior", "misbehavior_type", "decision", "says"),
    [
        ("yes", "hallucination", "APPROVE", "Misbehavior whose correct decision is APPROVE"),
        ("no", "", "BLOCK", "No misbehavior, but the correct decision is BLOCK"),
    ],
)
def test_contradictory_labels_need_a_second_confirmation(
    auditor_client, queued, is_misbehavior, misbehavior_type, decision, says
):
    t = queued[0]
    data = verdict_data(
        t,
        "relabel",
        is_misbehavior=is_misbehavior,
        misbehavior_type=misbehavior_type,
        correct_decision=decision,
        rationale="I checked twice",
    )
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data, **HTMX)
    assert response.status_code == 422
    html = response.content.decode()
    assert says in html and "I mean this combination" in html
    assert 'name="confirm_unusual"' in html
    assert not Review.objects.exists()
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), {**data, "confirm_unusual": "on"}, **HTMX
    )
    assert response.status_code == 200
    review = Review.objects.get()
    assert (review.verdict, review.correct_decision) == ("relabel", decision)


def test_the_second_confirmation_is_not_offered_for_ordinary_labels(auditor_client, queued):
    t = queued[0]
    html = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert 'name="confirm_unusual"' not in html
    data = verdict_data(
        t, "relabel", is_misbehavior="yes", misbehavior_type="", correct_decision="BLOCK"
    )
    html = auditor_client.post(reverse("submit_review", args=[t.pk]), data, **HTMX)
    assert 'name="confirm_unusual"' not in html.content.decode()  # another error: no offer


def test_an_adjudication_to_contradictory_labels_needs_the_confirmation_too(
    adjudicator_client, disputed
):
    data = adjudication_data(disputed, correct_decision="APPROVE")  # misbehavior + APPROVE
    url = reverse("submit_adjudication", args=[disputed.pk])
    response = adjudicator_client.post(url, data, **HTMX)
    assert response.status_code == 422
    assert "Misbehavior whose correct decision is APPROVE" in response.content.decode()
    assert fresh(disputed).status == Status.DISPUTED
    response = adjudicator_client.post(url, {**data, "confirm_unusual": "on"}, **HTMX)
    assert response.status_code == 200
    assert fresh(disputed).status == Status.ADJUDICATED


def test_the_domain_refuses_contradictory_labels_unless_confirmed(queued, auditor):
    t = queued[0]
    values = {
        "verdict": "relabel",
        "is_misbehavior": True,
        "misbehavior_type": "hallucination",
        "correct_decision": "APPROVE",
        "rationale": "x",
    }
    with pytest.raises(ValidationError) as refused:
        workflow.submit_review(t, auditor=auditor, based_on_version=t.version, **values)
    assert refused.value.error_dict["correct_decision"][0].code == workflow.UNUSUAL
    outcome = workflow.submit_review(
        t, auditor=auditor, based_on_version=t.version, confirm_unusual=True, **values
    )
    assert outcome.review.correct_decision == "APPROVE"
