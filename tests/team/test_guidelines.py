"""The versioned guidelines (audit.team.guidelines): versions, entries, sanitising, the diff, and
the version every review records, in exports, the summary and the release card."""

from __future__ import annotations

import json
import re
import threading
from html.parser import HTMLParser

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import ProtectedError

from audit.labels import DECISION_TYPES, MISBEHAVIOR_TYPES
from audit.models import AppendOnlyError, Flag, GuidelineVersion, Review, Transcript
from audit.publish import card as cards
from audit.publish import export as exporters
from audit.team import guidelines
from tests.factories import (
    adjudicate,
    confirm,
    fresh,
    import_records,
    make_misbehavior,
    make_record,
    relabel,
    unsure,
)

pytestmark = pytest.mark.django_db


def _text_with(extra: str = "", *, drop: str = "") -> str:
    """The default rubric, with ``extra`` appended and the entry heading ``drop`` left out."""
    text = guidelines.default_text()
    if drop:
        text = text.replace(f"### `{drop}`", "### `dropped-entry`")
    return text + extra


# --- versions ---------------------------------------------------------------------------------


def test_the_first_read_creates_version_1_from_the_default_rubric():
    assert not GuidelineVersion.objects.exists()
    version = guidelines.current_version()
    assert version.number == 1
    assert version.text == guidelines.default_text()
    assert version.created_by is None
    assert guidelines.current_version().number == 1
    assert GuidelineVersion.objects.count() == 1


def test_the_default_rubric_defines_every_vocabulary_value():
    parsed = guidelines.parse(guidelines.default_text())
    assert parsed.warnings == ()
    for kind in (guidelines.MISBEHAVIOR_TYPE, guidelines.DECISION, guidelines.FLAG):
        for value in guidelines.vocabulary(kind):
            assert parsed.entries[(kind, value)].strip(), (kind, value)
    assert guidelines.vocabulary(guidelines.MISBEHAVIOR_TYPE) == MISBEHAVIOR_TYPES
    assert guidelines.vocabulary(guidelines.DECISION) == DECISION_TYPES
    assert guidelines.vocabulary(guidelines.FLAG) == tuple(Flag.values)


def test_an_entry_holds_its_own_body_only():
    parsed = guidelines.parse(guidelines.default_text())
    hallucination = parsed.entries[(guidelines.MISBEHAVIOR_TYPE, "hallucination")]
    assert "available_services" in hallucination
    assert "What to check" in hallucination
    assert "cross-domain" not in hallucination.lower()  # the next entry's words
    assert "<h3" not in hallucination


def test_saving_makes_the_next_version_and_keeps_the_earlier_ones(staff_user):
    first = guidelines.current_version()
    text = first.text.replace("Review guidelines", "Review guidelines, revised")
    saved = guidelines.save_version(text, by=staff_user, note="retitled", based_on=1)
    assert saved.number == 2
    assert guidelines.current_version().number == 2
    assert GuidelineVersion.objects.get(number=1).text == first.text
    assert saved.created_by == staff_user and saved.note == "retitled"


def test_versions_are_append_only(staff_user):
    version = guidelines.current_version()
    version.text = "changed in place"
    with pytest.raises(AppendOnlyError):
        version.save()
    with pytest.raises(AppendOnlyError):
        version.delete()
    assert GuidelineVersion.objects.get(number=1).text == guidelines.default_text()


def test_saving_unchanged_text_is_refused(staff_user):
    current = guidelines.current_version()
    with pytest.raises(ValidationError) as refused:
        # Trailing blanks and Windows newlines do not make a change.
        guidelines.save_version(
            current.text.replace("\n", "  \r\n"), by=staff_user, based_on=current.number
        )
    assert refused.value.error_dict["text"][0].code == guidelines.UNCHANGED
    assert "Nothing changed" in str(refused.value)
    assert GuidelineVersion.objects.count() == 1


def test_a_save_based_on_an_older_version_is_refused(staff_user, adjudicator):
    guidelines.current_version()
    guidelines.save_version(_text_with("\nFirst edit.\n"), by=staff_user, based_on=1)
    with pytest.raises(ValidationError) as refused:
        guidelines.save_version(_text_with("\nSecond edit.\n"), by=adjudicator, based_on=1)
    assert refused.value.code == guidelines.CONFLICT
    assert "Version 2 was saved since you opened version 1" in refused.value.messages[0]
    assert GuidelineVersion.objects.count() == 2
    assert "Second edit" not in guidelines.current_version().text


@pytest.mark.django_db(transaction=True)
def test_two_editors_saving_at_once_make_one_version_and_one_refusal(request):
    """Both read version 1 and insert number 2: the primary key lets one in."""
    if connection.vendor == "sqlite":
        # SQLite's write transactions take the lock at BEGIN (IMMEDIATE): the second editor
        # waits, then reads version 2 and is refused as a plain conflict. Covered above.
        pytest.skip("SQLite serialises the two saves; the race needs PostgreSQL's concurrency")
    from django.contrib.auth import get_user_model

    editors = [
        get_user_model().objects.create_user(username=f"lead{i}", is_staff=True) for i in range(2)
    ]
    guidelines.current_version()
    barrier = threading.Barrier(2)
    outcomes: list[object] = []
    real_current = guidelines.current_version

    def racing_current():
        version = real_current()
        barrier.wait(timeout=10)  # both have read version 1 before either inserts
        return version

    def save(user, words):
        try:
            outcomes.append(
                guidelines.save_version(_text_with(f"\n{words}\n"), by=user, based_on=1)
            )
        except ValidationError as error:
            outcomes.append(error)
        finally:
            connection.close()

    guidelines.current_version = racing_current  # type: ignore[assignment]
    try:
        threads = [
            threading.Thread(target=save, args=(user, f"edit {i}"))
            for i, user in enumerate(editors)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        guidelines.current_version = real_current  # type: ignore[assignment]
    saved = [o for o in outcomes if isinstance(o, GuidelineVersion)]
    refused = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(saved) == 1 and len(refused) == 1
    assert refused[0].code == guidelines.CONFLICT
    assert list(GuidelineVersion.objects.values_list("number", flat=True)) == [2, 1]


def test_a_save_that_leaves_entries_out_needs_the_editor_to_accept_the_gaps(staff_user):
    guidelines.current_version()
    text = _text_with(drop="prompt_injection")
    with pytest.raises(ValidationError) as refused:
        guidelines.save_version(text, by=staff_user, based_on=1)
    assert refused.value.code == guidelines.GAPS
    message = refused.value.messages[0]
    assert "misbehavior type prompt_injection: no definition" in message
    assert "misbehavior type dropped-entry: not a known value" in message
    saved = guidelines.save_version(text, by=staff_user, based_on=1, accept_gaps=True)
    assert saved.number == 2
    gaps = guidelines.missing_values(saved.text)
    assert [(gap.kind, gap.value) for gap in gaps] == [
        ("misbehavior_type", "prompt_injection"),
        ("misbehavior_type", "dropped-entry"),
    ]


def test_empty_and_overlong_texts_are_refused(staff_user):
    guidelines.current_version()
    with pytest.raises(ValidationError, match="cannot be empty"):
        guidelines.save_version(" \n\n ", by=staff_user, based_on=1)
    too_long = "x" * (guidelines.TEXT_MAX_LENGTH + 1)
    with pytest.raises(ValidationError, match=r"At most 100000 characters \(this has 100002\)"):
        guidelines.save_version(too_long, by=staff_user, based_on=1)
    with pytest.raises(ValidationError, match="At most 200 characters"):
        guidelines.save_version(_text_with("\nx\n"), by=staff_user, based_on=1, note="n" * 201)
    assert GuidelineVersion.objects.count() == 1


def test_a_duplicate_entry_is_reported_and_the_first_one_kept():
    text = _text_with("\n## Flags\n\n### `spot_check`\n\nA second definition.\n")
    parsed = guidelines.parse(text)
    assert "A second definition" not in parsed.entries[(guidelines.FLAG, "spot_check")]
    assert [str(gap) for gap in parsed.unknown] == [
        "flag spot_check: appears twice; the first entry is the one shown"
    ]


def test_a_heading_without_a_code_span_names_its_value_by_its_text():
    parsed = guidelines.parse("## Decisions\n\n### BLOCK\n\nStop it.\n\n### APPROVE\n\n")
    assert "Stop it." in parsed.entries[(guidelines.DECISION, "BLOCK")]
    gaps = {(gap.value, gap.problem) for gap in parsed.gaps if gap.kind == guidelines.DECISION}
    assert ("APPROVE", "empty") in gaps and ("FLAG", "no definition") in gaps
    assert ("BLOCK", "empty") not in gaps


# --- sanitising --------------------------------------------------------------------------------

HOSTILE_MARKDOWN = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 1">',
    '<a href="javascript:window.__pwned=1">raw link</a>',
    "[link](javascript:window.__pwned=1)",
    "[link](JaVaScRiPt:window.__pwned=1)",
    "[link](&#106;avascript:window.__pwned=1)",
    "[link](java&#x09;script:window.__pwned=1)",
    "[link](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0xPC9zY3JpcHQ+)",
    "[link](vbscript:msgbox(1))",
    "![img](javascript:window.__pwned=1)",
    "![img](x.png)",
    '<div style="background:url(javascript:1)" onclick="window.__pwned=1">styled</div>',
    "<iframe src=//evil.example></iframe>",
    '<svg onload="window.__pwned=1"></svg>',
    "<style>body{display:none}</style>",
    "&lt;script&gt;window.__pwned=1&lt;/script&gt;",
    "<!-- <script>window.__pwned=1</script> -->",
    '[x](https://e.org "a\\" onmouseover=\\"window.__pwned=1")',
    "| a | b |\n|--:|:-:|\n| 1 | 2 |",
    "<details open ontoggle=window.__pwned=1>",
    "<form action=https://evil.example><button>go</button></form>",
]


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.elements


@pytest.mark.parametrize("markdown", HOSTILE_MARKDOWN)
def test_nothing_executable_survives_rendering(markdown):
    html = str(guidelines.render_markdown(markdown))
    for tag, attrs in _elements(html):
        assert tag in guidelines.ALLOWED_TAGS, html
        assert set(attrs) <= guidelines.ALLOWED_ATTRIBUTES.get(tag, set()) | {"rel"}, html
        href = attrs.get("href")
        if href is not None:
            # What a browser would take as the scheme (it drops tabs, newlines, controls).
            bare = re.sub(r"[\x00-\x20]", "", href).lower()
            scheme = re.match(r"([a-z][a-z0-9+.\-]*):", bare)
            assert scheme is None or scheme.group(1) in {"http", "https", "mailto"}, html
            assert attrs.get("rel") == "noopener noreferrer", html
    lowered = html.lower()
    # Raw HTML comes out escaped (&lt;script…): as text, never as an element.
    for needle in ("<script", "<img", "<iframe", "<svg", "<style", "<div", "<form", "<details"):
        assert needle not in lowered, html


def test_raw_html_is_shown_as_text_not_markup():
    html = str(guidelines.render_markdown("Say <b>bold</b> and <script>x()</script>."))
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;script&gt;x()&lt;/script&gt;" in html
    assert _elements(html) == [("p", {})]


def test_links_keep_their_address_and_get_rel_noopener():
    html = str(guidelines.render_markdown("[MALT](https://metr.org/malt) and <https://e.org>"))
    links = [attrs for tag, attrs in _elements(html) if tag == "a"]
    assert [link["href"] for link in links] == ["https://metr.org/malt", "https://e.org"]
    assert all(link["rel"] == "noopener noreferrer" for link in links)


def test_a_hostile_entry_is_sanitised_where_the_screens_show_it():
    text = _text_with(drop="hallucination") + (
        "\n## Misbehavior types\n\n### `hallucination`\n\n"
        '<img src=x onerror="window.__pwned=1"> [click](javascript:window.__pwned=1)\n'
    )
    entry = str(guidelines.parse(text).entries[(guidelines.MISBEHAVIOR_TYPE, "hallucination")])
    assert [tag for tag, _ in _elements(entry)] == ["p"]  # no img, no link: text only
    assert "&lt;img" in entry


def test_entry_headings_get_ids_from_the_vocabulary_only():
    html = str(guidelines.parse(guidelines.default_text()).html)
    assert 'id="rubric-misbehavior_type-hallucination"' in html
    assert 'id="rubric-flag-spot_check"' in html
    assert 'id="rubric-decision-APPROVE"' in html
    hostile = str(guidelines.parse('## Flags\n\n### `x" onclick="y`\n\nz\n').html)
    assert [attrs for tag, attrs in _elements(hostile) if tag == "h4"] == [{}]


# --- diff --------------------------------------------------------------------------------------


def test_the_diff_lists_added_and_removed_lines_with_their_numbers():
    older = "one\ntwo\nthree\nfour\n"
    newer = "one\n2\nthree\nfour\nfive\n"
    lines = guidelines.diff(older, newer)
    kinds = [(line.kind, line.old, line.new, line.text) for line in lines]
    assert ("removed", 2, None, "two") in kinds
    assert ("added", None, 2, "2") in kinds
    assert ("added", None, 5, "five") in kinds
    assert ("same", 1, 1, "one") in kinds


def test_the_diff_of_equal_texts_is_empty_and_far_changes_are_split():
    assert guidelines.diff("a\nb\n", "a\nb\n") == []
    older = "".join(f"line {i}\n" for i in range(40))
    newer = older.replace("line 1\n", "line one\n").replace("line 38\n", "line 38!\n")
    kinds = [line.kind for line in guidelines.diff(older, newer)]
    assert kinds.count("gap") == 1


# --- the version on reviews --------------------------------------------------------------------


@pytest.fixture
def items(tmp_path):
    return import_records(
        [
            make_misbehavior(decision="APPROVE", step_number=1),
            make_record(step_number=2),
            make_record(step_number=3),
        ],
        tmp_path,
    )


def test_a_review_records_the_version_it_names(items, auditor, staff_user):
    guidelines.current_version()
    guidelines.save_version(_text_with("\nv2\n"), by=staff_user, based_on=1)
    outcome = confirm(items[1], auditor, guideline_version=1)
    assert outcome.review.guideline_version_id == 1


def test_a_review_without_a_version_records_the_current_one(items, auditor, staff_user):
    # No guidelines read before: version 1 is created.
    outcome = relabel(items[0], auditor, misbehavior_type="scope_violation")
    assert outcome.review.guideline_version_id == 1
    guidelines.save_version(_text_with("\nv2\n"), by=staff_user, based_on=1)
    outcome = unsure(items[2], auditor)
    assert outcome.review.guideline_version_id == 2


def test_a_review_naming_a_missing_version_is_refused(items, auditor):
    with pytest.raises(ValidationError) as refused:
        confirm(items[1], auditor, guideline_version=7)
    assert "Guidelines version 7 does not exist" in str(refused.value)
    assert not Review.objects.exists()


def test_an_adjudication_records_its_version(tmp_path, auditor, auditor2, adjudicator, staff_user):
    [item] = import_records([make_record()], tmp_path, name="k2.jsonl", required_reviews=2)
    confirm(item, auditor)
    relabel(item, auditor2)
    guidelines.save_version(_text_with("\nv2\n"), by=staff_user, based_on=1)
    outcome = adjudicate(item, adjudicator, guideline_version=2)
    assert outcome.review.guideline_version_id == 2
    assert [r.guideline_version_id for r in Review.objects.order_by("id")] == [1, 1, 2]


def test_a_version_with_reviews_cannot_be_removed_from_under_them(items, auditor):
    confirm(items[1], auditor)
    with pytest.raises(ProtectedError):
        GuidelineVersion.objects.filter(number=1).delete()  # a bulk delete skips delete()
    assert fresh(items[1]).reviews.get().guideline_version_id == 1


# --- exports, summary, card --------------------------------------------------------------------


def test_each_exported_review_says_its_guideline_version(items, auditor, staff_user):
    confirm(items[1], auditor)
    guidelines.save_version(_text_with("\nv2\n"), by=staff_user, based_on=1)
    records = {r["step_number"]: r for r in exporters.iter_records(Transcript.objects.all())}
    assert [e["guideline_version"] for e in records[2]["review"]["reviews"]] == [1]
    assert records[1]["review"]["reviews"] == []
    line = json.loads(exporters.dump_record(records[2]))
    assert line["review"]["reviews"][0]["guideline_version"] == 1


def test_reviews_made_before_versioning_export_null(items, auditor):
    outcome = confirm(items[1], auditor)
    # A review of before issue 11: its column null (the row is append-only; SQL sets it).
    Review.objects.filter(pk=outcome.review.pk).update(guideline_version=None)
    [record] = [
        r for r in exporters.iter_records(Transcript.objects.all()) if r["step_number"] == 2
    ]
    assert record["review"]["reviews"][0]["guideline_version"] is None


def test_the_export_reads_the_versions_with_the_reviews(tmp_path, auditor, staff_user):
    """The reviews' query of each chunk carries their versions: no query per row, none of the
    versions table, and as many queries for 8 records as for 4."""
    from django.test.utils import CaptureQueriesContext

    rows = import_records([make_record(step_number=i) for i in range(1, 9)], tmp_path)
    for index, item in enumerate(rows):
        if index == 4:
            guidelines.save_version(_text_with("\nv2\n"), by=staff_user, based_on=1)
        confirm(item, auditor)

    def export(queryset):
        with CaptureQueriesContext(connection) as captured:
            records = list(exporters.iter_records(queryset, chunk_size=100))
        return records, captured.captured_queries

    records, queries = export(Transcript.objects.all())
    _, fewer = export(Transcript.objects.filter(pk__in=[r.pk for r in rows[:4]]))
    versions = [r["review"]["reviews"][0]["guideline_version"] for r in records]
    assert sorted(versions) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert len(queries) == len(fewer)
    assert not any("audit_guidelineversion" in q["sql"] for q in queries)


def test_the_summary_counts_current_label_reviews_per_version(
    tmp_path, auditor, auditor2, adjudicator, staff_user
):
    rows = import_records([make_record(step_number=i) for i in range(1, 5)], tmp_path)
    confirm(rows[0], auditor)
    unsure(rows[1], auditor)  # decides no labels: not counted
    old = confirm(rows[2], auditor)
    Review.objects.filter(pk=old.review.pk).update(guideline_version=None)
    guidelines.save_version(_text_with("\nv2\n"), by=staff_user, based_on=1)
    relabel(rows[3], auditor)
    confirm(rows[0], auditor)  # supersedes the v1 review of rows[0]
    selection = Transcript.objects.all()
    summary = exporters.build_summary(selection, files={"all.jsonl": selection})
    block = summary["guideline_versions"]
    assert block["n"] == 3
    assert block["versions"] == [{"version": 2, "reviews": 2}, {"version": None, "reviews": 1}]
    assert "confirm, relabel and adjudicate" in block["basis"]
    only_first = selection.filter(pk=rows[3].pk)
    assert guidelines.version_counts(only_first)["versions"] == [{"version": 2, "reviews": 1}]
    json.loads(exporters.dump_summary(summary))  # strict JSON


def test_the_card_says_which_versions_the_labels_followed():
    lines = cards._guideline_lines(
        {"n": 5, "versions": [{"version": 2, "reviews": 3}, {"version": None, "reviews": 2}]}
    )
    text = "\n".join(lines)
    assert "(n = 5)" in text
    assert "| v2 | 3 |" in text
    assert "| before versioning | 2 |" in text
    assert "No review" in "\n".join(cards._guideline_lines({"n": 0, "versions": []}))
    assert "does not say" in cards._guideline_lines(None)[0]
