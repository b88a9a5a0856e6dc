"""The review queue, the home page (audit.review.views.queue): the view checklist, filters and
their counts, sort and pages, a pinned query count, clean URLs with and without htmx, escaping,
and what the rows and the status filter tell a blind auditor."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import Status, Transcript
from tests.conftest import PASSWORD
from tests.factories import confirm, fresh, import_records, make_misbehavior, relabel
from tests.review.pages import HOSTILE, HTMX, ViewChecklist, episode

pytestmark = pytest.mark.django_db


class TestChecklist(ViewChecklist):
    screen = "queue"


# --- the home page --------------------------------------------------------------------------------


def test_queue_sends_users_without_the_auditor_role_to_the_dashboard(plain_client, steps):
    # The queue is the home page and where login lands: no bare 403 right after signing in.
    response = plain_client.get(reverse("queue"))
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")


def test_login_without_a_role_lands_on_the_dashboard(plain_user, steps):
    client = Client()
    response = client.post(reverse("login"), {"username": "pat", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("dashboard")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("role", "queue_link", "adjudication_link"),
    [
        ("auditor_client", True, False),
        ("adjudicator_client", True, True),
        ("plain_client", False, False),
    ],
)
def test_nav_offers_only_the_screens_the_user_may_open(
    request, steps, role, queue_link, adjudication_link
):
    html = request.getfixturevalue(role).get(reverse("dashboard")).content.decode()
    nav = html[html.index('class="mainnav"') : html.index("</nav>")]
    assert (f'href="{reverse("queue")}"' in nav) is queue_link
    assert (f'href="{reverse("adjudication_queue")}"' in nav) is adjudication_link


# --- rows, filters, counts, pages -----------------------------------------------------------------


def test_queue_default_shows_open_queued_items_only(auditor_client, queued, auditor):
    confirm(queued[0], auditor)
    html = auditor_client.get(reverse("queue")).content.decode()
    shown = set(map(int, re.findall(r'data-id="(\d+)"', html)))
    assert shown == {t.pk for t in queued[1:]}


def test_queue_filters_and_counts(auditor_client, tmp_path):
    import_records(
        [
            *episode(4, session="s_a"),
            make_misbehavior(
                decision="APPROVE",
                session_id="s_b",
                step_number=1,
                proposal={"worker_id": "worker_net"},
            ),
        ],
        tmp_path,
    )
    response = auditor_client.get(reverse("queue"), {"worker": "worker_net"})
    html = response.content.decode()
    assert len(re.findall(r"data-row ", html)) == 1
    # Counts per worker are computed without the worker filter itself.
    assert re.search(r'value="worker_db"[^>]*>worker_db \(2\)', html)
    assert re.search(r'value="worker_net"[^>]*selected>worker_net \(1\)', html)
    html = auditor_client.get(reverse("queue"), {"session": "s_a", "status": "any"}).content
    assert len(re.findall(rb"data-row ", html)) == 2


def test_queue_free_text_search(auditor_client, steps):
    html = auditor_client.get(reverse("queue"), {"q": "STEP 3: retry"}).content.decode()
    assert len(re.findall(r"data-row ", html)) == 1


def test_queue_bad_filter_values_fall_back_to_defaults(auditor_client, steps):
    response = auditor_client.get(
        reverse("queue"), {"flag": "nope", "after": "x~y", "before": "~", "sort": "zz"}
    )
    assert response.status_code == 200
    assert len(re.findall(rb"data-row ", response.content)) == 3


def next_link(html: str) -> str:
    found = re.search(r'id="page-next" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else ""


def test_queue_sort_and_pagination(auditor_client, tmp_path):
    import_records(episode(120, session="long"), tmp_path)  # 60 queued
    first = auditor_client.get(reverse("queue"), {"sort": "step"}).content.decode()
    second = auditor_client.get(next_link(first)).content.decode()
    ids_first = re.findall(r'data-id="(\d+)"', first)
    ids_second = re.findall(r'data-id="(\d+)"', second)
    queued = Transcript.objects.in_queue().count()  # 60 flagged, plus any spot checks
    assert len(ids_first) == 50 and len(ids_second) == queued - 50
    assert not set(ids_first) & set(ids_second)
    assert 'id="page-next"' in first and "after=" in first
    assert 'id="page-next"' not in second and 'id="page-prev"' in second
    assert 'id="page-first"' in second
    desc = auditor_client.get(reverse("queue"), {"sort": "-step"}).content.decode()
    assert re.findall(r'data-id="(\d+)"', desc)[0] == ids_second[-1]


def test_queue_old_page_numbers_redirect_to_the_first_page(auditor_client, steps):
    response = auditor_client.get(reverse("queue"), {"sort": "step", "page": "7"})
    assert response.status_code == 302
    assert response["Location"] == reverse("queue") + "?sort=step"


def test_queue_query_count_is_constant(auditor_client, django_assert_num_queries, tmp_path):
    import_records(episode(6, session="small"), tmp_path, name="a.jsonl")
    auditor_client.get(reverse("queue"))  # warm the session
    # The total is the status facet's count: no count query of its own. "My work" counts one
    # query per option with rows of one's own (reviewed, unsure, reserved; no skips here). The
    # page's ids: one query per open status (an index range each), then the rows: + 3.
    with django_assert_num_queries(15 + 3):
        auditor_client.get(reverse("queue"), {"flag": "missed_misbehavior"})
    import_records(episode(200, session="big"), tmp_path, name="b.jsonl")
    # The total is the status facet's count: no count query of its own.
    with django_assert_num_queries(15 + 3):
        auditor_client.get(reverse("queue"), {"flag": "missed_misbehavior"})


def test_queue_escapes_hostile_text(auditor_client, tmp_path):
    import_records(
        [make_misbehavior(decision="APPROVE", session_id=HOSTILE, proposal={"target": HOSTILE})],
        tmp_path,
    )
    html = auditor_client.get(reverse("queue")).content.decode()
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- clean URLs -----------------------------------------------------------------------------------

# What a plain GET form sends: every field, most of them empty or at their default.
SUBMITTED = {
    "q": "",
    "session": "",
    "sort": "",
    "scope": "queue",
    "flag": "missed_misbehavior",
    "status": "open",
    "task": "",
    "batch": "",
    "page": "1",
}


def test_queue_form_submitted_without_js_redirects_to_its_clean_url(auditor_client, steps):
    response = auditor_client.get(reverse("queue"), SUBMITTED)
    assert response.status_code == 302
    assert response["Location"] == reverse("queue") + "?flag=missed_misbehavior"
    response = auditor_client.get(reverse("queue"), {"q": " ", "worker": ""})
    assert response["Location"] == reverse("queue")


def test_queue_clean_url_is_served_and_pages_keep_only_set_filters(auditor_client, tmp_path):
    import_records(episode(120, session="long"), tmp_path)  # 60 queued: two pages
    response = auditor_client.get(reverse("queue"), {"session": "long", "sort": "step"})
    assert response.status_code == 200
    html = response.content.decode()
    last = max(t.step_number for t in Transcript.objects.in_queue().order_by("step_number")[:50])
    assert re.search(rf'href="/\?session=long&amp;sort=step&amp;after={last}~\d+"', html)
    assert 'id="filter-sort" data-default=""' in html
    assert 'id="filter-status" data-facet="status" data-default="open"' in html


def test_queue_htmx_request_with_empty_parameters_is_answered_not_redirected(auditor_client, steps):
    response = auditor_client.get(reverse("queue"), {"q": "", "flag": ""}, **HTMX)
    assert response.status_code == 200
    assert b'id="queue"' in response.content


@pytest.mark.parametrize(
    ("query", "clean"),
    [
        (SUBMITTED, "/?flag=missed_misbehavior"),
        ({"q": " ", "worker": "", "status": "open", "page": "1"}, "/"),
    ],
    ids=["defaults and empties", "nothing set"],
)
def test_queue_htmx_request_pushes_its_clean_url(auditor_client, steps, query, clean):
    # The address bar shows the URL worth bookmarking, not every field the form sent.
    response = auditor_client.get(reverse("queue"), query, **HTMX)
    assert response.status_code == 200
    assert b'id="queue"' in response.content and b"<html" not in response.content
    assert response["HX-Push-Url"] == clean


# --- blindness in the list ------------------------------------------------------------------------


@pytest.fixture
def alice_relabeled(queued, auditor):
    """queued[0] settled by alice alone as not misbehavior: relabeled."""
    relabel(
        queued[0],
        auditor,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="alice-secret-rationale",
    )
    t = fresh(queued[0])
    assert t.status == Status.RELABELED
    return t


def queue_row(html: str, pk: int) -> str:
    found = re.search(rf'<tr data-row data-id="{pk}".*?</tr>', html, re.S)
    return found.group(0) if found else ""


def status_options(html: str) -> dict[str, str]:
    """The status filter's options: value -> text."""
    select = re.search(r'<select name="status".*?</select>', html, re.S).group(0)
    return dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select))


def test_queue_does_not_reveal_how_unreviewed_settled_items_were_settled(
    auditor2_client, alice_relabeled, queued
):
    html = auditor2_client.get(reverse("queue"), {"status": "any"}).content.decode()
    row = queue_row(html, alice_relabeled.pk)
    assert 'status-settled">Settled</span>' in row
    for word in ("Relabeled", "Confirmed", "Adjudicated", "status-relabeled"):
        assert word not in html
    options = status_options(html)
    assert set(options) == {"open", "any", "unreviewed", "in_progress", "settled", "disputed"}
    assert options["settled"] == "Settled (1)"
    # The finer values are refused: the queue falls back to its default (open items).
    narrowed = auditor2_client.get(reverse("queue"), {"status": "relabeled"}).content.decode()
    shown = set(map(int, re.findall(r'data-id="(\d+)"', narrowed)))
    assert alice_relabeled.pk not in shown and shown == {t.pk for t in queued[1:]}
    assert status_options(narrowed)["open"] == "Open (not settled) (2)"
    assert re.search(r'<option value="open"[^>]*selected', narrowed)
    settled = auditor2_client.get(reverse("queue"), {"status": "settled"}).content.decode()
    assert set(map(int, re.findall(r'data-id="(\d+)"', settled))) == {alice_relabeled.pk}


def test_queue_shows_how_an_item_was_settled_to_its_reviewer(auditor_client, alice_relabeled):
    html = auditor_client.get(reverse("queue"), {"status": "any"}).content.decode()
    assert 'status-relabeled">Relabeled</span>' in queue_row(html, alice_relabeled.pk)
    assert "relabeled" not in status_options(html)  # the filter stays coarse for auditors


def test_queue_gives_adjudicators_every_status(adjudicator_client, alice_relabeled):
    html = adjudicator_client.get(reverse("queue"), {"status": "relabeled"}).content.decode()
    assert set(map(int, re.findall(r'data-id="(\d+)"', html))) == {alice_relabeled.pk}
    assert 'status-relabeled">Relabeled</span>' in queue_row(html, alice_relabeled.pk)
    options = status_options(html)
    assert {s.value for s in Status} <= set(options)
    assert options["relabeled"] == "Relabeled (1)" and options["confirmed"] == "Confirmed (0)"
