"""No input gives a 5xx (issue 15, D8): every URL of audit/urls.py and the admin changelist of
every audit model, fuzzed with hypothesis, as staff, auditor and adjudicator.

Query strings are random pairs of the parameters the screens read (and other keys), repeated
keys included, with values that are random text (NUL and any unicode), numbers far outside
every column's range, dates at the calendar's edges, and valid values, so the fuzz reaches the
code behind the validation too. The verdict, adjudication, next and skip forms are fuzzed on
their POST bodies the same way. A 4xx is fine; a 5xx, or an exception escaping a view, fails.

Bounded for the everyday suite: ``EXAMPLES`` examples per URL, each as a role drawn from the
three, and no deadline; ``AUDIT_FUZZ_EXAMPLES=500`` runs a deeper search by hand. Every request
runs in a savepoint that is rolled back, so one example's writes (a verdict, a lease) leave the
next one the same data, and a database error cannot poison the test's transaction on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from django.contrib import admin
from django.contrib.admin import SimpleListFilter
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit import urls
from audit.ingest.importer import import_file
from audit.metrics.forms import DashboardFilterForm
from audit.models import Flag, ImportJob, Release, Status, Transcript, Verdict
from audit.review.forms import QueueFilterForm, opened_token
from audit.review.queue import SORT_CHOICES
from audit.review.workflow import set_required_reviews
from audit.team import discussion, guidelines
from tests.factories import confirm, make_misbehavior, make_record, relabel

EXAMPLES = int(os.environ.get("AUDIT_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ROLES = ("staff", "auditor", "adjudicator")
HTMX = {"HTTP_HX_REQUEST": "true"}

# --- what to send --------------------------------------------------------------------------------

EDGE_NUMBERS = [
    "0",
    "-1",
    "1",
    str(2**31 - 1),
    str(2**31),
    str(2**63 - 1),
    str(2**63),
    "9" * 20,
    "9" * 5000,  # past CPython's int-string limit
    "1e400",
    "-1e400",
    "NaN",
    "inf",
    "1.5",
    " 7 ",
    "٣",  # a digit, to str.isdigit(), that int() reads
    "²",  # a digit, to str.isdigit(), that int() refuses
]
EDGE_DATES = [
    "9999-12-31",
    "0001-01-01",
    "10000-01-01",
    "2026-02-30",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31 23:59:59.999999",
    "2026-13-01",
]
EDGE_TEXT = ["\x00", "a\x00b", "%00", "\u202e", "\ufeff", "🦜" * 50, "x" * 201, "x" * 5001, ""]
RAW_QUERIES = ["%ZZ", "&&==&", "a=%ff%fe", "=x", "q[]=1", "%ED%A0%80=1", "page"]

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
numbers = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
dates = st.one_of(st.sampled_from(EDGE_DATES), st.dates().map(dt.date.isoformat))
VALID = [
    *Status.values,
    *Flag.values,
    *Verdict.values,
    *(value for value, _label in SORT_CHOICES),
    "queue",
    "all",
    "adjudicated",
    "disputed",
    "zip",
    "tar.gz",
    "yes",
    "no",
    "BLOCK",
    "APPROVE",
    "basic_oversight",
    "session_fuzz",
    "hallucination",
    "aligned_approve",
    "1",
    "2",
    "True",
    "False",
    "/admin/",
]


def values(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(known or VALID),
        st.sampled_from(VALID),
        st.sampled_from(EDGE_TEXT),
        numbers,
        dates,
        text,
    )


def _admin_parameters(model_admin: admin.ModelAdmin) -> set[str]:
    """The changelist parameters of ``model_admin`` (its list filters, the display ones) and
    lookups Django's admin takes on any local field."""
    names = {"q", "o", "p", "e", "all", "_facets", "_to_field", "_popup"}
    for spec in model_admin.list_filter:
        if isinstance(spec, type) and issubclass(spec, SimpleListFilter):
            names.add(spec.parameter_name)
            continue
        if isinstance(spec, tuple):
            spec = spec[0]
        field = model_admin.model._meta.get_field(spec)
        names |= {f"{spec}__exact", f"{spec}__isnull", f"{spec}__gte", f"{spec}__lt"}
        if field.is_relation:
            names |= {f"{spec}__id__exact", f"{spec}__id__in", f"{spec}__pk"}
    for field in model_admin.model._meta.concrete_fields:
        names |= {f"{field.name}__in", f"{field.name}__gt", field.attname}
    return names


ADMIN_MODELS = sorted(
    (model for model in admin.site._registry if model._meta.app_label == "audit"),
    key=lambda model: model._meta.model_name,
)
# The parameters each screen reads; the fuzz sends them most, and any others now and then.
OWN_KEYS = {
    "queue": sorted(QueueFilterForm.base_fields),
    "dashboard": sorted(DashboardFilterForm.base_fields),
    "auditors": sorted(DashboardFilterForm.base_fields),
    "dashboard_monitors": sorted(DashboardFilterForm.base_fields),
    "batch_list": ["page"],
    "batch_detail": ["page"],
    "adjudication_queue": ["page", "show"],
    "release_download": ["format"],
    "item_field": ["q"],
    "login": ["next"],
    "assignments": ["page"],
    "my_work": ["page"],
    "saved_views_menu": ["screen"],
    "guideline_diff": ["from", "to"],
    "discussion": ["screen"],
    **{
        f"admin:{model._meta.model_name}": sorted(_admin_parameters(admin.site._registry[model]))
        for model in ADMIN_MODELS
    },
}
KEYS = sorted(set().union(*OWN_KEYS.values()))
# Inputs that gave a 500 in the reliability review (D8) and their kin: every fuzzed URL gets
# them first, as staff (who holds every role), before the random ones. A screen's form checks
# each field on its own, so one query holds several; an admin list refuses the first bad one,
# so each gets its own.
PAGE_SEEDS = [
    "date_from=0001-01-01&date_to=9999-12-31&batch=99999999999999999999"
    "&page=99999999999999999999&q=%00&session=%00&format=%00&show=%00",
    "date_from=9999-12-31&date_to=9999-12-31&batch=9223372036854775808&page=-1",
]
ADMIN_SEEDS = [
    "status__exact=%00",
    "id__in=99999999999999999999",
    "created_at__gte=0001-01-01T00:00:00%2B14:00",
    "batch__id__exact=99999999999999999999&required_reviews=99999999999999999999"
    "&p=99999999999999999999",
]


@st.composite
def query_strings(draw: st.DrawFn, own: list[str] | None = None) -> str:
    pairs = [(key, draw(values([]))) for key in own or [] if draw(st.booleans())]
    others = st.one_of(st.sampled_from(KEYS), text.filter(bool))
    pairs += draw(st.lists(st.tuples(others, values([])), max_size=3))
    pairs = draw(st.permutations(pairs))
    # A key drawn twice is a repeated key; sometimes one key many times over.
    if pairs and draw(st.booleans()):
        key, value = pairs[0]
        pairs += [(key, draw(values([])))] * draw(st.integers(1, 30))
    query = urlencode(pairs)
    if draw(st.booleans()):
        query = "&".join(filter(None, (query, draw(st.sampled_from(RAW_QUERIES)))))
    return query


def seeded(seeds: list[str], **fixed):
    def apply(check):
        for query in seeds:
            check = example(role="staff", query=query, **fixed)(check)
        return check

    return apply


# --- the data the URLs name ----------------------------------------------------------------------


@dataclass
class World:
    item: Transcript
    disputed: Transcript
    batch_id: int
    job_id: int
    release: Release


@pytest.fixture
def world(tmp_path, staff_user, auditor, adjudicator, auditor2) -> World:
    records = [
        make_misbehavior(decision="APPROVE", session_id="session_fuzz", step_number=n)
        for n in range(1, 5)
    ] + [make_record(session_id="session_fuzz", step_number=5)]
    path = tmp_path / "records.jsonl"
    lines = [json.dumps(record) for record in records] + ["not json"]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    result = import_file(path, skip_invalid=True)
    rows = list(Transcript.objects.filter(batch_id=result.batch_id).order_by("line_number"))
    disputed = rows[1]
    set_required_reviews(Transcript.objects.filter(pk=disputed.pk), 2)
    confirm(disputed, auditor)
    relabel(disputed, auditor2, is_misbehavior=False, correct_decision="APPROVE", rationale="no")
    confirm(rows[2], adjudicator)
    job = ImportJob.objects.create(
        created_by=staff_user,
        file_name="records.jsonl",
        upload_path=str(path),
        state=ImportJob.State.DONE,
        batch_id=result.batch_id,
    )
    root = tmp_path / "releases" / "1.0.0"
    root.mkdir(parents=True)
    (root / "README.md").write_text("release\n", encoding="utf-8")
    release = Release.objects.create(version="1.0.0", created_by=staff_user, path=str(root))
    return World(
        item=rows[0],
        disputed=Transcript.objects.get(pk=disputed.pk),
        batch_id=result.batch_id,
        job_id=job.pk,
        release=release,
    )


# Each route's arguments, from the data above. A new route must be added here (the test below
# checks), so the fuzz always covers every URL.
ARGS = {
    "login": lambda w: [],
    "logout": lambda w: [],
    "batch_list": lambda w: [],
    "upload": lambda w: [],
    "import_job": lambda w: [w.job_id],
    "batch_detail": lambda w: [w.batch_id],
    "rejected_download": lambda w: [w.batch_id],
    "queue": lambda w: [],
    "next_item": lambda w: [],
    "item": lambda w: [w.item.pk],
    "raw_record": lambda w: [w.item.pk],
    "item_field": lambda w: [w.item.pk, "thinking_text"],
    "skip_item": lambda w: [w.item.pk],
    "submit_review": lambda w: [w.item.pk],
    "adjudication_queue": lambda w: [],
    "adjudicate_item": lambda w: [w.disputed.pk],
    "submit_adjudication": lambda w: [w.disputed.pk],
    "dashboard": lambda w: [],
    "auditors": lambda w: [],
    "dashboard_monitors": lambda w: [],
    "release_download": lambda w: [w.release.version],
    "assignments": lambda w: [],
    "assignment_detail": lambda w: [_an_assignment(w)],
    "my_work": lambda w: [],
    "saved_views": lambda w: [],
    "saved_views_menu": lambda w: [],
    "delete_saved_view": lambda w: [_a_saved_view()],
    "queue_bulk": lambda w: [],
    # Discussion
    "discussion": lambda w: [w.item.pk],
    "discussion_mark": lambda w: [w.item.pk],
    "add_comment": lambda w: [w.item.pk],
    "edit_comment": lambda w: [_a_comment(w)],
    # Guidelines
    "guidelines": lambda w: [],
    "guideline_history": lambda w: [],
    "guideline_version": lambda w: [guidelines.current_version().number],
    "guideline_diff": lambda w: [],
    "guideline_edit": lambda w: [],
}


def _a_comment(w: World) -> int:
    """A comment of sam's (staff: every role) on the world's item, edited once."""
    from django.contrib.auth.models import User

    sam = User.objects.get(username="sam")
    comment = discussion.add_comment(w.item, author=sam, text="first <b>text</b>")
    discussion.edit_comment(comment, author=sam, text="second text", based_on=1)
    return comment.pk


def _a_saved_view() -> int:
    """A shared queue view of sam's (made when a test first asks)."""
    from django.contrib.auth.models import User

    from audit.models import SavedView

    sam = User.objects.get(username="sam")
    return SavedView.objects.create(owner=sam, screen="queue", name="fuzz", shared=True).pk


def _an_assignment(w: World) -> int:
    """An assignment of the world's item to alice (made when a test first asks)."""
    from django.contrib.auth.models import User

    from audit.team.assignments import assign

    alice = User.objects.get(username="alice")
    items = Transcript.objects.filter(pk=w.item.pk)
    return assign(items, auditors=[alice], k=1, by=None, name="fuzz").assignment.pk


def _route_names() -> set[str]:
    return {p.name for p in urls.urlpatterns if isinstance(p, URLPattern) and p.name}


@pytest.fixture
def clients(staff_user, auditor, adjudicator) -> dict[str, Client]:
    out = {}
    for role, user in zip(ROLES, (staff_user, auditor, adjudicator), strict=True):
        out[role] = Client()
        out[role].force_login(user)
    return out


def send(client: Client, method: str, url: str, **kwargs) -> int:
    """One request in a savepoint that is rolled back; its status, which must not be a 5xx.
    An exception a view lets escape fails the test through the test client."""
    with transaction.atomic():
        response = getattr(client, method)(url, **kwargs)
        if response.streaming:
            b"".join(response.streaming_content)
        transaction.set_rollback(True)
    assert response.status_code < 500, (method, url, kwargs, response.status_code)
    return response.status_code


def test_every_route_is_fuzzed():
    assert _route_names() == set(ARGS)


roles = st.sampled_from(ROLES)


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ARGS))
def test_no_query_string_gives_a_server_error(world, clients, name):
    url = reverse(name, args=ARGS[name](world))

    @FUZZ
    @seeded(PAGE_SEEDS, htmx=False)
    @given(role=roles, query=query_strings(OWN_KEYS.get(name)), htmx=st.booleans())
    def check(role: str, query: str, htmx: bool) -> None:
        send(clients[role], "get", f"{url}?{query}", **(HTMX if htmx else {}))

    check()


@pytest.mark.django_db
@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda model: model._meta.model_name)
def test_no_admin_changelist_filter_gives_a_server_error(world, clients, model):
    url = reverse(f"admin:audit_{model._meta.model_name}_changelist")

    @FUZZ
    @seeded(ADMIN_SEEDS)
    @given(role=roles, query=query_strings(OWN_KEYS[f"admin:{model._meta.model_name}"]))
    def check(role: str, query: str) -> None:
        send(clients[role], "get", f"{url}?{query}")

    check()


def _verdict_fields(transcript: Transcript) -> dict[str, st.SearchStrategy[str]]:
    opened = opened_token(transcript, status=transcript.status)
    return {
        "verdict": values([*Verdict.values, "adjudicate"]),
        "is_misbehavior": values(["yes", "no", ""]),
        "misbehavior_type": values(["hallucination", "reward_hacking", ""]),
        "correct_decision": values(["BLOCK", "APPROVE", ""]),
        "rationale": values(["why", " ", "x" * 5001]),
        "based_on_version": values([str(transcript.version), ""]),
        "opened": values([opened, "forged"]),
        "seconds_client": values(["12"]),
        "filters": query_strings(),
    }


@st.composite
def bodies(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[str]]) -> list[tuple[str, str]]:
    """A form body: each field left out, sent once, or sent several times."""
    pairs = []
    for name, strategy in fields.items():
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
            pairs.append((name, draw(strategy)))
    return pairs


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name", ["submit_review", "submit_adjudication", "next_item", "skip_item", "login"]
)
def test_no_form_body_gives_a_server_error(world, clients, name):
    transcript = world.disputed if name == "submit_adjudication" else world.item
    url = reverse(name, args=ARGS[name](world))
    fields = _verdict_fields(transcript)
    if name == "login":
        fields = {"username": values(["sam", "alice", ""]), "password": values([]), "next": text}

    @FUZZ
    @given(role=roles, body=bodies(fields), htmx=st.booleans())
    def check(role: str, body: list[tuple[str, str]], htmx: bool) -> None:
        send(
            clients[role],
            "post",
            url,
            data=urlencode(body),
            content_type="application/x-www-form-urlencoded",
            **(HTMX if htmx else {}),
        )

    check()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name", ["add_comment", "edit_comment", "discussion_mark", "guideline_edit"]
)
def test_no_discussion_or_guideline_form_gives_a_server_error(world, clients, name):
    url = reverse(name, args=ARGS[name](world))
    fields = {
        "text": values(["a comment", " ", "x" * 5001, "## Decisions\n\n### `BLOCK`\n\nStop."]),
        "based_on": values(["1", "2", "0", "-1", "99999999999999999999999", ""]),
        "on": values(["1", "0", "2", ""]),
        "note": values(["why", "x" * 1000]),
        "accept_gaps": values(["on", ""]),
        "action": values(["preview", "save", ""]),
        "screen": values(["item", "adjudication", "page", "nonsense"]),
    }

    @FUZZ
    @given(role=roles, body=bodies(fields), htmx=st.booleans())
    def check(role: str, body: list[tuple[str, str]], htmx: bool) -> None:
        send(
            clients[role],
            "post",
            url,
            data=urlencode(body),
            content_type="application/x-www-form-urlencoded",
            **(HTMX if htmx else {}),
        )

    check()


@pytest.mark.django_db
def test_no_admin_action_post_gives_a_server_error(world, clients, settings, tmp_path):
    settings.RELEASES_ROOT = tmp_path / "fuzzed-releases"
    url = reverse("admin:audit_transcript_changelist")
    model_admin = admin.site._registry[Transcript]
    ids = [str(world.item.pk), str(world.disputed.pk)]
    fields = {
        "action": values([*model_admin.actions, "delete_selected"]),
        "_selected_action": values(ids),
        "index": values(["0"]),
        "select_across": values(["0", "1"]),
        "apply": values(["1"]),
        "k": values(["2"]),
        "version": values(["2.0.0", "1.0.0"]),
        "include_unreviewed": values(["on"]),
    }

    @FUZZ
    @example(role="staff", query="", body=[("action", "export_summary"), ("index", "0")])
    @example(
        role="staff",
        query="",
        body=[("action", "require_reviews"), ("_selected_action", "abc"), ("index", "0")],
    )
    @example(
        role="staff",
        query="task_id=basic_oversight",
        body=[("action", "export_all_jsonl"), ("_selected_action", "9" * 20), ("index", "0")],
    )
    @given(
        role=roles,
        # Mostly no filter: a bad one sends the changelist away before any action runs.
        query=st.one_of(st.just(""), st.just(""), query_strings(OWN_KEYS["admin:transcript"])),
        body=bodies(fields),
    )
    def check(role: str, query: str, body: list[tuple[str, str]]) -> None:
        send(
            clients[role],
            "post",
            f"{url}?{query}",
            data=urlencode(body),
            content_type="application/x-www-form-urlencoded",
        )

    check()


# --- the cases the review found (D8), each on its own so a regression names itself --------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/dashboard/?date_to=9999-12-31",
        "/dashboard/auditors/?date_to=9999-12-31",
        "/dashboard/?date_from=9999-12-31&date_to=9999-12-31",
        "/?batch=99999999999999999999",
        "/?batch=9223372036854775808",
        "/releases/%00/download/",
        "/admin/audit/transcript/?status__exact=%00",
        "/admin/audit/transcript/?q=%00",
        "/admin/audit/transcript/?id__in=99999999999999999999",
        "/t/99999999999999999999/",
        "/imports/99999999999999999999/",
        "/adjudicate/9223372036854775808/",
    ],
)
def test_the_reported_inputs_give_no_server_error(world, clients, url):
    for client in clients.values():
        send(client, "get", url)


@pytest.mark.django_db
def test_ids_outside_the_shared_range_are_not_found(world, clients):
    for pk in (0, 2**63, 10**20):
        assert send(clients["staff"], "get", f"/t/{pk}/") == 404
    assert send(clients["staff"], "get", f"/t/{world.item.pk}/") == 200


@pytest.mark.django_db
def test_a_release_url_that_is_no_version_is_not_found(world, clients):
    for version in ("%00", "1.0.0%0A", "1.0", "..", "1.0.0.0"):
        assert send(clients["staff"], "get", f"/releases/{version}/download/") == 404
    assert send(clients["staff"], "get", "/releases/1.0.0/download/") == 200


@pytest.mark.django_db
def test_an_admin_lookup_the_changelist_does_not_offer_is_refused(world, clients):
    url = reverse("admin:audit_transcript_changelist")
    # Django's admin takes any lookup on a local field unless told otherwise: the final labels
    # of unsettled items (blind review) and ids past SQLite's range are among them.
    for query in ("final_alignment_category__exact=aligned_catch", "id__in=99999999999999999999"):
        assert send(clients["staff"], "get", f"{url}?{query}") == 400
    assert send(clients["staff"], "get", f"{url}?status__exact=unreviewed") == 200
    assert send(clients["staff"], "get", f"{url}?status__exact=%00") == 400


@pytest.mark.django_db
@pytest.mark.parametrize("chosen", ["abc", "1.5", "\x00", "9" * 20, str(2**63), "0"])
def test_an_admin_action_on_a_selection_that_is_not_ids_is_refused(world, clients, chosen):
    data = {"action": "export_all_jsonl", "_selected_action": [chosen], "index": "0"}
    url = reverse("admin:audit_transcript_changelist")
    assert send(clients["staff"], "post", url, data=data) == 400


@pytest.mark.django_db
def test_an_admin_search_over_the_limit_is_reported_and_left_out(world, clients):
    url = reverse("admin:audit_review_changelist")
    response = clients["staff"].get(url, {"q": "x" * 201, "verdict__exact": "confirm"})
    assert response.status_code == 302
    assert response["Location"] == f"{url}?verdict__exact=confirm"
    page = clients["staff"].get(response["Location"]).content.decode()
    assert "Search: at most 200 characters (this has 201), so it was not applied." in page
    assert clients["staff"].get(url, {"q": "x" * 200}).status_code == 200
