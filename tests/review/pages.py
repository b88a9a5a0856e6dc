"""What the review screen tests share (test_queue_view, test_item_view, test_adjudication_view):
the episode they browse, request payloads, and the checklist every review view passes.

The checklist is one table (``VIEWS``) and one set of tests (``ViewChecklist``). Each screen's
test module runs it for its own views by subclassing with ``screen`` set; the table stays here,
in one place, so a new view is one new row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from django.test import Client
from django.urls import reverse

from audit.models import Review, Transcript
from audit.review.forms import opened_token
from tests.factories import make_misbehavior, make_record

HOSTILE = "<script>alert(1)</script>"
HTMX = {"HTTP_HX_REQUEST": "true"}
# What htmx sends when the back button finds no cached copy of the page (history cache miss):
# an htmx request that wants the whole page.
HISTORY_RESTORE = {"HTTP_HX_REQUEST": "true", "HTTP_HX_HISTORY_RESTORE_REQUEST": "true"}
# Only base.html renders this: a response holding it is the full page, not a fragment.
SITE_NAV = b'class="mainnav"'


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


def vary(response) -> set[str]:
    """The header names a response says it varies on, lower-cased."""
    return {name.strip().lower() for name in response.get("Vary", "").split(",") if name.strip()}


# --- the checklist, view by view --------------------------------------------------------------


class View(NamedTuple):
    name: str
    method: str
    needs_pk: bool  # takes a transcript pk
    role: str  # client fixture for the positive case
    screen: str  # the test module that runs its checklist: queue, item or adjudication
    region: str = ""  # GET views: the id of the fragment an htmx request gets

    def url(self, pk: int) -> str:
        return reverse(self.name, args=[pk]) if self.needs_pk else reverse(self.name)


VIEWS = (
    View("queue", "get", False, "auditor_client", "queue", region="queue"),
    View("item", "get", True, "auditor_client", "item", region="review-main"),
    View("next_item", "post", False, "auditor_client", "item"),
    View("skip_item", "post", True, "auditor_client", "item"),
    View("submit_review", "post", True, "auditor_client", "item"),
    View(
        "adjudication_queue",
        "get",
        False,
        "adjudicator_client",
        "adjudication",
        region="adjudication-list",
    ),
    View(
        "adjudicate_item",
        "get",
        True,
        "adjudicator_client",
        "adjudication",
        region="adjudication-main",
    ),
    View("submit_adjudication", "post", True, "adjudicator_client", "adjudication"),
)


def payload(name: str, transcript: Transcript) -> dict:
    if name == "submit_review":
        return verdict_data(transcript, "confirm")
    if name == "submit_adjudication":
        return adjudication_data(transcript)
    return {}


def applies_to(predicate: Callable[[View], bool]):
    """Run a checklist test only for the views ``predicate`` picks."""

    def mark(test):
        test.applies_to = predicate
        return test

    return mark


def is_page(view: View) -> bool:
    return view.method == "get"


class ViewChecklist:
    """The checks every review view passes, for the views of ``screen`` (see ``VIEWS``).

    The positive case runs against the ``disputed`` fixture (tests/review/conftest.py), so the
    adjudication views have something to show."""

    screen = ""

    def pytest_generate_tests(self, metafunc) -> None:
        if "view" not in metafunc.fixturenames:
            return
        picked = getattr(metafunc.function, "applies_to", lambda view: True)
        views = [view for view in VIEWS if view.screen == self.screen and picked(view)]
        assert views, f"no view of screen {self.screen!r} for {metafunc.function.__name__}"
        metafunc.parametrize("view", views, ids=[view.name for view in views])

    def test_view_works(self, request, disputed, view):
        client = request.getfixturevalue(view.role)
        response = getattr(client, view.method)(view.url(disputed.pk), payload(view.name, disputed))
        assert response.status_code in (200, 302), response.content[:500]
        if response.status_code == 200:
            assert b"<html" in response.content

    def test_view_requires_login(self, disputed, view):
        response = getattr(Client(), view.method)(
            view.url(disputed.pk), payload(view.name, disputed)
        )
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))

    def test_view_rejects_wrong_method(self, request, disputed, view):
        client = request.getfixturevalue(view.role)
        wrong = client.post if view.method == "get" else client.get
        assert wrong(view.url(disputed.pk)).status_code == 405

    def test_view_htmx_request_gets_a_fragment(self, request, disputed, view):
        client = request.getfixturevalue(view.role)
        response = getattr(client, view.method)(
            view.url(disputed.pk), payload(view.name, disputed), **HTMX
        )
        assert response.status_code == 200, response.content[:500]
        assert b"<html" not in response.content
        assert b"<body" not in response.content
        assert response.content.strip() or response.has_header("HX-Redirect")

    @applies_to(is_page)
    def test_history_restore_gets_the_full_page_and_htmx_the_fragment(
        self, request, disputed, view
    ):
        # The back button with no cached copy: htmx swaps the response in for <body>, so a
        # fragment there would leave the page without its navigation and scripts.
        client = request.getfixturevalue(view.role)
        url = view.url(disputed.pk)
        restored = client.get(url, **HISTORY_RESTORE)
        assert restored.status_code == 200, restored.content[:500]
        assert b"<html" in restored.content and SITE_NAV in restored.content
        assert f'id="{view.region}"'.encode() in restored.content
        fragment = client.get(url, **HTMX)
        assert fragment.status_code == 200, fragment.content[:500]
        assert b"<html" not in fragment.content and SITE_NAV not in fragment.content
        assert f'id="{view.region}"'.encode() in fragment.content
        # One URL, two bodies: caches must key on the header that picks between them.
        for response in (restored, fragment, client.get(url)):
            assert "hx-request" in vary(response), response.get("Vary")

    @applies_to(is_page)
    def test_history_restore_page_is_the_page_as_a_plain_request_gets_it(
        self, request, disputed, view
    ):
        client = request.getfixturevalue(view.role)
        url = view.url(disputed.pk)
        restored = client.get(url, **HISTORY_RESTORE).content.decode()
        plain = client.get(url).content.decode()
        # One title, in the head; the region once.
        assert (restored.count("<title>"), plain.count("<title>")) == (1, 1)
        region = f'id="{view.region}"'
        assert (restored.count(region), plain.count(region)) == (1, 1)


class GuardedViewChecklist(ViewChecklist):
    """The checklist for views behind a role that may work on one transcript. (The queue is the
    home page: it sends users without the auditor role to the dashboard instead of a 403, see
    test_queue_view.)"""

    def test_view_requires_role(self, plain_client, disputed, view):
        response = getattr(plain_client, view.method)(
            view.url(disputed.pk), payload(view.name, disputed)
        )
        assert response.status_code == 403
        assert not Review.objects.filter(auditor__username="pat").exists()

    @applies_to(lambda view: view.needs_pk)
    def test_view_404_on_missing_transcript(self, request, disputed, view):
        client = request.getfixturevalue(view.role)
        url = reverse(view.name, args=[disputed.pk + 10_000])
        assert getattr(client, view.method)(url, payload(view.name, disputed)).status_code == 404
