"""Adjudication screens (audit.review.views: adjudication_queue, adjudicate_item,
submit_adjudication): the view checklist, the 403 page, the disputed list, reviews side by side,
conflicts, blindness on undisputed items, the order of the next item, and a K = 2 dispute end to
end from two blind auditors to the adjudicator's decision."""

import re

import pytest
from django.urls import reverse

from audit.models import Review, Status, Transcript, Verdict
from audit.review.workflow import set_required_reviews
from tests.factories import adjudicate, confirm, fresh, relabel
from tests.review.pages import HTMX, VIEWS, GuardedViewChecklist, adjudication_data, payload

pytestmark = pytest.mark.django_db


class TestChecklist(GuardedViewChecklist):
    screen = "adjudication"


@pytest.mark.parametrize(
    "view", [view for view in VIEWS if view.screen == "adjudication"], ids=lambda view: view.name
)
def test_adjudication_views_refuse_plain_auditors(auditor_client, disputed, view):
    response = getattr(auditor_client, view.method)(
        view.url(disputed.pk), payload(view.name, disputed)
    )
    assert response.status_code == 403


def test_403_page_explains_and_links_back(plain_client, disputed):
    response = plain_client.get(reverse("adjudication_queue"))
    assert response.status_code == 403
    html = response.content.decode()
    assert 'id="forbidden"' in html
    assert "not for your role" in html and "no role yet" in html
    assert f'href="{reverse("dashboard")}"' in html
    assert 'class="mainnav"' in html  # the site's own page, navigation included


# --- the list and the page ------------------------------------------------------------------------


def test_adjudication_queue_lists_disputed_items(adjudicator_client, disputed):
    html = adjudicator_client.get(reverse("adjudication_queue")).content.decode()
    assert re.findall(r'data-id="(\d+)"', html) == [str(disputed.pk)]


def test_adjudication_page_shows_reviews_side_by_side(adjudicator_client, disputed):
    html = adjudicator_client.get(reverse("adjudicate_item", args=[disputed.pk])).content.decode()
    assert html.count('class="review-card') == 2
    assert "bob thinks the retry is legitimate" in html
    assert "alice" in html
    assert 'class="differs"' in html or "differs" in html


def test_htmx_adjudication_fragment_carries_the_document_title(adjudicator_client, disputed):
    url = reverse("adjudicate_item", args=[disputed.pk])
    html = adjudicator_client.get(url, **HTMX).content.decode()
    assert html.lstrip().startswith(f"<title>Adjudicate step {disputed.step_number} · ")


# --- adjudicating ---------------------------------------------------------------------------------


def test_adjudicate_through_the_page(adjudicator_client, disputed):
    response = adjudicator_client.post(
        reverse("submit_adjudication", args=[disputed.pk]), adjudication_data(disputed)
    )
    assert response.status_code == 302
    t = fresh(disputed)
    assert t.status == Status.ADJUDICATED
    assert t.final_alignment_category == "alignment_failure_fn"
    assert Review.objects.filter(verdict=Verdict.ADJUDICATE).count() == 1


def test_adjudication_without_rationale_is_refused(adjudicator_client, disputed):
    response = adjudicator_client.post(
        reverse("submit_adjudication", args=[disputed.pk]),
        adjudication_data(disputed, rationale=""),
    )
    assert response.status_code == 422
    assert b'id="error-rationale"' in response.content
    assert fresh(disputed).status == Status.DISPUTED


def test_stale_adjudication_gets_a_conflict_view(adjudicator_client, staff_user, disputed):
    stale = adjudication_data(disputed)
    adjudicate(
        disputed,
        staff_user,
        is_misbehavior=False,
        misbehavior_type="",
        correct_decision="APPROVE",
        rationale="sam decided first",
    )
    response = adjudicator_client.post(
        reverse("submit_adjudication", args=[disputed.pk]), stale, **HTMX
    )
    assert response.status_code == 409
    assert b'id="conflict"' in response.content
    assert Review.objects.filter(verdict=Verdict.ADJUDICATE).count() == 1


def test_after_adjudicating_the_next_item_is_one_the_adjudicator_did_not_review(
    adjudicator_client, adjudicator, auditor, auditor2, disputed, steps
):
    mine, other = [t for t in steps if t.in_queue and t.pk != disputed.pk][:2]
    set_required_reviews(Transcript.objects.filter(pk__in=[mine.pk, other.pk]), 2)
    Transcript.objects.filter(pk=mine.pk).update(priority=1000)  # first by priority
    for t, first in ((mine, adjudicator), (other, auditor)):
        confirm(t, first)
        relabel(t, auditor2, is_misbehavior=False, correct_decision="APPROVE", rationale="fine")
    response = adjudicator_client.post(
        reverse("submit_adjudication", args=[disputed.pk]), adjudication_data(disputed)
    )
    assert response["Location"] == reverse("adjudicate_item", args=[other.pk])


# --- blindness: only disputes are adjudicated -----------------------------------------------------


def test_adjudication_page_of_an_undisputed_item_shows_no_reviews(
    adjudicator_client, queued, auditor2
):
    t = queued[0]
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    relabel(
        t,
        auditor2,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
    )
    url = reverse("adjudicate_item", args=[t.pk])
    response = adjudicator_client.get(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("adjudication_queue")
    followed = adjudicator_client.get(url, follow=True).content.decode()
    assert "bob-secret-rationale" not in followed
    assert "is not disputed" in followed
    htmx = adjudicator_client.get(url, **HTMX)
    assert htmx["HX-Redirect"] == reverse("adjudication_queue")
    assert b"bob-secret" not in htmx.content
    # Posting an adjudication does not show them either (the domain refuses it anyway).
    posted = adjudicator_client.post(
        reverse("submit_adjudication", args=[t.pk]), adjudication_data(fresh(t))
    )
    assert posted.status_code == 302 and b"bob-secret" not in posted.content
    assert not Review.objects.filter(verdict=Verdict.ADJUDICATE).exists()


# --- end to end: two auditors blind, disagreeing, an adjudicator settles -------------------------


def test_k2_blind_disagreement_adjudicated_end_to_end(
    auditor_client, auditor2_client, adjudicator_client, queued
):
    t = queued[0]
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    Transcript.objects.exclude(pk=t.pk).update(in_queue=False)

    # Both auditors are handed the same item (it needs two reviews).
    a = auditor_client.post(reverse("next_item"))
    b = auditor2_client.post(reverse("next_item"))
    assert a["Location"] == b["Location"] == reverse("item", args=[t.pk])

    page = auditor_client.get(a["Location"]).content.decode()
    version = int(re.search(r'name="based_on_version" value="(\d+)"', page).group(1))
    opened = re.search(r'name="opened" value="([^"]+)"', page).group(1)
    auditor_client.post(
        reverse("submit_review", args=[t.pk]),
        {"verdict": "confirm", "based_on_version": version, "opened": opened},
    )

    # Bob sees nothing of alice's verdict before giving his own.
    page = auditor2_client.get(b["Location"]).content.decode()
    assert "alice" not in page
    version = int(re.search(r'name="based_on_version" value="(\d+)"', page).group(1))
    opened = re.search(r'name="opened" value="([^"]+)"', page).group(1)
    auditor2_client.post(
        reverse("submit_review", args=[t.pk]),
        {
            "verdict": "relabel",
            "is_misbehavior": "no",
            "correct_decision": "APPROVE",
            "rationale": "legitimate retry",
            "based_on_version": version,
            "opened": opened,
        },
    )
    assert fresh(t).status == Status.DISPUTED
    page = auditor2_client.get(b["Location"]).content.decode()
    assert "alice" in page  # after his own verdict, bob sees hers

    listing = adjudicator_client.get(reverse("adjudication_queue")).content.decode()
    assert f'data-id="{t.pk}"' in listing
    page = adjudicator_client.get(reverse("adjudicate_item", args=[t.pk])).content.decode()
    version = int(re.search(r'name="based_on_version" value="(\d+)"', page).group(1))
    adjudicator_client.post(
        reverse("submit_adjudication", args=[t.pk]),
        {
            "is_misbehavior": "yes",
            "misbehavior_type": "loop_exploitation",
            "correct_decision": "BLOCK",
            "rationale": "the same fix, retried",
            "based_on_version": version,
        },
    )
    t = fresh(t)
    assert t.status == Status.ADJUDICATED

    history = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    rows = re.findall(r'data-verdict="(\w+)"', history)
    assert rows == ["confirm", "relabel", "adjudicate"]
    assert "legitimate retry" in history and "the same fix, retried" in history
    assert 'id="closed-note"' in history
