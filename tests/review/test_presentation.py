"""How a record reads on the review screens (audit.review.presentation): JSON as json.dumps
writes it for ordinary records, and every value cut to what a person can read, saying how much
was left out, however deep, wide or long the record."""

import json

import pytest

from audit.models import Flag, Transcript
from audit.review.presentation import (
    MAX_CHARS,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_PILLS,
    SHORT_CHARS,
    Excerpt,
    present_record,
    pretty,
    problems,
)
from tests.factories import DATA_DIR, FIXTURES, make_misbehavior


def deep_text(levels: int) -> str:
    """JSON text of an object nested ``levels`` deep, built as text (too deep to dump)."""
    return '{"k": ' * levels + "1" + "}" * levels


def line_with(value_text: str) -> str:
    """A record line with ``proposal.parameters`` spelled as ``value_text``."""
    line = json.dumps(make_misbehavior(decision="APPROVE", proposal={"parameters": "HERE"}))
    return line.replace('"HERE"', value_text)


@pytest.mark.parametrize("name", FIXTURES)
def test_ordinary_values_read_exactly_as_json_dumps_writes_them(name):
    for line in (DATA_DIR / f"{name}.jsonl").read_text().splitlines():
        for value in json.loads(line).values():
            shown = pretty(value)
            assert shown.text == json.dumps(value, indent=2, ensure_ascii=False)
            assert not shown.omitted and shown.more == ""
            one_line = pretty(value, indent=False).text
            assert one_line == json.dumps(value, ensure_ascii=False)


def test_levels_below_the_depth_limit_are_summarised_with_a_count():
    value = json.loads(deep_text(30))
    shown = pretty({"list": [[[[[[[[1, 2, 3]]]]]]]], "obj": value})
    assert "{… 1 key}" in shown.text
    assert "[… 3 items]" in shown.text
    assert not shown.omitted  # summarised, not cut
    # MAX_DEPTH levels open, then the summary: the deepest line is indented MAX_DEPTH times.
    widest = max(len(line) - len(line.lstrip()) for line in shown.text.splitlines())
    assert widest == 2 * MAX_DEPTH


def test_a_value_nested_thousands_deep_prints_small_and_without_recursion():
    # Indented in full, 9,900 levels print as about 196 MB (the square of the depth).
    value = json.loads(deep_text(9_900))
    shown = pretty(value)
    assert len(shown.text) < 1_000 and "{… 1 key}" in shown.text


def test_long_objects_and_arrays_show_their_first_entries_and_count_the_rest():
    shown = pretty({"many": list(range(1_000)), "keys": {f"k{i}": i for i in range(250)}})
    assert f"… {1_000 - MAX_ITEMS:,} more items" in shown.text
    assert f"… {250 - MAX_ITEMS} more keys" in shown.text
    assert f"{MAX_ITEMS - 1}," in shown.text and f"\n    {MAX_ITEMS}," not in shown.text


def test_a_long_value_stops_at_the_limit_and_says_how_much_more_there_is():
    value = {"text": "x" * 50_000, "after": [1, 2]}
    shown = pretty(value)
    full = json.dumps(value, indent=2)
    assert shown.text == full[:MAX_CHARS]
    assert shown.omitted == len(full) - MAX_CHARS and not shown.at_least
    assert shown.more == f"… {len(full) - MAX_CHARS:,} more characters"


def test_a_huge_value_is_not_counted_to_the_end():
    # A million small numbers, 100 x 100 x 100: the count stops early and says "at least".
    shown = pretty([[list(range(100)) for _ in range(100)] for _ in range(100)])
    assert len(shown.text) == MAX_CHARS
    assert shown.at_least and shown.more.startswith("… at least ")


def test_text_fields_are_cut_and_count_what_was_left_out():
    thinking = "why " * 650_000  # the 2.6 MB thinking text of issue 10
    record = make_misbehavior(
        decision="APPROVE",
        cot_analysis={"thinking_text": thinking, "answer_text": "short"},
        proposal={"worker_reasoning": "r" * (MAX_CHARS + 1), "target": "t" * 10_000},
        debate_result={"final_reasoning": "d" * MAX_CHARS},
    )
    rec = present_record(json.dumps(record))
    cot = rec["cot"]
    assert cot["thinking_text"].text == thinking[:MAX_CHARS]
    assert cot["thinking_text"].more == f"… {len(thinking) - MAX_CHARS:,} more characters"
    assert str(cot["answer_text"]) == "short" and not cot["answer_text"].omitted
    assert rec["proposal"]["worker_reasoning"].more == "… 1 more character"
    assert len(rec["proposal"]["target"].text) == SHORT_CHARS
    assert not rec["debate"]["final_reasoning"].omitted  # exactly at the limit: whole


def test_lists_and_label_tables_are_shortened_with_a_count():
    record = make_misbehavior(
        decision="APPROVE",
        cot_analysis={"suspicion_reasons": [f"reason {i}" for i in range(500)]},
        context={"available_services": ["s" * 5_000] * 3},
        ground_truth={f"extra_{i}": {"deep": list(range(1_000))} for i in range(80)},
    )
    rec = present_record(json.dumps(record))
    reasons = rec["cot"]["suspicion_reasons"]
    assert len(reasons) == MAX_PILLS and reasons.omitted == 500 - MAX_PILLS
    assert reasons.more == f"… {500 - MAX_PILLS} more"
    services = list(rec["context"]["services"])
    assert len(services) == 3 and all(len(s.text) == SHORT_CHARS for s in services)
    pairs = list(rec["ground_truth"])
    assert len(pairs) == MAX_PILLS and rec["ground_truth"].omitted > 0
    key, value = pairs[0]
    assert str(key) == "is_misbehavior" and str(value) == "true"
    assert all(len(value.text) <= SHORT_CHARS for _, value in pairs)


def test_a_record_too_deep_for_the_decoder_shows_nothing_rather_than_failing():
    # Stored before the importer refused deep lines: json may give up on it (RecursionError).
    rec = present_record(line_with(deep_text(200_000)))
    assert rec["proposal"]["parameters"] == Excerpt("")
    assert rec["ground_truth"].items == []


def test_a_record_of_a_deeply_nested_parameter_shows_it_summarised():
    rec = present_record(line_with(deep_text(9_900)))
    assert "{… 1 key}" in rec["proposal"]["parameters"].text
    assert len(rec["proposal"]["parameters"].text) < 1_000


@pytest.mark.django_db
def test_a_long_flag_reason_is_cut():
    transcript = Transcript(
        problems=[{"flag": Flag.SUSPICIOUS_REASONING.value, "detail": "because " * 10_000}]
    )
    [problem] = problems(transcript)
    assert len(problem["detail"].text) == SHORT_CHARS and problem["detail"].omitted
    assert problem["label"] == Flag.SUSPICIOUS_REASONING.label
