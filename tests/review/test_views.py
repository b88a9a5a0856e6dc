"""Review screens (audit.review.views): the checklist for every view (works, login, permission,
method, 404, htmx fragment), pinned query counts, blindness on the page, conflicts, escaping."""

import base64
import json
import re
import zlib

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import Lease, Review, Status, Transcript, Verdict
from audit.review import workflow as reviews
from audit.review.forms import OPENED_SALT, opened_token
from tests.conftest import PASSWORD
from tests.factories import import_records, make_misbehavior, make_record

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(1)</script>"
HTMX = {"HTTP_HX_REQUEST": "true"}


def episode(n: int, *, session: str = "session_view", start: int = 1) -> list[dict]:
    """An episode of n steps; every other one a missed misbehavior (so queued)."""
    records = []
    for step in range(start, start + n):
        if step % 2:
            records.append(
                make_misbehavior(
                    mb_type="loop_exploitation",
                    decision="APPROVE",
                    session_id=session,
                    step_number=step,
                    proposal={"worker_reasoning": f"step {step}: retry the same fix"},
                )
            )
        else:
            records.append(make_record(session_id=session, step_number=step))
    return records


@pytest.fixture
def items(tmp_path):
    return import_records(episode(6), tmp_path)


@pytest.fixture
def queued(items):
    return [t for t in items if t.in_queue]


@pytest.fixture
def disputed(queued, auditor, auditor2):
    transcript = queued[0]
    reviews.set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    t = Transcript.objects.get(pk=transcript.pk)
    reviews.submit_review(t, auditor=auditor, verdict=Verdict.CONFIRM, based_on_version=t.version)
    t = Transcript.objects.get(pk=transcript.pk)
    reviews.submit_review(
        t,
        auditor=auditor2,
        verdict=Verdict.RELABEL,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob thinks the retry is legitimate",
        based_on_version=t.version,
    )
    t = Transcript.objects.get(pk=transcript.pk)
    assert t.status == Status.DISPUTED
    return t


def verdict_data(transcript: Transcript, verdict: str, **extra) -> dict:
    return {
        "verdict": verdict,
        "based_on_version": transcript.version,
        "opened": opened_token(transcript, status=transcript.status),
        **extra,
    }


def adjudication_data(transcript: Transcript, **extra) -> dict:
    return {
        "is_misbehavior": "yes",
        "misbehavior_type": "loop_exploitation",
        "correct_decision": "BLOCK",
        "rationale": "same fix retried three times",
        "based_on_version": transcript.version,
        "opened": opened_token(transcript, status=transcript.status),
        **extra,
    }


# --- the checklist, view by view --------------------------------------------------------------

# name, method, needs a transcript pk, role client fixture for the positive case
VIEWS = [
    ("queue", "get", False, "auditor_client"),
    ("item", "get", True, "auditor_client"),
    ("next_item", "post", False, "auditor_client"),
    ("skip_item", "post", True, "auditor_client"),
    ("submit_review", "post", True, "auditor_client"),
    ("adjudication_queue", "get", False, "adjudicator_client"),
    ("adjudicate_item", "get", True, "adjudicator_client"),
    ("submit_adjudication", "post", True, "adjudicator_client"),
]


def url_for(name: str, needs_pk: bool, pk: int) -> str:
    return reverse(name, args=[pk]) if needs_pk else reverse(name)


def payload(name: str, transcript: Transcript) -> dict:
    if name == "submit_review":
        return verdict_data(transcript, "confirm")
    if name == "submit_adjudication":
        return adjudication_data(transcript)
    return {}


@pytest.mark.parametrize(("name", "method", "needs_pk", "role"), VIEWS)
def test_view_works(request, disputed, name, method, needs_pk, role):
    client = request.getfixturevalue(role)
    url = url_for(name, needs_pk, disputed.pk)
    response = getattr(client, method)(url, payload(name, disputed))
    assert response.status_code in (200, 302), response.content[:500]
    if response.status_code == 200:
        assert b"<html" in response.content


@pytest.mark.parametrize(("name", "method", "needs_pk", "role"), VIEWS)
def test_view_requires_login(disputed, name, method, needs_pk, role):
    url = url_for(name, needs_pk, disputed.pk)
    response = getattr(Client(), method)(url, payload(name, disputed))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("name", "method", "needs_pk", "role"), [v for v in VIEWS if v[0] != "queue"]
)
def test_view_requires_role(plain_client, disputed, name, method, needs_pk, role):
    url = url_for(name, needs_pk, disputed.pk)
    response = getattr(plain_client, method)(url, payload(name, disputed))
    assert response.status_code == 403
    assert not Review.objects.filter(auditor__username="pat").exists()


def test_queue_sends_users_without_the_auditor_role_to_the_dashboard(plain_client, items):
    # The queue is the home page and where login lands: no bare 403 right after signing in.
    response = plain_client.get(reverse("queue"))
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")


def test_login_without_a_role_lands_on_the_dashboard(plain_user, items):
    client = Client()
    response = client.post(reverse("login"), {"username": "pat", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("dashboard")
    assert response.status_code == 200


def test_403_page_explains_and_links_back(plain_client, disputed):
    response = plain_client.get(reverse("adjudication_queue"))
    assert response.status_code == 403
    html = response.content.decode()
    assert 'id="forbidden"' in html
    assert "not for your role" in html and "no role yet" in html
    assert f'href="{reverse("dashboard")}"' in html
    assert 'class="mainnav"' in html  # the site's own page, navigation included


@pytest.mark.parametrize(
    ("role", "queue_link", "adjudication_link"),
    [
        ("auditor_client", True, False),
        ("adjudicator_client", True, True),
        ("plain_client", False, False),
    ],
)
def test_nav_offers_only_the_screens_the_user_may_open(
    request, items, role, queue_link, adjudication_link
):
    html = request.getfixturevalue(role).get(reverse("dashboard")).content.decode()
    nav = html[html.index('class="mainnav"') : html.index("</nav>")]
    assert (f'href="{reverse("queue")}"' in nav) is queue_link
    assert (f'href="{reverse("adjudication_queue")}"' in nav) is adjudication_link


@pytest.mark.parametrize("name", ["adjudication_queue", "adjudicate_item", "submit_adjudication"])
def test_adjudication_views_refuse_plain_auditors(auditor_client, disputed, name):
    method = "post" if name == "submit_adjudication" else "get"
    url = url_for(name, name != "adjudication_queue", disputed.pk)
    response = getattr(auditor_client, method)(url, payload(name, disputed))
    assert response.status_code == 403


@pytest.mark.parametrize(("name", "method", "needs_pk", "role"), VIEWS)
def test_view_rejects_wrong_method(request, disputed, name, method, needs_pk, role):
    client = request.getfixturevalue(role)
    url = url_for(name, needs_pk, disputed.pk)
    wrong = client.post if method == "get" else client.get
    assert wrong(url).status_code == 405


@pytest.mark.parametrize(("name", "method", "needs_pk", "role"), [v for v in VIEWS if v[2]])
def test_view_404_on_missing_transcript(request, disputed, name, method, needs_pk, role):
    client = request.getfixturevalue(role)
    url = reverse(name, args=[disputed.pk + 10_000])
    assert getattr(client, method)(url, payload(name, disputed)).status_code == 404


@pytest.mark.parametrize(("name", "method", "needs_pk", "role"), VIEWS)
def test_view_htmx_request_gets_a_fragment(request, disputed, name, method, needs_pk, role):
    client = request.getfixturevalue(role)
    url = url_for(name, needs_pk, disputed.pk)
    response = getattr(client, method)(url, payload(name, disputed), **HTMX)
    assert response.status_code == 200, response.content[:500]
    assert b"<html" not in response.content
    assert b"<body" not in response.content
    assert response.content.strip() or response.has_header("HX-Redirect")


# --- queue ----------------------------------------------------------------------------------------


def test_queue_default_shows_open_queued_items_only(auditor_client, items, auditor):
    queued = [t for t in items if t.in_queue]
    t = Transcript.objects.get(pk=queued[0].pk)
    reviews.submit_review(t, auditor=auditor, verdict=Verdict.CONFIRM, based_on_version=t.version)
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


def test_queue_free_text_search(auditor_client, items):
    html = auditor_client.get(reverse("queue"), {"q": "STEP 3: retry"}).content.decode()
    assert len(re.findall(r"data-row ", html)) == 1


def test_queue_bad_filter_values_fall_back_to_defaults(auditor_client, items):
    response = auditor_client.get(reverse("queue"), {"flag": "nope", "page": "x", "sort": "zz"})
    assert response.status_code == 200
    assert len(re.findall(rb"data-row ", response.content)) == 3


def test_queue_sort_and_pagination(auditor_client, tmp_path):
    import_records(episode(120, session="long"), tmp_path)  # 60 queued
    first = auditor_client.get(reverse("queue"), {"sort": "step"}).content.decode()
    second = auditor_client.get(reverse("queue"), {"sort": "step", "page": 2}).content.decode()
    ids_first = re.findall(r'data-id="(\d+)"', first)
    ids_second = re.findall(r'data-id="(\d+)"', second)
    queued = Transcript.objects.in_queue().count()  # 60 flagged, plus any spot checks
    assert len(ids_first) == 50 and len(ids_second) == queued - 50
    assert not set(ids_first) & set(ids_second)
    assert 'id="page-next"' in first and "page=2" in first
    desc = auditor_client.get(reverse("queue"), {"sort": "-step"}).content.decode()
    assert re.findall(r'data-id="(\d+)"', desc)[0] == ids_second[-1]


def test_queue_query_count_is_constant(auditor_client, django_assert_num_queries, tmp_path):
    import_records(episode(6, session="small"), tmp_path, name="a.jsonl")
    auditor_client.get(reverse("queue"))  # warm the session
    with django_assert_num_queries(13):
        auditor_client.get(reverse("queue"), {"flag": "missed_misbehavior"})
    import_records(episode(200, session="big"), tmp_path, name="b.jsonl")
    with django_assert_num_queries(13):
        auditor_client.get(reverse("queue"), {"flag": "missed_misbehavior"})


def test_queue_escapes_hostile_text(auditor_client, tmp_path):
    import_records(
        [make_misbehavior(decision="APPROVE", session_id=HOSTILE, proposal={"target": HOSTILE})],
        tmp_path,
    )
    html = auditor_client.get(reverse("queue")).content.decode()
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- item page ------------------------------------------------------------------------------------


def test_item_page_shows_the_record_and_timeline(auditor_client, items):
    t = items[2]  # step 3
    html = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert "step 3: retry the same fix" in html
    assert 'id="timeline-list"' in html
    assert html.count('data-step="') == 6
    assert re.search(r'class="current[^"]*" data-step="3"', html)
    assert f'href="{reverse("item", args=[items[1].pk])}"' in html  # previous step (k)
    assert f'href="{reverse("item", args=[items[3].pk])}"' in html  # next step (j)
    assert "the overseer approved it" in html  # the problem, in words
    assert 'id="verdict-form"' in html


def test_item_page_query_count_is_constant(
    auditor_client, auditor, django_assert_num_queries, tmp_path
):
    small = import_records(episode(3, session="q_small"), tmp_path, name="a.jsonl")
    big = import_records(episode(150, session="q_big"), tmp_path, name="b.jsonl")
    auditor_client.get(reverse("queue"))  # warm the session
    # First open: 7 to show the page, 6 to reserve it (does the auditor hold another lease,
    # savepoint, lock the row, load its leases, insert, release).
    with django_assert_num_queries(13):
        auditor_client.get(reverse("item", args=[small[0].pk]))
    # Holding that lease, opening another queued item only asks about it: 7 + 1.
    with django_assert_num_queries(8):
        auditor_client.get(reverse("item", args=[big[0].pk]))
    Lease.objects.filter(auditor=auditor).delete()
    with django_assert_num_queries(13):
        auditor_client.get(reverse("item", args=[big[0].pk]))
    # Opening it again, with its lease held: 7.
    with django_assert_num_queries(7):
        auditor_client.get(reverse("item", args=[big[0].pk]))


def test_item_page_escapes_hostile_text(auditor_client, tmp_path):
    [t] = import_records(
        [
            make_misbehavior(
                decision="APPROVE",
                proposal={"worker_reasoning": HOSTILE, "parameters": {"x": HOSTILE}},
                decision_extra=None,
            )
        ],
        tmp_path,
    )
    html = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def tagged(name: str) -> str:
    """Hostile-looking text unique to one field: it must show up, escaped."""
    return f"<i>{name}</i>"


def escaped(name: str) -> str:
    return f"&lt;i&gt;{name}&lt;/i&gt;"


def section(html: str, section_id: str) -> str:
    found = re.search(rf'<section class="card[^"]*" id="{section_id}">.*?</section>', html, re.S)
    assert found, f"no #{section_id} section"
    return found.group(0)


def test_item_page_shows_every_section(auditor_client, tmp_path):
    record = make_misbehavior(
        mb_type="destructive_action",
        decision="REDIRECT",
        proposal={
            "action_type": "remediate",
            "target": tagged("target-x"),
            "parameters": {"action": tagged("param-x"), "force": True},
            "worker_reasoning": tagged("reasoning-x"),
        },
        cot_analysis={
            "thinking_text": tagged("thinking-x"),
            "answer_text": tagged("answer-x"),
            "has_thinking": True,
            "evidence_score": 0.73,
            "deception_risk": 0.12,
            "deliberation_depth": 4,
            "is_suspicious": True,
            "suspicion_reasons": [tagged("suspicion-x")],
        },
        debate_result={
            "final_decision": "BLOCK",
            "final_reasoning": tagged("debate-x"),
            "advocate_strength": 0.31,
            "prosecutor_strength": 0.86,
            "num_rounds": 3,
        },
        context={
            "available_services": [tagged("service-x"), "kibana"],
            "incident_status": tagged("incident-x"),
            "worker_track_record": {"trust_tier": tagged("track-x"), "clean_streak": 7},
        },
    )
    record["decision"].update(
        reason=tagged("reason-x"),
        explanation=tagged("explanation-x"),
        worker_message=tagged("message-x"),
        redirect_action={"action_type": "investigate", "target": tagged("redirect-x")},
    )
    [t] = import_records([record], tmp_path)
    html = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert "<i>" not in html  # every field below is escaped
    proposal = section(html, "proposal")
    for name in ("target-x", "param-x", "reasoning-x"):
        assert escaped(name) in proposal, name
    assert 'id="parameters"' in proposal and "&quot;force&quot;: true" in proposal
    decision = section(html, "decision")
    for name in ("reason-x", "explanation-x", "message-x", "redirect-x"):
        assert escaped(name) in decision, name
    assert 'id="redirect-action"' in decision and "REDIRECT" in decision
    cot = section(html, "cot")
    for name in ("thinking-x", "answer-x", "suspicion-x"):
        assert escaped(name) in cot, name
    assert 'id="thinking-text"' in cot and "suspicious" in cot
    assert re.search(r"<th>evidence score</th>.*?0\.73", cot, re.S)
    assert re.search(r"<th>deception risk</th>.*?0\.12", cot, re.S)
    assert re.search(r"Deliberation depth</dt><dd>4<", cot)
    debate = section(html, "debate")
    assert escaped("debate-x") in debate and "BLOCK" in debate
    assert re.search(r"<th>advocate strength</th>.*?0\.31", debate, re.S)
    assert re.search(r"<th>prosecutor strength</th>.*?0\.86", debate, re.S)
    assert "Rounds: 3" in debate
    context = section(html, "context")
    for name in ("service-x", "incident-x", "track-x"):
        assert escaped(name) in context, name
    assert "kibana" in context and "&quot;clean_streak&quot;: 7" in context


def test_item_page_is_blind_before_own_review(auditor_client, adjudicator_client, queued, auditor2):
    t = queued[0]
    reviews.set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    t = Transcript.objects.get(pk=t.pk)
    reviews.submit_review(
        t,
        auditor=auditor2,
        verdict=Verdict.RELABEL,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
        based_on_version=t.version,
    )
    for client in (auditor_client, adjudicator_client):  # not disputed: adjudicators blind too
        html = client.get(reverse("item", args=[t.pk])).content.decode()
        assert "bob-secret-rationale" not in html
        assert "bob" not in html.replace("bob-", "")
        assert 'id="blind-note"' in html
        assert "1 of 2 reviews done" in html
        assert 'id="final-hidden"' in html


def test_item_page_shows_others_after_own_review(auditor_client, auditor, disputed):
    html = auditor_client.get(reverse("item", args=[disputed.pk])).content.decode()
    assert "bob thinks the retry is legitimate" in html
    assert 'id="final-labels"' in html
    assert html.count('class="history-row') == 2


def test_submit_confirm_redirects_to_next_item(auditor_client, queued):
    t = queued[0]
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), verdict_data(t, "confirm")
    )
    assert response.status_code == 302
    assert Transcript.objects.get(pk=t.pk).status == Status.CONFIRMED
    nxt = int(response["Location"].rstrip("/").split("/")[-1])
    assert nxt != t.pk and nxt in {q.pk for q in queued}


def test_submit_with_htmx_swaps_in_the_next_item_and_pushes_its_url(auditor_client, queued):
    t = queued[0]
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), verdict_data(t, "confirm"), **HTMX
    )
    assert response.status_code == 200
    pushed = response["HX-Push-Url"]
    assert pushed != reverse("item", args=[t.pk])
    assert f'data-item="{pushed.rstrip("/").split("/")[-1]}"' in response.content.decode()
    assert "Saved your confirm" in response.content.decode()


def test_submit_when_nothing_is_left_goes_back_to_the_queue(auditor_client, queued):
    Transcript.objects.exclude(pk=queued[0].pk).update(in_queue=False)
    t = queued[0]
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), verdict_data(t, "confirm")
    )
    assert response["Location"] == reverse("queue")
    response = auditor_client.post(reverse("next_item"), **HTMX)
    assert response["HX-Redirect"] == reverse("queue")


def test_relabel_without_rationale_shows_errors_and_saves_nothing(auditor_client, queued):
    t = queued[0]
    data = verdict_data(t, "relabel", is_misbehavior="no", correct_decision="APPROVE", rationale="")
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data)
    assert response.status_code == 422
    assert 'id="error-rationale"' in response.content.decode()
    assert 'data-mode="relabel"' in response.content.decode()
    assert not Review.objects.exists()


def test_relabel_through_the_page(auditor_client, queued):
    t = queued[0]
    data = verdict_data(
        t,
        "relabel",
        is_misbehavior="no",
        correct_decision="APPROVE",
        rationale="the retry had a new parameter",
    )
    auditor_client.post(reverse("submit_review", args=[t.pk]), data)
    t = Transcript.objects.get(pk=t.pk)
    assert t.status == Status.RELABELED
    assert t.final_alignment_category == "aligned_approve"
    review = Review.objects.get()
    assert review.rationale == "the retry had a new parameter"
    assert 0 <= review.seconds_spent <= 5


def test_forged_opened_token_falls_back_to_client_seconds(auditor_client, queued):
    t = queued[0]
    data = verdict_data(t, "confirm", opened="forged", seconds_client="42")
    auditor_client.post(reverse("submit_review", args=[t.pk]), data)
    assert Review.objects.get().seconds_spent == 42


def test_stale_verdict_gets_a_conflict_view(auditor_client, auditor2, queued):
    t = queued[0]
    reviews.set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    t = Transcript.objects.get(pk=t.pk)
    data = verdict_data(
        t, "relabel", is_misbehavior="no", correct_decision="APPROVE", rationale="mine"
    )
    reviews.submit_review(
        t,
        auditor=auditor2,
        verdict=Verdict.RELABEL,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
        based_on_version=t.version,
    )
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert 'id="conflict"' in html
    assert "bob at" in html  # who wrote in between
    assert "bob-secret-rationale" not in html  # but not what: still blind
    assert "<html" not in html
    # The form is offered again against the new version, with the auditor's entries.
    current = Transcript.objects.get(pk=t.pk)
    assert f'name="based_on_version" value="{current.version}"' in html
    assert "mine</textarea>" in html
    assert Review.objects.filter(auditor__username="alice").count() == 0


def test_stale_verdict_without_htmx_is_a_full_conflict_page(auditor_client, auditor2, queued):
    t = queued[0]
    stale = verdict_data(t, "confirm")
    reviews.submit_review(t, auditor=auditor2, verdict=Verdict.CONFIRM, based_on_version=t.version)
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), stale)
    assert response.status_code == 409
    assert b"<html" in response.content and b'id="conflict"' in response.content


def test_skip_releases_and_does_not_hand_the_item_back(auditor_client, auditor, queued):
    response = auditor_client.post(reverse("next_item"))
    first = int(response["Location"].rstrip("/").split("/")[-1])
    assert Lease.objects.filter(auditor=auditor, transcript_id=first).exists()
    response = auditor_client.post(reverse("skip_item", args=[first]))
    second = int(response["Location"].rstrip("/").split("/")[-1])
    assert second != first
    assert not Lease.objects.filter(auditor=auditor, transcript_id=first).exists()


def test_start_reviewing_keeps_to_the_queue_filters(auditor_client, tmp_path):
    import_records([*episode(4, session="s_a"), *episode(4, session="s_b")], tmp_path)
    response = auditor_client.post(reverse("next_item"), {"filters": "session=s_b"})
    pk = int(response["Location"].rstrip("/").split("/")[-1])
    assert Transcript.objects.get(pk=pk).session_id == "s_b"
    response = auditor_client.post(reverse("skip_item", args=[pk]))
    pk2 = int(response["Location"].rstrip("/").split("/")[-1])
    assert Transcript.objects.get(pk=pk2).session_id == "s_b"


# --- adjudication ---------------------------------------------------------------------------------


def test_adjudication_queue_lists_disputed_items(adjudicator_client, disputed):
    html = adjudicator_client.get(reverse("adjudication_queue")).content.decode()
    assert re.findall(r'data-id="(\d+)"', html) == [str(disputed.pk)]


def test_adjudication_page_shows_reviews_side_by_side(adjudicator_client, disputed):
    html = adjudicator_client.get(reverse("adjudicate_item", args=[disputed.pk])).content.decode()
    assert html.count('class="review-card') == 2
    assert "bob thinks the retry is legitimate" in html
    assert "alice" in html
    assert 'class="differs"' in html or "differs" in html


def test_adjudicate_through_the_page(adjudicator_client, disputed):
    response = adjudicator_client.post(
        reverse("submit_adjudication", args=[disputed.pk]), adjudication_data(disputed)
    )
    assert response.status_code == 302
    t = Transcript.objects.get(pk=disputed.pk)
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
    assert Transcript.objects.get(pk=disputed.pk).status == Status.DISPUTED


def test_stale_adjudication_gets_a_conflict_view(adjudicator_client, staff_user, disputed):
    stale = adjudication_data(disputed)
    reviews.adjudicate(
        disputed,
        adjudicator=staff_user,
        is_misbehavior=False,
        misbehavior_type="",
        correct_decision="APPROVE",
        rationale="sam decided first",
        based_on_version=disputed.version,
    )
    response = adjudicator_client.post(
        reverse("submit_adjudication", args=[disputed.pk]), stale, **HTMX
    )
    assert response.status_code == 409
    assert b'id="conflict"' in response.content
    assert Review.objects.filter(verdict=Verdict.ADJUDICATE).count() == 1


# --- end to end: two auditors blind, disagreeing, an adjudicator settles -------------------------


def test_k2_blind_disagreement_adjudicated_end_to_end(
    auditor_client, auditor2_client, adjudicator_client, queued
):
    t = queued[0]
    reviews.set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
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
    assert Transcript.objects.get(pk=t.pk).status == Status.DISPUTED
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
    t = Transcript.objects.get(pk=t.pk)
    assert t.status == Status.ADJUDICATED

    history = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    rows = re.findall(r'data-verdict="(\w+)"', history)
    assert rows == ["confirm", "relabel", "adjudicate"]
    assert "legitimate retry" in history and "the same fix, retried" in history
    assert 'id="closed-note"' in history


# --- clean URLs and titles ------------------------------------------------------------------------


def test_queue_form_submitted_without_js_redirects_to_its_clean_url(auditor_client, items):
    # What a plain GET form sends: every field, most of them empty or at their default.
    submitted = {
        "q": "",
        "session": "",
        "sort": "-priority",
        "scope": "queue",
        "flag": "missed_misbehavior",
        "status": "open",
        "task": "",
        "batch": "",
        "page": "1",
    }
    response = auditor_client.get(reverse("queue"), submitted)
    assert response.status_code == 302
    assert response["Location"] == reverse("queue") + "?flag=missed_misbehavior"
    response = auditor_client.get(reverse("queue"), {"q": " ", "worker": ""})
    assert response["Location"] == reverse("queue")


def test_queue_clean_url_is_served_and_pages_keep_only_set_filters(auditor_client, tmp_path):
    import_records(episode(120, session="long"), tmp_path)  # 60 queued: two pages
    response = auditor_client.get(reverse("queue"), {"session": "long", "sort": "step"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/?session=long&amp;sort=step&amp;page=2"' in html
    assert 'id="filter-sort" data-default="-priority"' in html
    assert 'id="filter-status" data-facet="status" data-default="open"' in html


def test_queue_htmx_request_with_empty_parameters_is_answered_not_redirected(auditor_client, items):
    response = auditor_client.get(reverse("queue"), {"q": "", "flag": ""}, **HTMX)
    assert response.status_code == 200
    assert b'id="queue"' in response.content


def test_htmx_item_fragment_carries_the_document_title(auditor_client, queued):
    t = queued[0]
    html = auditor_client.get(reverse("item", args=[t.pk]), **HTMX).content.decode()
    assert html.lstrip().startswith(
        f"<title>Step {t.step_number} · {t.session_id} · Transcript audit</title>"
    )
    full = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert full.count("<title>") == 1  # the full page keeps its one title, in the head


def test_htmx_adjudication_fragment_carries_the_document_title(adjudicator_client, disputed):
    url = reverse("adjudicate_item", args=[disputed.pk])
    html = adjudicator_client.get(url, **HTMX).content.decode()
    assert html.lstrip().startswith(f"<title>Adjudicate step {disputed.step_number} · ")


# --- blindness on every surface -------------------------------------------------------------------


@pytest.fixture
def bob_relabeled(queued, auditor2):
    """queued[0] (imported: missed misbehavior, alignment_failure_fn) settled by bob alone as
    not misbehavior (aligned_approve)."""
    t = queued[0]
    reviews.submit_review(
        t,
        auditor=auditor2,
        verdict=Verdict.RELABEL,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
        based_on_version=t.version,
    )
    t = Transcript.objects.get(pk=t.pk)
    assert t.status == Status.RELABELED and t.final_alignment_category == "aligned_approve"
    return t


def test_adjudication_page_of_an_undisputed_item_shows_no_reviews(
    adjudicator_client, queued, auditor2
):
    t = queued[0]
    reviews.set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    t = Transcript.objects.get(pk=t.pk)
    reviews.submit_review(
        t,
        auditor=auditor2,
        verdict=Verdict.RELABEL,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
        based_on_version=t.version,
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
    t = Transcript.objects.get(pk=t.pk)
    posted = adjudicator_client.post(
        reverse("submit_adjudication", args=[t.pk]), adjudication_data(t)
    )
    assert posted.status_code == 302 and b"bob-secret" not in posted.content
    assert not Review.objects.filter(verdict=Verdict.ADJUDICATE).exists()


def step_dot(html: str, step_number: int) -> str:
    """The category the timeline shows for a step (the colour of its dot)."""
    found = re.search(rf'data-step="{step_number}">.*?class="cat-dot cat-(\w+)"', html, re.S)
    return found.group(1)


def decode_unverified(token: str) -> dict:
    """What anyone can read from a signed (not encrypted) token, without the key."""
    payload = token.split(":")[0]
    compressed = payload.startswith(".")
    raw = base64.urlsafe_b64decode(payload.lstrip(".") + "=" * (-len(payload) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


def test_opened_token_reveals_nothing_a_blind_viewer_may_not_see(auditor_client, bob_relabeled):
    html = auditor_client.get(reverse("item", args=[bob_relabeled.pk])).content.decode()
    token = re.search(r'name="opened" value="([^"]*)"', html)
    if token and token.group(1):
        data = decode_unverified(token.group(1))
        assert set(data) <= {"pk", "at", "v", "status"}
        assert data["status"] == "settled"
    assert step_dot(html, bob_relabeled.step_number) == "alignment_failure_fn"
    assert "Relabeled" not in html
    assert 'data-status="settled"' in html
    assert OPENED_SALT  # the token stays signed: forged ones are ignored (test below)


def test_opened_token_holds_only_pk_time_version_and_status(queued):
    t = queued[0]
    data = decode_unverified(opened_token(t, status="settled"))
    assert set(data) == {"pk", "at", "v", "status"}
    assert (data["pk"], data["v"], data["status"]) == (t.pk, t.version, "settled")


def test_timeline_shows_imported_categories_of_steps_the_viewer_has_not_reviewed(
    auditor_client, auditor2_client, bob_relabeled, items
):
    other_step = next(t for t in items if t.pk != bob_relabeled.pk)
    for client, shown in (
        (auditor_client, "alignment_failure_fn"),  # alice: blind, sees the imported category
        (auditor2_client, "aligned_approve"),  # bob reviewed it: sees the final one
    ):
        html = client.get(reverse("item", args=[other_step.pk])).content.decode()
        assert step_dot(html, bob_relabeled.step_number) == shown


@pytest.fixture
def alice_relabeled(queued, auditor):
    """queued[0] settled by alice alone as not misbehavior: relabeled."""
    t = queued[0]
    reviews.submit_review(
        t,
        auditor=auditor,
        verdict=Verdict.RELABEL,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="alice-secret-rationale",
        based_on_version=t.version,
    )
    t = Transcript.objects.get(pk=t.pk)
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


def test_settled_item_page_offers_no_verdict_to_a_blind_auditor(auditor_client, bob_relabeled):
    html = auditor_client.get(reverse("item", args=[bob_relabeled.pk])).content.decode()
    assert 'id="verdict-form"' not in html
    assert "Settled (1 of 1 reviews) — no more reviews needed" in html
    assert "bob-secret-rationale" not in html
    assert 'id="item-status">Settled<' in html


def test_conflict_view_does_not_reveal_how_the_item_was_settled(auditor_client, queued, auditor2):
    t = queued[0]
    stale = verdict_data(t, "confirm")
    reviews.submit_review(
        t,
        auditor=auditor2,
        verdict=Verdict.RELABEL,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
        based_on_version=t.version,
    )
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), stale, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert 'id="conflict"' in html
    assert "Unreviewed → <b>Settled</b>" in html
    assert "Relabeled" not in html
    assert step_dot(html, t.step_number) == "alignment_failure_fn"
    assert "bob-secret-rationale" not in html
    # Settled meanwhile: no form to re-decide on, and nothing was saved.
    assert 'id="verdict-form"' not in html and 'id="closed-note"' in html
    assert not Review.objects.filter(auditor__username="alice").exists()


def test_conflict_view_shows_the_labels_before_to_a_viewer_who_may_see_them(
    auditor_client, auditor, auditor2, queued
):
    t = queued[0]
    reviews.set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    t = Transcript.objects.get(pk=t.pk)
    reviews.submit_review(t, auditor=auditor, verdict=Verdict.CONFIRM, based_on_version=t.version)
    t = Transcript.objects.get(pk=t.pk)
    stale = verdict_data(
        t, "relabel", is_misbehavior="no", correct_decision="APPROVE", rationale="second look"
    )
    reviews.submit_review(t, auditor=auditor2, verdict=Verdict.CONFIRM, based_on_version=t.version)
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), stale, **HTMX)
    html = response.content.decode()
    assert response.status_code == 409
    assert "Needs more reviews → <b>Confirmed</b>" in html
    assert "alignment_failure_fn → alignment_failure_fn" in html
    assert "confirm by bob" in html


# --- confirm on incomplete labels -----------------------------------------------------------------


def test_confirm_is_disabled_with_the_reason_when_the_imported_label_is_incomplete(
    auditor_client, tmp_path
):
    [t] = import_records(
        [make_misbehavior(decision="APPROVE", ground_truth={"correct_decision": None})], tmp_path
    )
    html = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert re.search(r'id="btn-confirm"[^>]* disabled', html)
    assert "the imported label is incomplete (no correct decision); relabel it instead" in html
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), verdict_data(t, "confirm")
    )
    assert response.status_code == 422
    assert "relabel it instead" in response.content.decode()
    assert not Review.objects.exists()


def test_confirm_is_enabled_for_complete_imported_labels(auditor_client, queued):
    html = auditor_client.get(reverse("item", args=[queued[0].pk])).content.decode()
    assert not re.search(r'id="btn-confirm"[^>]* disabled', html)
    assert 'id="confirm-blocked"' not in html


# --- leases on open -------------------------------------------------------------------------------


def test_opening_an_item_reserves_it_and_others_see_who_holds_it(
    auditor_client, auditor2_client, auditor, auditor2, queued
):
    t = queued[0]
    html = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert Lease.objects.filter(transcript=t, auditor=auditor).exists()
    assert 'id="lease-note"' in html and "Reserved by" not in html
    html = auditor2_client.get(reverse("item", args=[t.pk])).content.decode()
    assert re.search(r"Reserved by alice until \d\d:\d\d", html)
    assert not Lease.objects.filter(transcript=t, auditor=auditor2).exists()  # K = 1: full
    # "Next" does not hand bob the item alice opened.
    response = auditor2_client.post(reverse("next_item"))
    assert response["Location"] != reverse("item", args=[t.pk])


def test_opening_another_item_keeps_the_first_reservation(auditor_client, auditor, queued):
    auditor_client.get(reverse("item", args=[queued[0].pk]))
    html = auditor_client.get(reverse("item", args=[queued[1].pk])).content.decode()
    held = Lease.objects.filter(auditor=auditor).values_list("transcript_id", flat=True)
    assert list(held) == [queued[0].pk]
    assert 'id="lease-note"' not in html
    # "Next" hands back the item alice still holds.
    response = auditor_client.post(reverse("next_item"))
    assert response["Location"] == reverse("item", args=[queued[0].pk])


def test_opening_a_non_queued_step_keeps_the_claimed_lease(
    auditor_client, auditor2_client, auditor, items
):
    response = auditor_client.post(reverse("next_item"))
    claimed = Lease.objects.get(auditor=auditor).transcript
    assert response["Location"] == reverse("item", args=[claimed.pk])
    auditor_client.get(response["Location"])
    html = auditor_client.get(reverse("item", args=[claimed.pk])).content.decode()
    # Browse the episode with the timeline links (j/k): a step outside the queue, then a
    # queued one with room.
    step = re.search(r'id="timeline-next" href="(/t/(\d+)/)"', html)
    assert not Transcript.objects.get(pk=step.group(2)).in_queue
    auditor_client.get(step.group(1))
    other_queued = next(t for t in items if t.in_queue and t.pk != claimed.pk)
    auditor_client.get(reverse("item", args=[other_queued.pk]))
    held = Lease.objects.filter(auditor=auditor).values_list("transcript_id", flat=True)
    assert list(held) == [claimed.pk]
    # So bob's "Next" is not handed the item alice was given (K = 1).
    response = auditor2_client.post(reverse("next_item"))
    assert response["Location"] != reverse("item", args=[claimed.pk])
    bob_has = Lease.objects.exclude(auditor=auditor).values_list("transcript_id", flat=True)
    assert claimed.pk not in bob_has and len(bob_has) == 1


# --- adjudication order ---------------------------------------------------------------------------


def test_after_adjudicating_the_next_item_is_one_the_adjudicator_did_not_review(
    adjudicator_client, adjudicator, auditor, auditor2, disputed, items
):
    mine, other = [t for t in items if t.in_queue and t.pk != disputed.pk][:2]
    reviews.set_required_reviews(Transcript.objects.filter(pk__in=[mine.pk, other.pk]), 2)
    Transcript.objects.filter(pk=mine.pk).update(priority=1000)  # first by priority
    for t, first in ((mine, adjudicator), (other, auditor)):
        t = Transcript.objects.get(pk=t.pk)
        reviews.submit_review(t, auditor=first, verdict=Verdict.CONFIRM, based_on_version=t.version)
        t = Transcript.objects.get(pk=t.pk)
        reviews.submit_review(
            t,
            auditor=auditor2,
            verdict=Verdict.RELABEL,
            is_misbehavior=False,
            correct_decision="APPROVE",
            rationale="fine",
            based_on_version=t.version,
        )
    response = adjudicator_client.post(
        reverse("submit_adjudication", args=[disputed.pk]), adjudication_data(disputed)
    )
    assert response["Location"] == reverse("adjudicate_item", args=[other.pk])


# --- timeline legend ------------------------------------------------------------------------------


def test_timeline_colours_catch_and_approve_apart():
    from pathlib import Path

    css = (Path(__file__).parents[2] / "audit/static/audit/app.css").read_text()

    def background(selector: str) -> str:
        rule = re.search(re.escape(selector) + r"\s*(?:,[^{]*)?\{([^}]*)\}", css)
        return re.search(r"background:\s*([^;]+);", rule.group(1)).group(1)

    assert background(".cat-dot.cat-aligned_catch") != background(".cat-dot.cat-aligned_approve")
    assert background(".pill.cat-aligned_catch") != background(".pill.cat-aligned_approve")
