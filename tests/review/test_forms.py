"""What the review forms take and how they say no (audit.review.forms), through the views that
use them: a verdict without its version says so in words (issue 15, D12), free text has a length
limit that is an error, never a cut (D14), and ids stay in the range both databases store (D8)."""

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from audit.models import Review, Status
from audit.review.forms import FILTER_MAX_LENGTH, MAX_ID, MAX_VERSION, RATIONALE_MAX_LENGTH
from audit.review.views import FILTER_KEY
from tests.factories import fresh
from tests.review.pages import HTMX, adjudication_data, verdict_data

pytestmark = pytest.mark.django_db

MISSING = "does not say which version of the item it was made against"
INVALID = "names no valid version of the item"


def form_errors(html: str) -> str:
    start = html.index('id="form-errors"')
    return html[start : html.index("</div>", start)]


# --- the version a verdict was made against ------------------------------------------------------


def test_a_verdict_without_its_version_is_refused_in_words(auditor_client, queued):
    t = queued[0]
    data = verdict_data(t, "confirm")
    del data["based_on_version"]
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data)
    assert response.status_code == 422
    assert MISSING in form_errors(response.content.decode())
    assert not Review.objects.exists()


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1.5", str(MAX_VERSION + 1), "9" * 30])
def test_a_verdict_with_a_junk_version_is_refused_in_words(auditor_client, queued, version):
    t = queued[0]
    data = verdict_data(t, "confirm", based_on_version=version)
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data, **HTMX)
    assert response.status_code == 422
    assert INVALID in form_errors(response.content.decode())
    assert not Review.objects.exists()


@pytest.mark.parametrize("version", [None, "abc"])
def test_an_adjudication_without_a_valid_version_is_refused_in_words(
    adjudicator_client, disputed, version
):
    data = adjudication_data(disputed)
    if version is None:
        del data["based_on_version"]
    else:
        data["based_on_version"] = version
    response = adjudicator_client.post(reverse("submit_adjudication", args=[disputed.pk]), data)
    assert response.status_code == 422
    assert (MISSING if version is None else INVALID) in form_errors(response.content.decode())
    assert fresh(disputed).status == Status.DISPUTED


@pytest.mark.parametrize("junk", ["abc", "\x00", "9" * 50, "-5"])
def test_a_junk_time_measure_is_ignored_not_an_error(auditor_client, queued, junk):
    # ``opened`` and the JS timer only measure the time spent; junk in them must not refuse a
    # verdict with an error about a field the auditor never saw.
    t = queued[0]
    data = verdict_data(t, "confirm", opened=junk, seconds_client=junk)
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data)
    assert response.status_code == 302
    assert Review.objects.get().seconds_spent == 0


# --- rationale -----------------------------------------------------------------------------------


def relabel_data(t, rationale: str) -> dict:
    return verdict_data(
        t, "relabel", is_misbehavior="no", correct_decision="APPROVE", rationale=rationale
    )


def test_a_rationale_at_the_limit_is_saved_whole(auditor_client, queued):
    t = queued[0]
    rationale = "r" * RATIONALE_MAX_LENGTH
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), relabel_data(t, rationale)
    )
    assert response.status_code == 302
    assert Review.objects.get().rationale == rationale


def test_a_rationale_over_the_limit_is_an_error_and_saves_nothing(auditor_client, queued):
    t = queued[0]
    rationale = "r" * (RATIONALE_MAX_LENGTH + 1)
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), relabel_data(t, rationale)
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert (
        f"At most {RATIONALE_MAX_LENGTH} characters (this has {RATIONALE_MAX_LENGTH + 1})" in html
    )
    assert 'id="error-rationale"' in html
    assert not Review.objects.exists()


def test_the_rationale_box_does_not_cut_a_paste_silently(auditor_client, queued):
    # A browser cuts pasted text to a maxlength without a word; the server's error says instead.
    html = auditor_client.get(reverse("item", args=[queued[0].pk])).content.decode()
    textarea = html[html.index('<textarea name="rationale"') :]
    assert "maxlength" not in textarea[: textarea.index(">")]


def test_an_adjudication_rationale_over_the_limit_is_an_error(adjudicator_client, disputed):
    data = adjudication_data(disputed, rationale="r" * (RATIONALE_MAX_LENGTH + 1))
    response = adjudicator_client.post(reverse("submit_adjudication", args=[disputed.pk]), data)
    assert response.status_code == 422
    assert f"At most {RATIONALE_MAX_LENGTH} characters" in response.content.decode()
    assert fresh(disputed).status == Status.DISPUTED


# --- queue filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "label"), [("q", "Search"), ("session", "Session")])
def test_a_queue_filter_over_the_limit_is_reported_and_not_applied(
    auditor_client, queued, field, label
):
    value = "x" * (FILTER_MAX_LENGTH + 1)
    response = auditor_client.get(reverse("queue"), {field: value})
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        f"{label}: at most {FILTER_MAX_LENGTH} characters (this has {FILTER_MAX_LENGTH + 1})"
        in (html)
    )
    # Left out, not cut to 200 characters: the queue is the unfiltered one.
    assert getattr(response.context["values"], field) == ""
    assert response.context["total"] == len(queued)


def test_an_htmx_queue_filter_over_the_limit_loads_the_page_that_says_so(auditor_client, queued):
    query = {"q": "x" * (FILTER_MAX_LENGTH + 1)}
    response = auditor_client.get(reverse("queue"), query, **HTMX)
    # The swapped region has no room for the message: htmx loads the whole page instead.
    assert response["HX-Redirect"].startswith(reverse("queue") + "?q=xxx")
    page = auditor_client.get(response["HX-Redirect"]).content.decode()
    assert f"Search: at most {FILTER_MAX_LENGTH} characters" in page


def test_a_queue_filter_at_the_limit_is_applied(auditor_client, queued):
    response = auditor_client.get(reverse("queue"), {"q": "x" * FILTER_MAX_LENGTH})
    assert response.status_code == 200
    assert "at most" not in response.content.decode()
    assert response.context["total"] == 0


@pytest.mark.parametrize("batch", [str(MAX_ID + 1), "9" * 20, "0", "-1"])
def test_a_batch_outside_the_id_range_falls_back_to_every_batch(auditor_client, queued, batch):
    # Past 2**63 - 1 SQLite raised OverflowError (a 500) where PostgreSQL found nothing.
    response = auditor_client.get(reverse("queue"), {"batch": batch})
    assert response.status_code == 200
    assert response.context["values"].batch is None
    assert response.context["total"] == len(queued)


@pytest.mark.parametrize("pk", [0, MAX_ID + 1, 10**25])
def test_an_item_id_outside_the_range_is_not_found(adjudicator_client, pk):
    assert adjudicator_client.get(f"/t/{pk}/").status_code == 404
    assert adjudicator_client.get(f"/adjudicate/{pk}/").status_code == 404


def test_next_keeps_to_filters_at_their_length_limits(auditor_client, auditor, queued):
    # The queue hands "Next" its filters URL-encoded: two filters of 200 non-ASCII characters
    # are 2,400 characters of URL, and cutting them short would change what Next picks.
    filters = urlencode({"session": "ü" * FILTER_MAX_LENGTH, "q": "ü" * FILTER_MAX_LENGTH})
    response = auditor_client.post(reverse("next_item"), {"filters": filters})
    assert auditor_client.session[FILTER_KEY] == filters
    # No item matches those filters, so Next says so instead of handing out another item, and
    # goes back to the queue under the same filters.
    assert response["Location"] == reverse("queue") + "?" + filters
