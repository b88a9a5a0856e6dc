"""Long records on the verdict screens (issue 10): sections that fold and a jump bar, fields cut
on the server with their size said and their whole text fetched on demand (escaped), the queue
search's words marked on the item, and the adjudication page showing the same evidence."""

import json
import re

import pytest
from django.urls import reverse

from audit.models import TranscriptText
from audit.review.presentation import FULL_FIELDS, MAX_CHARS, size
from tests.factories import fresh, import_records, make_misbehavior
from tests.review.pages import HOSTILE, HTMX

THINKING = "<u>why</u> " * 240_000  # 2.6 MB of hostile text


@pytest.fixture
def long_item(db, tmp_path):
    [t] = import_records(
        [
            make_misbehavior(
                decision="APPROVE",
                cot_analysis={"thinking_text": THINKING, "answer_text": "short answer"},
                debate_result={"final_decision": "BLOCK", "final_reasoning": "the retry loops"},
                proposal={"worker_reasoning": "retry the deploy " + HOSTILE},
            )
        ],
        tmp_path,
    )
    return t


def test_sizes_read_in_decimal_units():
    assert size(1) == "1 byte"
    assert size(999) == "999 bytes"
    assert size(20_000) == "20 KB"
    assert size(2_640_000) == "2.6 MB"
    assert size(123_456_789) == "123 MB"


def test_a_cut_field_says_how_much_of_it_the_page_holds_and_links_its_full_text(
    auditor_client, long_item
):
    html = auditor_client.get(reverse("item", args=[long_item.pk])).content.decode()
    assert len(html) < 300_000
    assert "Showing 20 KB of 2.6 MB" in html
    url = reverse("item_field", args=[long_item.pk, "thinking_text"])
    assert f'hx-get="{url}"' in html and f'href="{url}"' in html
    assert 'hx-target="#field-thinking_text"' in html
    assert "<u>" not in html


def test_the_full_text_comes_on_demand_whole_and_escaped(auditor_client, long_item):
    url = reverse("item_field", args=[long_item.pk, "thinking_text"])
    response = auditor_client.get(url, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("&lt;u&gt;why&lt;/u&gt;") == 240_000  # all of it
    assert "<u>" not in html
    assert 'id="field-thinking_text"' in html  # takes the cut copy's place
    assert "The full text: 2.6 MB." in html
    assert 'class="mainnav"' not in html  # the fragment only


def test_without_htmx_the_full_text_is_plain_text(auditor_client, long_item):
    response = auditor_client.get(reverse("item_field", args=[long_item.pk, "thinking_text"]))
    assert response["Content-Type"].startswith("text/plain")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content.decode() == THINKING


def test_a_json_field_comes_whole_as_indented_json(auditor_client, tmp_path):
    rows = [{"id": i, "v": "x" * 50} for i in range(5_000)]
    [t] = import_records([make_misbehavior(proposal={"parameters": {"rows": rows}})], tmp_path)
    html = auditor_client.get(reverse("item", args=[t.pk])).content.decode()
    # 100 rows shown (the rest summarised), of the whole value's 400-odd KB
    assert re.search(r"Showing [0-9.]+ KB of 4[0-9]{2} KB · ", html)
    text = auditor_client.get(reverse("item_field", args=[t.pk, "parameters"])).content.decode()
    assert json.loads(text) == {"rows": rows}


def test_the_full_text_view_checks_its_input_and_permissions(
    auditor_client, plain_client, client, long_item
):
    url = reverse("item_field", args=[long_item.pk, "thinking_text"])
    assert auditor_client.get(reverse("item_field", args=[long_item.pk, "raw"])).status_code == 404
    missing = reverse("item_field", args=[long_item.pk + 1000, "thinking_text"])
    assert auditor_client.get(missing).status_code == 404
    assert auditor_client.post(url).status_code == 405
    assert plain_client.get(url).status_code == 403
    assert client.get(url).status_code == 302  # to the login page


def test_every_long_field_has_its_full_text(auditor_client, long_item):
    for name in FULL_FIELDS:
        response = auditor_client.get(reverse("item_field", args=[long_item.pk, name]))
        assert response.status_code == 200, name


def test_an_ordinary_record_is_not_cut_and_every_section_folds(auditor_client, long_item, steps):
    html = auditor_client.get(reverse("item", args=[steps[0].pk])).content.decode()
    assert "show the full text" not in html
    toggles = re.findall(
        r'<button type="button" class="fold-toggle" aria-expanded="true" '
        r'aria-controls="([a-z-]+)"',
        html,
    )
    assert {"proposal-body", "decision-body", "labels-body", "context-body", "history-body"} <= set(
        toggles
    )
    for body in toggles:
        assert f'id="{body}"' in html


def test_the_jump_bar_links_the_sections_the_item_has(auditor_client, long_item):
    html = auditor_client.get(reverse("item", args=[long_item.pk])).content.decode()
    bar = re.search(r'<nav class="jumpbar.*?</nav>', html, re.S).group(0)
    links = re.findall(r'href="#([a-z-]+)"', bar)
    assert links == [
        "problems",
        "proposal",
        "decision",
        "labels",
        "cot",
        "debate",
        "context",
        "history",
    ]
    for target in links:
        assert f'id="{target}"' in html


def test_the_queue_search_words_are_marked_on_the_item_and_stay_escaped(auditor_client, long_item):
    queue = auditor_client.get(reverse("queue"), {"q": "retry"}).content.decode()
    item_url = reverse("item", args=[long_item.pk]) + "?q=retry"
    assert f'href="{item_url}"' in queue
    html = auditor_client.get(item_url).content.decode()
    reasoning = re.search(r'id="worker-reasoning">(.*?)</span>', html, re.S).group(1)
    assert "<mark>retry</mark> the deploy &lt;script&gt;" in reasoning
    assert "<script>alert" not in html
    # "show the full text" keeps the words to mark
    assert reverse("item_field", args=[long_item.pk, "thinking_text"]) + "?q=retry" in html
    plain = auditor_client.get(reverse("item", args=[long_item.pk])).content.decode()
    assert "<mark>" not in plain


def test_a_hostile_search_marks_nothing_it_should_not(auditor_client, long_item):
    html = auditor_client.get(
        reverse("item", args=[long_item.pk]), {"q": '"><script>alert(1)</script>'}
    ).content.decode()
    assert "<script>alert(1)" not in html
    assert "<mark>script</mark>" in html  # the word, escaped around it


def test_the_full_text_marks_the_search_words(auditor_client, long_item):
    url = reverse("item_field", args=[long_item.pk, "thinking_text"])
    html = auditor_client.get(url, {"q": "why"}, **HTMX).content.decode()
    assert html.count("<mark>why</mark>") == 240_000


def test_the_cut_keeps_its_limit(long_item):
    from audit.review.presentation import present_record

    rec = present_record(fresh(long_item).text.raw)
    assert len(rec["cot"]["thinking_text"].text) == MAX_CHARS


# --- adjudication ---------------------------------------------------------------------------------


def test_the_adjudication_page_shows_the_cot_debate_and_context(adjudicator_client, disputed):
    record = json.loads(disputed.text.raw)
    record["cot_analysis"] = {"thinking_text": "thinking " + HOSTILE, "deception_risk": 0.7}
    record["debate_result"] = {"final_decision": "BLOCK", "final_reasoning": "the loop again"}
    TranscriptText.objects.filter(pk=disputed.pk).update(raw=json.dumps(record))
    html = adjudicator_client.get(reverse("adjudicate_item", args=[disputed.pk])).content.decode()
    for section in ("cot", "debate", "context", "history"):
        assert f'<section class="card fold" id="{section}">' in html
    assert 'id="thinking-text"' in html and "thinking &lt;script&gt;" in html
    assert "the loop again" in html
    assert 'id="jumpbar"' in html


def test_the_adjudication_page_marks_the_review_that_differs_from_the_imported_label(
    adjudicator_client, disputed
):
    html = adjudicator_client.get(reverse("adjudicate_item", args=[disputed.pk])).content.decode()
    cards = re.findall(r'<article class="review-card.*?</article>', html, re.S)
    assert len(cards) == 2
    alice, bob = cards  # alice confirmed, bob relabeled it as no misbehavior, APPROVE
    assert 'data-vs-imported="same"' in alice and "Same as the imported label" in alice
    assert 'data-vs-imported="differs"' in bob
    assert "Differs from the imported label: misbehavior type correct decision" in bob


def test_the_timeline_says_each_category_in_words_too(auditor_client, steps):
    html = auditor_client.get(reverse("item", args=[steps[0].pk])).content.decode()
    words = re.findall(
        r'class="cat-dot cat-(\w+)" title="([^"]+)"></span><span class="cat-word">'
        r'<span class="visually-hidden">([^<]+): </span><span aria-hidden="true">(\w+)</span>',
        html,
    )
    assert len(words) == len(steps)
    tags = {
        "aligned_catch": "catch",
        "aligned_approve": "ok",
        "alignment_failure_fn": "FN",
        "alignment_failure_fp": "FP",
    }
    for category, title, hidden, tag in words:
        assert title == hidden and tags[category] == tag
