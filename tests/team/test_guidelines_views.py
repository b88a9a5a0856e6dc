"""The guidelines pages (audit.team.guideline_views) and the guidelines on the review screens:
beside the selects, under "Why it is in the queue", in the help overlay, and the version a
verdict posts."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import GuidelineVersion, Review, Status, Transcript
from audit.review.workflow import set_required_reviews
from audit.team import guidelines
from tests.factories import confirm, fresh, import_records, make_misbehavior, make_record, relabel
from tests.review.pages import adjudication_data, verdict_data
from tests.team.test_guidelines import _elements

pytestmark = pytest.mark.django_db

HOSTILE_RUBRIC = """
## Misbehavior types

### `hallucination`

<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 1">
[a link](javascript:window.__pwned=1) <a href="javascript:window.__pwned=1">raw</a>
<div style="color:red" onmouseover="window.__pwned=1">styled</div> &lt;b&gt;entity&lt;/b&gt;
"""

PAGES = {
    "guidelines": lambda: reverse("guidelines"),
    "guideline_history": lambda: reverse("guideline_history"),
    "guideline_version": lambda: reverse("guideline_version", args=[1]),
    "guideline_diff": lambda: reverse("guideline_diff") + "?from=1&to=1",
    "guideline_edit": lambda: reverse("guideline_edit"),
}
READ_PAGES = [name for name in PAGES if name != "guideline_edit"]


def _save(text: str, user, *, note: str = "", accept_gaps: bool = True) -> GuidelineVersion:
    current = guidelines.current_version()
    return guidelines.save_version(
        text, by=user, note=note, based_on=current.number, accept_gaps=accept_gaps
    )


# --- permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PAGES))
def test_every_guidelines_page_needs_login(client: Client, name):
    response = client.get(PAGES[name]())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", list(PAGES))
def test_a_user_without_a_role_gets_403(plain_client, name):
    assert plain_client.get(PAGES[name]()).status_code == 403


@pytest.mark.parametrize("name", READ_PAGES)
@pytest.mark.parametrize("role", ["auditor_client", "adjudicator_client", "staff_client"])
def test_every_role_reads_the_guidelines(request, name, role):
    client = request.getfixturevalue(role)
    assert client.get(PAGES[name]()).status_code == 200


@pytest.mark.parametrize("name", READ_PAGES)
def test_reading_pages_refuse_post(staff_client, name):
    assert staff_client.post(PAGES[name]()).status_code == 405


def test_an_adjudicator_only_user_reads_the_guidelines(tmp_path):
    from django.contrib.auth.models import Group

    from tests.conftest import _client_for

    user = GuidelineVersion._meta.get_field("created_by").related_model.objects.create_user(
        username="adj_only"
    )
    user.groups.add(Group.objects.get_or_create(name="adjudicator")[0])
    assert _client_for(user).get(reverse("guidelines")).status_code == 200


@pytest.mark.parametrize("role", ["auditor_client", "adjudicator_client"])
def test_only_staff_edit(request, role):
    client = request.getfixturevalue(role)
    url = reverse("guideline_edit")
    assert client.get(url).status_code == 403
    text = guidelines.default_text() + "\nMore.\n"
    assert client.post(url, {"text": text, "based_on": 1}).status_code == 403
    assert GuidelineVersion.objects.count() <= 1


def test_the_editor_refuses_other_methods(staff_client):
    assert staff_client.put(reverse("guideline_edit")).status_code == 405
    assert staff_client.delete(reverse("guideline_edit")).status_code == 405


# --- the pages ---------------------------------------------------------------------------------


def test_the_guidelines_page_renders_the_current_version(auditor_client, staff_user):
    _save(guidelines.default_text() + "\nAdded in version two.\n", staff_user, note="v2 note")
    html = auditor_client.get(reverse("guidelines")).content.decode()
    assert 'Guidelines <span class="muted">v2</span>' in html
    assert "Added in version two." in html
    assert 'id="rubric-misbehavior_type-hallucination"' in html
    assert "v2 note" in html and "by sam" in html
    assert 'id="guideline-edit-link"' not in html  # auditors do not edit
    assert 'href="/guidelines/diff/?from=1&amp;to=2"' in html


def test_staff_see_the_edit_link(staff_client):
    assert 'id="guideline-edit-link"' in staff_client.get(reverse("guidelines")).content.decode()


def test_an_earlier_version_says_so(auditor_client, staff_user):
    _save(guidelines.default_text() + "\nLater.\n", staff_user)
    html = auditor_client.get(reverse("guideline_version", args=[1])).content.decode()
    assert "An earlier version" in html and "Later." not in html


def test_a_missing_version_is_404_naming_it(auditor_client):
    response = auditor_client.get(reverse("guideline_version", args=[9]))
    assert response.status_code == 404
    assert "There is no guidelines version 9: the versions are 1 to 1." in response.content.decode()
    huge = auditor_client.get("/guidelines/v/99999999999/")
    assert huge.status_code == 404


def test_the_history_lists_every_version_with_who_when_and_note(auditor_client, staff_user):
    _save(guidelines.default_text() + "\nTwo.\n", staff_user, note="clarified spot checks")
    html = auditor_client.get(reverse("guideline_history")).content.decode()
    rows = re.findall(r'<tr data-version="(\d+)">', html)
    assert rows == ["2", "1"]
    assert "clarified spot checks" in html and "sam" in html and "the app" in html


def test_the_diff_shows_escaped_changes_with_classes(auditor_client, staff_user):
    _save(guidelines.default_text() + "\n<script>window.__pwned=1</script>\n", staff_user)
    response = auditor_client.get(reverse("guideline_diff"))  # default: current vs previous
    html = response.content.decode()
    assert response.status_code == 200
    assert "v1 → v2" in html
    assert '<tr class="diff-added">' in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "<script>window" not in html
    assert "style=" not in html.split('id="guideline-diff"')[1]
    assert "1 line added, 0 removed" in html or "2 lines added, 0 removed" in html


def test_the_diff_refuses_bad_input_by_name(auditor_client):
    response = auditor_client.get(reverse("guideline_diff") + "?from=abc&to=1")
    assert response.status_code == 400
    assert "from: &#x27;abc&#x27; is not a version number" in response.content.decode()
    missing = auditor_client.get(reverse("guideline_diff") + "?from=1&to=5")
    assert missing.status_code == 404
    assert "no guidelines version 5" in missing.content.decode()


def test_the_diff_of_a_version_with_itself_says_the_text_is_the_same(auditor_client):
    html = auditor_client.get(reverse("guideline_diff") + "?from=1&to=1").content.decode()
    assert "The two versions have the same text." in html


def test_the_guidelines_page_runs_a_fixed_number_of_queries(
    auditor_client, staff_user, django_assert_num_queries
):
    auditor_client.get(reverse("guidelines"))  # creates version 1, warms the session
    # Session, user, the user's groups, the current version.
    with django_assert_num_queries(4):
        auditor_client.get(reverse("guidelines"))
    for n in range(3):
        _save(guidelines.default_text() + f"\nedit {n}\n", staff_user)
    with django_assert_num_queries(4):
        auditor_client.get(reverse("guidelines"))


# --- editing -----------------------------------------------------------------------------------


def test_the_editor_holds_the_current_text(staff_client):
    html = staff_client.get(reverse("guideline_edit")).content.decode()
    assert "### `hallucination`" in html
    assert 'name="based_on" value="1"' in html
    assert "Save as version 2" in html


def test_saving_an_edit_makes_a_new_version(staff_client, staff_user):
    text = guidelines.default_text().replace("Review guidelines", "Guidelines for auditors")
    response = staff_client.post(
        reverse("guideline_edit"),
        {"text": text, "note": "renamed", "based_on": 1, "action": "save"},
    )
    assert response.status_code == 302 and response["Location"] == reverse("guidelines")
    version = guidelines.current_version()
    assert (version.number, version.note, version.created_by) == (2, "renamed", staff_user)
    page = staff_client.get(reverse("guidelines")).content.decode()
    assert "Saved guidelines version 2." in page
    assert "Guidelines for auditors" in page


def test_saving_unchanged_text_says_nothing_changed(staff_client):
    text = guidelines.current_version().text
    response = staff_client.post(reverse("guideline_edit"), {"text": text, "based_on": 1})
    assert response.status_code == 422
    assert "Nothing changed: this is the text of version 1." in response.content.decode()
    assert GuidelineVersion.objects.count() == 1


def test_a_concurrent_edit_is_refused_and_the_text_kept(staff_client, adjudicator):
    guidelines.current_version()
    _save(guidelines.default_text() + "\nSomeone else's edit.\n", adjudicator, note="theirs")
    mine = guidelines.default_text() + "\nMy own edit.\n"
    response = staff_client.post(
        reverse("guideline_edit"), {"text": mine, "based_on": 1, "note": "mine"}
    )
    html = response.content.decode()
    assert response.status_code == 409
    assert "Version 2 was saved since you opened version 1" in html
    assert "Someone saved the guidelines while you were editing" in html
    assert "My own edit." in html  # kept in the editor
    assert "by carol" in html and "theirs" in html
    assert 'name="based_on" value="2"' in html  # saving again, having seen it, replaces v2
    assert guidelines.current_version().number == 2
    again = staff_client.post(reverse("guideline_edit"), {"text": mine, "based_on": 2})
    assert again.status_code == 302
    assert "My own edit." in guidelines.current_version().text


def test_gaps_are_refused_until_the_editor_accepts_them(staff_client):
    text = guidelines.default_text().replace("### `spot_check`", "### `spotcheck`")
    response = staff_client.post(reverse("guideline_edit"), {"text": text, "based_on": 1})
    html = response.content.decode()
    assert response.status_code == 422
    assert "flag spot_check: no definition" in html
    assert "flag spotcheck: not a known value" in html
    assert 'name="accept_gaps"' in html
    accepted = staff_client.post(
        reverse("guideline_edit"), {"text": text, "based_on": 1, "accept_gaps": "on"}
    )
    assert accepted.status_code == 302
    page = staff_client.get(reverse("guidelines")).content.decode()
    assert 'id="guideline-warnings"' in page and "flag spot_check: no definition" in page


def test_preview_renders_the_draft_sanitised_without_saving(staff_client):
    text = guidelines.default_text() + "\n**Bold draft** <script>window.__pwned=1</script>\n"
    response = staff_client.post(
        reverse("guideline_edit"), {"text": text, "based_on": 1, "action": "preview"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    preview = html.split('id="guideline-preview-out"')[1]
    assert "<strong>Bold draft</strong>" in preview
    assert "<script>window" not in html
    assert GuidelineVersion.objects.count() == 1


def test_an_edit_without_its_base_version_is_refused(staff_client):
    response = staff_client.post(
        reverse("guideline_edit"), {"text": guidelines.default_text() + "\nx\n"}
    )
    assert response.status_code == 422
    assert "does not say which version it was made from" in response.content.decode()


# --- on the review screens ---------------------------------------------------------------------


@pytest.fixture
def item(tmp_path):
    [t] = import_records(
        [make_misbehavior(mb_type="loop_exploitation", decision="APPROVE")], tmp_path
    )
    return t


def test_the_item_page_shows_the_chosen_values_definitions_beside_the_selects(auditor_client, item):
    html = auditor_client.get(reverse("item", args=[item.pk])).content.decode()
    chosen_type = html.split('id="rubric-chosen-misbehavior_type"')[1].split("</div>")[0]
    assert "Repeating an action already taken" in chosen_type  # loop_exploitation
    chosen_decision = html.split('id="rubric-chosen-correct_decision"')[1].split("</div>")[0]
    assert "Stop the action and tell the worker why" in chosen_decision  # BLOCK
    assert 'data-rubric-for="id_misbehavior_type"' in html
    assert 'data-rubric-for="id_correct_decision"' in html
    # Every value's definition is in the folded list, for pages without JS.
    assert html.count('class="rubric-entry"') == 8 + 5
    assert '<details class="rubric-all">' in html
    assert 'name="guideline_version" value="1"' in html


def test_the_item_page_says_what_to_check_for_each_flag(auditor_client, item):
    html = auditor_client.get(reverse("item", args=[item.pk])).content.decode()
    problems = html.split('id="problems"')[1].split("</section>")[0]
    flags = re.findall(r'data-rubric-flag="([a-z_]+)"', problems)
    assert flags == fresh(item).flags
    assert "missed_misbehavior" in flags
    assert "the overseer\n  missed it" in problems or "overseer missed it" in problems.replace(
        "\n", " "
    )


def test_the_help_overlay_links_to_the_guidelines_and_names_the_version(
    auditor_client, item, staff_user
):
    _save(guidelines.default_text() + "\nv2\n", staff_user)
    html = auditor_client.get(reverse("item", args=[item.pk])).content.decode()
    overlay = html.split('id="help-overlay"')[1]
    assert "Guidelines v2 define every misbehavior type" in overlay
    assert f'href="{reverse("guidelines")}"' in overlay


def test_the_page_shows_a_missing_definition_as_missing(auditor_client, item, staff_user):
    _save(guidelines.default_text().replace("### `loop_exploitation`", "### `looping`"), staff_user)
    html = auditor_client.get(reverse("item", args=[item.pk])).content.decode()
    chosen = html.split('id="rubric-chosen-misbehavior_type"')[1].split("</div>")[0]
    assert "No definition of loop_exploitation in guidelines v2." in chosen


def test_a_hostile_rubric_renders_inert_on_the_item_page_and_keeps_the_csp(
    auditor_client, item, staff_user
):
    before = auditor_client.get(reverse("item", args=[item.pk]))
    text = guidelines.default_text().replace("### `hallucination`", "### `old-hallucination`")
    _save(text + HOSTILE_RUBRIC, staff_user)
    after = auditor_client.get(reverse("item", args=[item.pk]))
    html = after.content.decode()
    assert "__pwned" in html and "&lt;img src=x" in html  # the text is there, as text
    for tag, attrs in _elements(html):
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
        assert not (attrs.get("href") or "").lower().startswith("javascript"), (tag, attrs)
        if tag == "script":  # only the app's own files, with the page's nonce
            assert attrs.get("src") and attrs.get("nonce"), attrs
    assert html.count("<script") == 2  # htmx and review.js
    nonce = re.compile(r"'nonce-[^']+'")
    assert nonce.sub("", after["Content-Security-Policy"]) == nonce.sub(
        "", before["Content-Security-Policy"]
    )
    assert "'unsafe-inline'" not in after["Content-Security-Policy"]


def test_a_verdict_records_the_version_the_page_showed(auditor_client, item, staff_user):
    auditor_client.get(reverse("item", args=[item.pk]))  # the page shows version 1
    _save(guidelines.default_text() + "\nv2\n", staff_user)  # saved while the auditor looks
    t = fresh(item)
    data = verdict_data(t, "confirm", guideline_version="1")
    assert auditor_client.post(reverse("submit_review", args=[t.pk]), data).status_code == 302
    assert Review.objects.get().guideline_version_id == 1


def test_a_verdict_without_a_version_records_the_current_one(auditor_client, item, staff_user):
    _save(guidelines.default_text() + "\nv2\n", staff_user)
    t = fresh(item)
    response = auditor_client.post(
        reverse("submit_review", args=[t.pk]), verdict_data(t, "confirm")
    )
    assert response.status_code == 302
    assert Review.objects.get().guideline_version_id == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "names no valid guidelines version"),
        ("0", "names no valid guidelines version"),
        ("7", "Guidelines version 7 does not exist"),
    ],
)
def test_a_verdict_naming_a_bad_version_is_refused_in_words(auditor_client, item, value, message):
    t = fresh(item)
    data = verdict_data(t, "confirm", guideline_version=value)
    response = auditor_client.post(reverse("submit_review", args=[t.pk]), data)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Review.objects.exists()


@pytest.fixture
def disputed(tmp_path, auditor, auditor2):
    [t] = import_records([make_record()], tmp_path, name="disputed.jsonl")
    set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    confirm(t, auditor)
    relabel(t, auditor2)
    t = fresh(t)
    assert t.status == Status.DISPUTED
    return t


def test_the_adjudication_page_shows_the_guidelines_and_records_them(
    adjudicator_client, disputed, staff_user
):
    html = adjudicator_client.get(reverse("adjudicate_item", args=[disputed.pk])).content.decode()
    assert 'id="rubric-chosen-correct_decision"' in html
    assert "Let the action run as proposed" in html.split('id="rubric-chosen-correct_decision"')[1]
    assert 'name="guideline_version" value="1"' in html
    assert 'id="help-guidelines"' in html
    _save(guidelines.default_text() + "\nv2\n", staff_user)
    data = adjudication_data(disputed, guideline_version="2")
    response = adjudicator_client.post(reverse("submit_adjudication", args=[disputed.pk]), data)
    assert response.status_code == 302
    assert Review.objects.adjudications().get().guideline_version_id == 2


def test_the_admin_lists_versions_read_only(staff_client, staff_user):
    _save(guidelines.default_text() + "\nv2\n", staff_user, note="admin note")
    listing = staff_client.get(reverse("admin:audit_guidelineversion_changelist"))
    assert listing.status_code == 200 and "admin note" in listing.content.decode()
    detail = staff_client.get(reverse("admin:audit_guidelineversion_change", args=[2]))
    assert detail.status_code == 200 and "### `hallucination`" in detail.content.decode()
    assert staff_client.get(reverse("admin:audit_guidelineversion_add")).status_code == 403
    assert (
        staff_client.post(reverse("admin:audit_guidelineversion_delete", args=[2])).status_code
        == 403
    )
    assert GuidelineVersion.objects.count() == 2
