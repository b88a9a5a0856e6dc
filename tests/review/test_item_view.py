"""The item page and its verdicts (audit.review.views: item, next_item, skip_item,
submit_review): the view checklist, pinned query counts, every section escaped, blindness on
the page, conflicts, confirm on incomplete labels, and reserving an item by opening it."""

import base64
import json
import re
import zlib

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import Lease, Review, Status, Transcript, TranscriptText
from audit.review.forms import OPENED_SALT, opened_token
from audit.review.workflow import set_required_reviews
from audit.team import guidelines
from tests.factories import adjudicate, confirm, fresh, import_records, make_misbehavior, relabel
from tests.review.pages import HOSTILE, HTMX, GuardedViewChecklist, episode, verdict_data

pytestmark = pytest.mark.django_db


class TestChecklist(GuardedViewChecklist):
    screen = "item"


# --- the page -------------------------------------------------------------------------------------


def test_item_page_shows_the_record_and_timeline(auditor_client, steps):
    t = steps[2]  # step 3
    html = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert "step 3: retry the same fix" in html
    assert 'id="timeline-list"' in html
    assert html.count('data-step="') == 6
    assert re.search(r'class="current[^"]*" data-step="3"', html)
    assert f'href="{reverse("item", args=[steps[1].pk])}"' in html  # previous step (k)
    assert f'href="{reverse("item", args=[steps[3].pk])}"' in html  # next step (j)
    assert "the overseer approved it" in html  # the problem, in words
    assert 'id="verdict-form"' in html


def test_item_page_query_count_is_constant(
    auditor_client, auditor, django_assert_num_queries, tmp_path
):
    small = import_records(episode(3, session="q_small"), tmp_path, name="a.jsonl")
    big = import_records(episode(150, session="q_big"), tmp_path, name="b.jsonl")
    auditor_client.get(reverse("queue"))  # warm the session
    # Version 1 exists (the first read ever creates it); every page then
    # reads the current version: one query more than the figures below say (the "+ 1"s).
    guidelines.current_version()
    # The thread region reads the item's comments and its marks: "+ 2".
    # First open: 10 to show the page (3 of them the progress line: the auditor's reviews
    # today, the queue's open items from the rollup, the auditor's own reviewed ones among
    # them), 6 to reserve it (does the auditor hold another lease, savepoint, lock
    # the row, load its leases, insert, release).
    with django_assert_num_queries(16 + 1 + 2):
        auditor_client.get(reverse("item", args=[small[0].pk]))
    # Holding that lease, opening another queued item only asks about it: 10 + 1.
    with django_assert_num_queries(11 + 1 + 2):
        auditor_client.get(reverse("item", args=[big[0].pk]))
    Lease.objects.filter(auditor=auditor).delete()
    with django_assert_num_queries(16 + 1 + 2):
        auditor_client.get(reverse("item", args=[big[0].pk]))
    # Opening it again, with its lease held: 10.
    with django_assert_num_queries(10 + 1 + 2):
        auditor_client.get(reverse("item", args=[big[0].pk]))


def test_a_verdict_and_the_next_item_run_a_fixed_number_of_queries(
    auditor_client, auditor, django_assert_num_queries, tmp_path
):
    """A verdict with htmx saves it and answers with the next item, claimed (what an auditor
    does all day, issue 14): its queries do not grow with the queue or the episode."""
    small = import_records(episode(7, session="v_small"), tmp_path, name="a.jsonl")
    big = import_records(episode(151, session="v_big"), tmp_path, name="b.jsonl")
    guidelines.current_version()  # as in the test above
    auditor_client.get(reverse("queue"))  # warm the session
    # 3 for the session, the user and their roles; 1 the item; the guidelines' version 1;
    # saving it 8 (savepoint, lock the row, the auditor's earlier review, insert, drop the
    # lease, the item's current reviews, write the item, release); the claim 4 to find
    # the next item (the auditor's leases, their assigned items, the first claimable row of
    # each open status) and 6 to take it (savepoint, lock the row with its batch and text,
    # re-check it, the auditor's lease of it (none), insert one, release); the next item's page 9
    # (reviews, leases, timeline, 3 for the progress line, guidelines, the discussion's 2).
    for items in (small, big):
        Lease.objects.filter(auditor=auditor).delete()
        item = next(t for t in items if t.in_queue and t.status == Status.UNREVIEWED)
        auditor_client.get(reverse("item", args=[item.pk]))  # reserves it
        item = fresh(item)
        with django_assert_num_queries(3 + 1 + 1 + 8 + 4 + 6 + 9):
            response = auditor_client.post(
                reverse("submit_review", args=[item.pk]), verdict_data(item, "confirm"), **HTMX
            )
        assert response.status_code == 200
        assert response["HX-Push-Url"].startswith("/t/")
        assert Review.objects.filter(transcript=item, auditor=auditor).exists()


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
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    relabel(
        t,
        auditor2,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
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


def test_htmx_item_fragment_carries_the_document_title(auditor_client, queued):
    t = queued[0]
    html = auditor_client.get(reverse("item", args=[t.pk]), **HTMX).content.decode()
    assert html.lstrip().startswith(
        f"<title>Step {t.step_number} · {t.session_id} · Transcript audit</title>"
    )
    full = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert full.count("<title>") == 1  # the full page keeps its one title, in the head


# --- verdicts -------------------------------------------------------------------------------------


def test_submit_confirm_redirects_to_next_item(auditor_client, queued):
    t = queued[0]
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), verdict_data(t, "confirm")
    )
    assert response.status_code == 302
    assert fresh(t).status == Status.CONFIRMED
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
    t = fresh(t)
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


def test_a_co_reviewers_verdict_does_not_make_mine_stale(auditor_client, auditor2, queued):
    """K = 2: both auditors hold the item, blind; the one who saves second is not refused (the
    other's independent review changes nothing the verdict depends on)."""
    t = queued[0]
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    t = fresh(t)
    data = verdict_data(
        t, "relabel", is_misbehavior="no", correct_decision="APPROVE", rationale="mine"
    )
    relabel(
        t,
        auditor2,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
    )
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data, **HTMX)
    assert response.status_code == 200
    assert 'id="conflict"' not in response.content.decode()
    assert Review.objects.filter(auditor__username="alice", rationale="mine").count() == 1
    t = fresh(t)
    assert (t.review_count, t.status) == (2, Status.RELABELED)
    assert (
        Review.objects.get(auditor__username="alice").based_on_version == data["based_on_version"]
    )


def test_my_own_verdict_from_another_tab_makes_this_tab_stale(auditor_client, auditor, queued):
    t = queued[0]
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    t = fresh(t)
    data = verdict_data(t, "unsure", rationale="this tab")
    confirm(t, auditor)  # the same auditor, in another tab
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert 'id="conflict"' in html and "you, in another tab (confirm) at" in html
    assert "alice" not in html.split('id="conflict"')[1].split("</dl>")[0]
    # No unchanged rows: K did not change.
    assert "Reviews needed" not in html
    assert "this tab</textarea>" in html  # the entries are offered again
    assert Review.objects.filter(auditor=auditor).count() == 1


def test_a_settlement_since_the_page_is_a_conflict_that_names_no_one(
    auditor_client, auditor2, queued
):
    t = queued[0]  # K = 1: bob's confirm settles it, and a newcomer's verdict would not count
    data = verdict_data(
        t, "relabel", is_misbehavior="no", correct_decision="APPROVE", rationale="x"
    )
    confirm(t, auditor2)
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    conflict = html.split('id="conflict"')[1].split("</dl>")[0]
    assert "a review by another auditor at" in conflict
    assert "bob" not in html  # blind: the co-reviewer is not named anywhere
    assert "<html" not in html
    assert "no more reviews needed" in html  # why there is no form to decide again
    assert Review.objects.filter(auditor__username="alice").count() == 0


def test_a_change_of_k_since_the_page_makes_the_verdict_stale(auditor_client, queued):
    t = queued[0]
    data = verdict_data(t, "confirm")
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 3)
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert "<dt>Reviews needed</dt><dd>1 → <b>3</b></dd>" in html
    assert "<dt>Status</dt>" not in html  # unchanged: not listed
    assert not Review.objects.exists()


def test_stale_verdict_without_htmx_is_a_full_conflict_page(auditor_client, auditor2, queued):
    t = queued[0]
    stale = verdict_data(t, "confirm")
    confirm(t, auditor2)
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), stale)
    assert response.status_code == 409
    assert b"<html" in response.content and b'id="conflict"' in response.content


# --- next and skip --------------------------------------------------------------------------------


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


# --- blindness on the page ------------------------------------------------------------------------


@pytest.fixture
def bob_relabeled(queued, auditor2):
    """queued[0] (imported: missed misbehavior, alignment_failure_fn) settled by bob alone as
    not misbehavior (aligned_approve)."""
    relabel(
        queued[0],
        auditor2,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
    )
    t = fresh(queued[0])
    assert t.status == Status.RELABELED and t.final_alignment_category == "aligned_approve"
    return t


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


def test_opened_token_holds_only_what_the_viewer_was_shown(queued):
    t = queued[0]
    data = decode_unverified(opened_token(t, status="settled", own_review=7))
    assert set(data) == {"pk", "at", "v", "status", "own", "k"}
    assert (data["pk"], data["v"], data["status"]) == (t.pk, t.version, "settled")
    # What the verdict depends on: the viewer's own review, and K (both on their page).
    assert (data["own"], data["k"]) == (7, t.required_reviews)


def test_timeline_shows_imported_categories_of_steps_the_viewer_has_not_reviewed(
    auditor_client, auditor2_client, bob_relabeled, steps
):
    other_step = next(t for t in steps if t.pk != bob_relabeled.pk)
    for client, shown in (
        (auditor_client, "alignment_failure_fn"),  # alice: blind, sees the imported category
        (auditor2_client, "aligned_approve"),  # bob reviewed it: sees the final one
    ):
        html = client.get(reverse("item", args=[other_step.pk])).content.decode()
        assert step_dot(html, bob_relabeled.step_number) == shown


def test_settled_item_page_offers_no_verdict_to_a_blind_auditor(auditor_client, bob_relabeled):
    html = auditor_client.get(reverse("item", args=[bob_relabeled.pk])).content.decode()
    assert 'id="verdict-form"' not in html
    assert "Settled (1 of 1 reviews) — no more reviews needed" in html
    assert "bob-secret-rationale" not in html
    assert 'id="item-status">Settled<' in html


def test_conflict_view_does_not_reveal_how_the_item_was_settled(auditor_client, queued, auditor2):
    t = queued[0]
    stale = verdict_data(t, "confirm")
    relabel(
        t,
        auditor2,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob-secret-rationale",
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
    auditor_client, auditor, auditor2, adjudicator, queued
):
    t = queued[0]
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    confirm(t, auditor)
    t = fresh(t)
    stale = verdict_data(
        t,
        "relabel",
        is_misbehavior="no",
        correct_decision="APPROVE",
        rationale="second look",
        opened=opened_token(t, status=t.status, own_review=Review.objects.get().pk),
    )
    relabel(fresh(t), auditor2)  # disputed: alice may still revise hers
    adjudicate(fresh(t), adjudicator)  # settled for good: her revision would not count
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), stale, **HTMX)
    html = response.content.decode()
    assert response.status_code == 409
    assert "Needs more reviews → <b>Adjudicated</b>" in html
    assert "alignment_failure_fn → aligned_approve" in html  # she reviewed: she may see them
    assert "relabel by bob" in html and "adjudicate by carol" in html


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


def test_opening_an_item_reserves_it_and_others_see_it_is_held_not_by_whom(
    auditor_client, auditor2_client, auditor, auditor2, queued
):
    t = queued[0]
    html = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    assert Lease.objects.filter(transcript=t, auditor=auditor).exists()
    assert 'id="lease-note"' in html and "Reserved by" not in html
    html = auditor2_client.get(reverse("item", args=[t.pk])).content.decode()
    # Blind: bob has given no verdict here, so the page must not name who else works on it.
    assert re.search(r"Reserved by another auditor until \d\d:\d\d", html)
    assert "alice" not in html
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
    auditor_client, auditor2_client, auditor, steps
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
    other_queued = next(t for t in steps if t.in_queue and t.pk != claimed.pk)
    auditor_client.get(reverse("item", args=[other_queued.pk]))
    held = Lease.objects.filter(auditor=auditor).values_list("transcript_id", flat=True)
    assert list(held) == [claimed.pk]
    # So bob's "Next" is not handed the item alice was given (K = 1).
    response = auditor2_client.post(reverse("next_item"))
    assert response["Location"] != reverse("item", args=[claimed.pk])
    bob_has = Lease.objects.exclude(auditor=auditor).values_list("transcript_id", flat=True)
    assert claimed.pk not in bob_has and len(bob_has) == 1


# --- timeline legend ------------------------------------------------------------------------------


def test_timeline_colours_catch_and_approve_apart():
    from pathlib import Path

    css = (Path(__file__).parents[2] / "audit/static/audit/app.css").read_text()

    def background(selector: str) -> str:
        rule = re.search(re.escape(selector) + r"\s*(?:,[^{]*)?\{([^}]*)\}", css)
        return re.search(r"background:\s*([^;]+);", rule.group(1)).group(1)

    assert background(".cat-dot.cat-aligned_catch") != background(".cat-dot.cat-aligned_approve")
    assert background(".pill.cat-aligned_catch") != background(".pill.cat-aligned_approve")


# --- long and deep records: what a person can read, the whole of it on demand ---------------------

# A page holding every section of a record, each field at its limit, stays under this.
PAGE_BYTES = 300_000


def deep_parameters_line(levels: int = 9_900, **overrides) -> str:
    """The hostile record of the reliability review (D1): 22 KB, parameters nested 9,900 deep,
    a missed misbehavior (so at the top of the queue). Built as text: too deep to dump."""
    line = json.dumps(
        make_misbehavior(decision="APPROVE", proposal={"parameters": "HERE"}, **overrides)
    )
    return line.replace('"HERE"', '{"k": ' * levels + "1" + "}" * levels)


@pytest.fixture
def stored_deep(tmp_path, steps):
    """A queued step of the episode whose stored line is the hostile one, as a record imported
    before the importer refused lines nested deeper than 64 levels."""
    t = next(t for t in steps if t.in_queue)
    TranscriptText.objects.filter(pk=t.pk).update(raw=deep_parameters_line())
    return fresh(t)


def test_item_page_of_a_deeply_nested_record_stays_small(auditor_client, stored_deep):
    # 196 MB before: indented JSON grows with the square of the depth.
    response = auditor_client.get(reverse("item", args=[stored_deep.pk]))
    assert response.status_code == 200
    assert len(response.content) < PAGE_BYTES
    html = response.content.decode()
    parameters = section(html, "proposal")
    assert "{… 1 key}" in parameters  # the levels below the limit, summarised
    assert 'id="problems"' in html and "flag-missed_misbehavior" in html  # still why
    assert 'id="verdict-panel"' in html and 'id="verdict-form"' in html  # still decidable
    assert f'href="{reverse("raw_record", args=[stored_deep.pk])}"' in html


def test_item_page_cuts_long_text_and_links_the_full_record(auditor_client, tmp_path):
    thinking = "<u>why</u> " * 240_000  # 2.6 MB, hostile
    reasoning = "step " * 100_000
    [t] = import_records(
        [
            make_misbehavior(
                decision="APPROVE",
                cot_analysis={"thinking_text": thinking},
                proposal={
                    "worker_reasoning": reasoning,
                    "parameters": {"rows": [{"id": i, "v": "x" * 50} for i in range(5_000)]},
                },
                context={"available_services": [f"svc-{i}" for i in range(1_000)]},
            )
        ],
        tmp_path,
    )
    response = auditor_client.get(reverse("item", args=[t.pk]))
    assert len(response.content) < PAGE_BYTES
    html = response.content.decode()
    assert "<u>" not in html and "&lt;u&gt;why&lt;/u&gt;" in html  # cut, still escaped
    cot = section(html, "cot")
    # 20,000 characters shown (each "<" and ">" escaped on the page), the rest counted.
    assert f"… {len(thinking) - 20_000:,} more characters" in cot
    assert f"… {len(reasoning) - 20_000:,} more characters" in section(html, "proposal")
    assert "… 4,900 more items" in section(html, "proposal")
    assert "… 950 more" in section(html, "context")
    raw_url = reverse("raw_record", args=[t.pk])
    assert cot.count(f'href="{raw_url}"') == 1  # beside the cut field
    assert auditor_client.get(raw_url).content.decode() == t.text.raw  # where the whole of it is


def test_item_page_of_an_ordinary_record_cuts_nothing(auditor_client, steps):
    html = auditor_client.get(reverse("item", args=[steps[0].pk])).content.decode()
    assert 'class="cut' not in html and "more characters" not in html
    assert 'id="raw-link"' in html


def test_adjudication_page_shows_the_cut_forms(adjudicator_client, disputed):
    reasoning = "<i>retry</i> " * 50_000
    record = json.loads(disputed.text.raw)
    record["proposal"]["worker_reasoning"] = reasoning
    record["decision"]["explanation"] = "e" * 100_000
    TranscriptText.objects.filter(pk=disputed.pk).update(raw=json.dumps(record))
    response = adjudicator_client.get(reverse("adjudicate_item", args=[disputed.pk]))
    assert response.status_code == 200 and len(response.content) < PAGE_BYTES
    html = response.content.decode()
    assert "<i>" not in html and "&lt;i&gt;retry&lt;/i&gt;" in html
    assert f"… {len(reasoning) - 20_000:,} more characters" in html
    assert "… 80,000 more characters" in html
    assert html.count('class="review-card') == 2  # the reviews are all still there
    assert f'href="{reverse("raw_record", args=[disputed.pk])}"' in html


def test_adjudication_page_of_a_deeply_nested_record_stays_small(adjudicator_client, disputed):
    TranscriptText.objects.filter(pk=disputed.pk).update(raw=deep_parameters_line())
    response = adjudicator_client.get(reverse("adjudicate_item", args=[disputed.pk]))
    assert response.status_code == 200 and len(response.content) < PAGE_BYTES
    assert 'id="adjudication-form"' in response.content.decode()


def test_timeline_and_queue_are_unchanged_by_a_deep_record(auditor_client, stored_deep, steps):
    html = auditor_client.get(reverse("item", args=[steps[1].pk])).content.decode()
    assert html.count('data-step="') == len(steps)
    assert f'href="{reverse("item", args=[stored_deep.pk])}"' in html
    queue = auditor_client.get(reverse("queue"))
    assert queue.status_code == 200 and len(queue.content) < PAGE_BYTES
    assert f'href="{reverse("item", args=[stored_deep.pk])}"' in queue.content.decode()


# --- the raw record -------------------------------------------------------------------------------


def test_raw_record_is_the_line_as_imported_served_as_text(auditor_client, stored_deep):
    response = auditor_client.get(reverse("raw_record", args=[stored_deep.pk]))
    assert response.status_code == 200
    assert response.content.decode() == stored_deep.text.raw  # whole: 9,900 levels and all
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == (
        f'inline; filename="transcript-{stored_deep.pk}.json"'
    )


def test_raw_record_of_hostile_text_is_never_html(auditor_client, tmp_path):
    [t] = import_records([make_misbehavior(proposal={"worker_reasoning": HOSTILE})], tmp_path)
    response = auditor_client.get(reverse("raw_record", args=[t.pk]))
    assert HOSTILE.encode() in response.content  # verbatim, so only as plain text
    assert response["Content-Type"].startswith("text/plain")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_raw_record_shows_no_other_auditors_review(auditor_client, bob_relabeled):
    # The line as imported: no verdict writes it, so a blind viewer learns nothing from it.
    content = auditor_client.get(reverse("raw_record", args=[bob_relabeled.pk])).content
    assert content.decode() == bob_relabeled.text.raw
    assert b"bob" not in content and b"aligned_approve" not in content


def test_raw_record_reserves_nothing(auditor_client, auditor, queued):
    auditor_client.get(reverse("raw_record", args=[queued[0].pk]))
    assert not Lease.objects.filter(auditor=auditor).exists()


def test_raw_record_requires_login_role_get_and_an_item(auditor_client, plain_client, queued):
    url = reverse("raw_record", args=[queued[0].pk])
    assert Client().get(url)["Location"].startswith(reverse("login"))
    assert plain_client.get(url).status_code == 403
    assert auditor_client.post(url).status_code == 405
    missing = reverse("raw_record", args=[queued[0].pk + 10_000])
    assert auditor_client.get(missing).status_code == 404


def test_raw_record_opens_for_an_adjudicator_without_the_auditor_role(queued, request):
    """The adjudication page links to it, so its users may follow the link."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    judge = get_user_model().objects.create_user("judge-only", password="x")
    judge.groups.add(Group.objects.get(name="adjudicator"))
    client = Client()
    client.force_login(judge)
    response = client.get(reverse("raw_record", args=[queued[0].pk]))
    assert response.status_code == 200
    assert response.content.decode() == fresh(queued[0]).text.raw
