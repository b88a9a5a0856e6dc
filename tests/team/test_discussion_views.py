"""The discussion region on the item and adjudication screens and its routes
(audit.team.discussion_views): blindness on the page, writes with and without htmx, errors, and
permissions for every route and role."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import Comment, CommentRevision, DiscussionMark, Status, Transcript
from audit.review.workflow import set_required_reviews
from audit.team import discussion
from tests.factories import confirm, fresh, import_records, make_misbehavior, relabel

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
SECRET = "alice-thinks-the-retry-is-legit"


@pytest.fixture
def items(tmp_path):
    """Two queued items with K = 2."""
    records = [
        make_misbehavior(mb_type="reward_hacking", decision="APPROVE", step_number=n)
        for n in (1, 2)
    ]
    transcripts = import_records(records, tmp_path)
    set_required_reviews(Transcript.objects.filter(pk__in=[t.pk for t in transcripts]), 2)
    return [fresh(t) for t in transcripts]


@pytest.fixture
def disputed(items, auditor, auditor2):
    confirm(items[0], auditor)
    relabel(items[0], auditor2, is_misbehavior=False, correct_decision="APPROVE")
    t = fresh(items[0])
    assert t.status == Status.DISPUTED
    return t


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def region(html: str) -> str:
    """The discussion region of a page."""
    match = re.search(r'<section class="card discussion".*?</section>', html, re.S)
    assert match, "no discussion region on the page"
    return match.group(0)


def page(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return region(response.content.decode())


# --- blindness on the item page --------------------------------------------------------------


def test_a_co_reviewer_sees_neither_text_nor_name_until_their_verdict(
    items, auditor, auditor2, auditor_client, auditor2_client
):
    t = items[0]
    confirm(t, auditor)
    discussion.add_comment(t, author=auditor, text=SECRET)
    discussion.mark_needs_discussion(Transcript.objects.filter(pk=t.pk), by=auditor)
    blind = page(auditor2_client, reverse("item", args=[t.pk]))
    assert SECRET not in blind
    assert "alice" not in blind
    assert "Other auditors&#x27; comments are shown once you have given your verdict." in blind
    # The mark shows, but not who set it; no count of hidden comments.
    assert 'id="needs-discussion"' in blind and 'id="mark-history"' not in blind
    assert 'id="comments-empty"' in blind and "from you yet" in blind
    # The author sees their own.
    own = page(auditor_client, reverse("item", args=[t.pk]))
    assert SECRET in own and "Other auditors" not in own
    # bob's verdict unblinds him.
    relabel(t, auditor2, is_misbehavior=False, correct_decision="APPROVE")
    seen = page(auditor2_client, reverse("item", args=[t.pk]))
    assert SECRET in seen and "alice" in seen and 'id="mark-history"' in seen


def test_a_blind_viewer_sees_their_own_comment_only(items, auditor, auditor2, auditor2_client):
    t = items[0]
    discussion.add_comment(t, author=auditor, text=SECRET)
    discussion.add_comment(t, author=auditor2, text="bob-on-his-own")
    blind = page(auditor2_client, reverse("item", args=[t.pk]))
    assert "bob-on-his-own" in blind and SECRET not in blind
    assert '<b class="comment-author">you</b>' in blind


def test_staff_and_adjudicators_with_the_auditor_role_are_blind_on_open_items(
    items, auditor, staff_client, adjudicator_client
):
    t = items[0]
    discussion.add_comment(t, author=auditor, text=SECRET)
    for client in (staff_client, adjudicator_client):
        assert SECRET not in page(client, reverse("item", args=[t.pk]))


def test_staff_without_the_auditor_role_read_on_the_thread_page(items, auditor, lead):
    t = items[0]
    discussion.add_comment(t, author=auditor, text=SECRET)
    shown = page(client_for(lead), reverse("discussion", args=[t.pk]))
    assert SECRET in shown and "alice" in shown


def test_adjudicators_read_the_thread_on_the_adjudication_screen(
    disputed, auditor, adjudicator_client, pure_adjudicator
):
    discussion.add_comment(disputed, author=auditor, text=SECRET)
    assert SECRET in page(adjudicator_client, reverse("adjudicate_item", args=[disputed.pk]))
    assert SECRET in page(
        client_for(pure_adjudicator), reverse("adjudicate_item", args=[disputed.pk])
    )


def test_hostile_comment_text_is_escaped(items, auditor, auditor_client):
    discussion.add_comment(
        items[0], author=auditor, text='<script>alert(1)</script><img src=x onerror="alert(2)">'
    )
    shown = page(auditor_client, reverse("item", args=[items[0].pk]))
    assert "<script>alert(1)" not in shown and "<img" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown


# --- writes ------------------------------------------------------------------------------------


def test_comment_without_js_redirects_back_to_the_item(items, auditor, auditor_client):
    url = reverse("add_comment", args=[items[0].pk])
    response = auditor_client.post(url, {"text": "first thoughts", "screen": "item"})
    assert response.status_code == 302
    assert response["Location"] == reverse("item", args=[items[0].pk]) + "#discussion"
    assert [c.text for c in discussion.thread(items[0])] == ["first thoughts"]
    assert Comment.objects.get().author == auditor


def test_comment_from_the_adjudication_screen_goes_back_there(disputed, adjudicator_client):
    url = reverse("add_comment", args=[disputed.pk])
    response = adjudicator_client.post(url, {"text": "see step 2", "screen": "adjudication"})
    assert response["Location"] == reverse("adjudicate_item", args=[disputed.pk]) + "#discussion"


def test_an_unknown_screen_goes_back_to_the_item(items, auditor_client):
    url = reverse("add_comment", args=[items[0].pk])
    response = auditor_client.post(url, {"text": "x", "screen": "https://evil.example/"})
    assert response["Location"] == reverse("item", args=[items[0].pk]) + "#discussion"


def test_comment_with_htmx_answers_with_the_region_alone(items, auditor_client):
    url = reverse("add_comment", args=[items[0].pk])
    response = auditor_client.post(url, {"text": "swap me in", "screen": "item"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card discussion"')
    assert "<html" not in html and "swap me in" in html and "Comment added." in html
    # Its forms keep to the screen it came from.
    assert 'name="screen" value="item"' in html


@pytest.mark.parametrize(
    ("text", "problem"),
    [("   ", "cannot be empty or only white space"), ("x" * 5001, "at most 5,000 characters")],
)
def test_a_refused_comment_says_why_and_keeps_the_text(items, auditor_client, text, problem):
    url = reverse("add_comment", args=[items[0].pk])
    response = auditor_client.post(url, {"text": text}, **HTMX)
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="comment-error"' in html and problem in html
    assert not Comment.objects.exists()
    # Without JS: the thread page, with the reason.
    response = auditor_client.post(url, {"text": text})
    assert response.status_code == 422 and problem in response.content.decode()


def test_edit_own_comment_keeps_the_earlier_text_in_the_page(items, auditor, auditor_client):
    comment = discussion.add_comment(items[0], author=auditor, text="version one")
    url = reverse("edit_comment", args=[comment.pk])
    response = auditor_client.post(url, {"text": "version two", "based_on": "1"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "version two" in html and 'class="pill comment-edited"' in html
    assert '<details class="comment-history">' in html and "version one" in html
    assert CommentRevision.objects.filter(comment=comment).count() == 2


def test_a_stale_edit_is_a_conflict_and_keeps_the_draft(items, auditor, auditor_client):
    comment = discussion.add_comment(items[0], author=auditor, text="one")
    discussion.edit_comment(comment, author=auditor, text="two", based_on=1)
    url = reverse("edit_comment", args=[comment.pk])
    response = auditor_client.post(url, {"text": "my late edit", "based_on": "1"}, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert "edited meanwhile" in html and "my late edit" in html
    assert CommentRevision.objects.filter(comment=comment).count() == 2


def test_an_edit_without_based_on_is_refused(items, auditor, auditor_client):
    comment = discussion.add_comment(items[0], author=auditor, text="one")
    url = reverse("edit_comment", args=[comment.pk])
    response = auditor_client.post(url, {"text": "two"}, **HTMX)
    assert response.status_code == 422 and "based_on" in response.content.decode()


def test_someone_elses_comment_cannot_be_edited(items, auditor, auditor2_client):
    comment = discussion.add_comment(items[0], author=auditor, text="mine")
    url = reverse("edit_comment", args=[comment.pk])
    assert auditor2_client.post(url, {"text": "yours", "based_on": "1"}).status_code == 403
    assert CommentRevision.objects.get().text == "mine"


def test_only_the_author_is_offered_the_edit_form(items, auditor, auditor2, auditor2_client):
    confirm(items[0], auditor2)  # bob may read
    comment = discussion.add_comment(items[0], author=auditor, text="alice's")
    shown = page(auditor2_client, reverse("item", args=[items[0].pk]))
    assert "alice&#x27;s" in shown
    assert reverse("edit_comment", args=[comment.pk]) not in shown


def test_mark_and_clear_from_the_page(items, auditor, auditor_client):
    url = reverse("discussion_mark", args=[items[0].pk])
    response = auditor_client.post(url, {"on": "1"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="needs-discussion"' in html and "Marked as needing discussion." in html
    assert 'name="on" value="0"' in html
    assert Transcript.objects.filter(discussion.needs_discussion_q()).get() == items[0]
    response = auditor_client.post(url, {"on": "0"})
    assert response.status_code == 302
    assert not Transcript.objects.filter(discussion.needs_discussion_q()).exists()
    mark = DiscussionMark.objects.get()
    assert mark.set_by == auditor and mark.cleared_by == auditor


def test_a_mark_request_must_say_on_or_off(items, auditor_client):
    url = reverse("discussion_mark", args=[items[0].pk])
    response = auditor_client.post(url, {"on": "yes"}, **HTMX)
    assert response.status_code == 422
    assert "on must be 1 (mark) or 0 (clear)" in response.content.decode()
    assert not DiscussionMark.objects.exists()


# --- the adjudication list's filter -----------------------------------------------------------


def test_adjudication_list_filters_needs_discussion(
    tmp_path, disputed, auditor, auditor2, adjudicator, adjudicator_client
):
    records = [make_misbehavior(session_id="other", step_number=n) for n in (1,)]
    [other] = import_records(records, tmp_path, name="other.jsonl")
    set_required_reviews(Transcript.objects.filter(pk=other.pk), 2)
    confirm(other, auditor)
    relabel(other, auditor2, is_misbehavior=False, correct_decision="APPROVE")
    discussion.mark_needs_discussion(Transcript.objects.filter(pk=disputed.pk), by=adjudicator)
    url = reverse("adjudication_queue")
    everything = adjudicator_client.get(url).content.decode()
    assert f'data-id="{disputed.pk}"' in everything and f'data-id="{other.pk}"' in everything
    assert everything.count('class="pill warn needs-discussion"') == 1
    only = adjudicator_client.get(url + "?show=disputed&discussion=1").content.decode()
    assert f'data-id="{disputed.pk}"' in only and f'data-id="{other.pk}"' not in only
    assert "only those marked" in only and 'id="filter-all"' in only
    # The tabs keep the filter.
    assert "?show=adjudicated&amp;discussion=1" in only


# --- permissions: every route, every role ------------------------------------------------------


def routes(t, comment):
    return [
        ("get", reverse("discussion", args=[t.pk]), {}),
        ("post", reverse("add_comment", args=[t.pk]), {"text": "hello"}),
        ("post", reverse("edit_comment", args=[comment.pk]), {"text": "hi", "based_on": "1"}),
        ("post", reverse("discussion_mark", args=[t.pk]), {"on": "1"}),
    ]


def test_every_route_needs_login(items, auditor):
    comment = discussion.add_comment(items[0], author=auditor, text="x")
    for method, url, data in routes(items[0], comment):
        response = getattr(Client(), method)(url, data)
        assert response.status_code == 302 and "/login/" in response["Location"], url


def test_every_route_refuses_users_without_a_role(items, auditor, plain_client):
    comment = discussion.add_comment(items[0], author=auditor, text="x")
    for method, url, data in routes(items[0], comment):
        assert getattr(plain_client, method)(url, data).status_code == 403, url
    assert CommentRevision.objects.count() == 1 and not DiscussionMark.objects.exists()


def test_wrong_methods_are_refused(items, auditor, auditor_client):
    comment = discussion.add_comment(items[0], author=auditor, text="x")
    for method, url, _ in routes(items[0], comment):
        wrong = auditor_client.post if method == "get" else auditor_client.get
        assert wrong(url).status_code == 405, url


def test_adjudicators_without_the_auditor_role_only_reach_items_in_adjudication(
    items, disputed, auditor, pure_adjudicator
):
    client = client_for(pure_adjudicator)
    open_item = items[1]
    comment = discussion.add_comment(open_item, author=auditor, text="x")
    for method, url, data in routes(open_item, comment):
        assert getattr(client, method)(url, data).status_code == 403, url
    assert client.get(reverse("discussion", args=[disputed.pk])).status_code == 200
    response = client.post(reverse("add_comment", args=[disputed.pk]), {"text": "from ada"})
    assert response.status_code == 302
    assert (
        client.post(reverse("discussion_mark", args=[disputed.pk]), {"on": "1"}).status_code == 302
    )


@pytest.mark.parametrize("who", ["auditor", "adjudicator", "staff_user", "lead"])
def test_each_writing_role_may_comment_and_mark(items, who, request):
    user = request.getfixturevalue(who)
    client = client_for(user)
    t = items[0]
    assert (
        client.post(reverse("add_comment", args=[t.pk]), {"text": f"by {who}"}).status_code == 302
    )
    assert client.post(reverse("discussion_mark", args=[t.pk]), {"on": "1"}).status_code == 302
    assert Comment.objects.get().author == user
    assert DiscussionMark.objects.get().set_by == user
    comment = Comment.objects.get()
    response = client.post(
        reverse("edit_comment", args=[comment.pk]), {"text": "edited", "based_on": "1"}
    )
    assert response.status_code == 302


def test_unknown_items_and_comments_are_404(auditor_client):
    assert auditor_client.get(reverse("discussion", args=[999999])).status_code == 404
    assert (
        auditor_client.post(reverse("add_comment", args=[999999]), {"text": "x"}).status_code == 404
    )
    response = auditor_client.post(
        reverse("edit_comment", args=[999999]), {"text": "x", "based_on": "1"}
    )
    assert response.status_code == 404


# --- the admin ---------------------------------------------------------------------------------


def test_the_admin_shows_the_discussion_of_settled_items_only(
    items, auditor, auditor2, staff_client
):
    settled, open_item = items
    set_required_reviews(Transcript.objects.filter(pk=settled.pk), 1)
    confirm(settled, auditor)
    assert fresh(settled).is_settled
    shown = discussion.add_comment(settled, author=auditor, text="on the settled one")
    hidden = discussion.add_comment(open_item, author=auditor2, text="on the open one")
    for t in items:
        discussion.mark_needs_discussion(Transcript.objects.filter(pk=t.pk), by=auditor2)
    listing = staff_client.get(reverse("admin:audit_comment_changelist")).content.decode()
    assert f"/admin/audit/comment/{shown.pk}/" in listing
    assert f"/admin/audit/comment/{hidden.pk}/" not in listing
    page = staff_client.get(reverse("admin:audit_comment_change", args=[shown.pk]))
    assert page.status_code == 200 and "on the settled one" in page.content.decode()
    assert (
        staff_client.get(reverse("admin:audit_comment_change", args=[hidden.pk])).status_code == 302
    )
    marks = staff_client.get(reverse("admin:audit_discussionmark_changelist")).content.decode()
    assert "1 discussion mark" in marks
    # Read-only: no add, no delete.
    assert staff_client.get(reverse("admin:audit_comment_add")).status_code == 403
    assert (
        staff_client.post(reverse("admin:audit_comment_delete", args=[shown.pk])).status_code == 403
    )
