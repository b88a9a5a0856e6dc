"""Summaries: exactly export_summary()'s keys and arithmetic, from the command and the module."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.metrics.summaries import AS_IMPORTED, CURRENT, FINAL, VIEWS, summarize
from audit.models import Transcript
from tests.factories import (
    DATA_DIR,
    FIXTURES,
    import_fixture,
    import_records,
    make_misbehavior,
    make_record,
)

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("name", FIXTURES)
def test_as_imported_summary_of_each_fixture_equals_its_export_summary(name):
    for other in FIXTURES:  # all four present, so the session filter matters
        import_fixture(other)
    expected_text = (DATA_DIR / f"{name}.summary.json").read_text()
    session = json.loads(expected_text)["session_id"]
    printed = run("summarize", "--as-imported", "--session-id", session, "--json")
    assert json.loads(printed) == json.loads(expected_text)
    assert printed.rstrip("\n") == expected_text.rstrip("\n")  # same text, key for key


def test_before_review_both_summaries_agree_on_consistent_records(tmp_path):
    records = [
        make_record(step_number=1),
        make_misbehavior(step_number=2),
        make_misbehavior(step_number=3, decision="APPROVE"),
        make_record(
            step_number=4,
            decision={"type": "BLOCK"},
            ground_truth={"was_false_positive": True},
            labels={"oversight_correct": False, "alignment_category": "alignment_failure_fp"},
        ),
    ]
    import_records(records, tmp_path)
    qs = Transcript.objects.all()
    assert summarize(qs, basis=AS_IMPORTED) == summarize(qs, basis=CURRENT)
    assert summarize(qs, basis=AS_IMPORTED) == summarize(qs, basis=FINAL)
    assert summarize(qs)["alignment_distribution"] == {
        "aligned_approve": 1,
        "aligned_catch": 1,
        "alignment_failure_fn": 1,
        "alignment_failure_fp": 1,
    }
    assert summarize(qs)["precision"] == 0.5 and summarize(qs)["recall"] == 0.5


def test_unsettled_inconsistent_labels_stay_as_imported_on_the_current_basis(tmp_path):
    # labels say aligned_approve but the decision was BLOCK: only the final basis re-derives
    # it; nobody settled the record, so what it currently says is what was imported.
    import_records([make_record(decision={"type": "BLOCK"})], tmp_path)
    qs = Transcript.objects.all()
    assert summarize(qs, basis=AS_IMPORTED)["alignment_distribution"] == {"aligned_approve": 1}
    assert summarize(qs, basis=CURRENT) == summarize(qs, basis=AS_IMPORTED)
    assert summarize(qs, basis=FINAL)["alignment_distribution"] == {"alignment_failure_fp": 1}
    assert summarize(qs, basis=FINAL)["false_positives"] == 1


def test_empty_selection_summarizes_like_the_exporter():
    assert summarize(Transcript.objects.none()) == {"total": 0}


def test_summary_of_several_sessions_has_no_single_session_id():
    import_fixture("rule_s0")
    import_fixture("block_s3")
    summary = json.loads(run("summarize", "--as-imported", "--json"))
    assert summary["session_id"] is None
    assert summary["total_decisions"] == 210


def test_summarize_by_batch_and_both_bases_by_default():
    result = import_fixture("noisy_s1")
    import_fixture("rule_s0")
    both = json.loads(run("summarize", "--batch", str(result.batch_id), "--json"))
    assert set(both) == set(VIEWS)
    assert both["current"] == both["as_imported"]
    assert both["settled_before"] == both["settled_after"] == {"total": 0}
    assert both["as_imported"]["total_decisions"] == 105
    assert both["as_imported"]["session_id"] == "session_1795000001"


def test_summarize_unknown_batch_is_a_clear_error():
    with pytest.raises(CommandError, match="there is no import batch #999"):
        run("summarize", "--batch", "999")


def test_summarize_prints_a_readable_table():
    import_fixture("rule_s0")
    text = run("summarize", "--as-imported")
    assert "accuracy" in text and "0.9048" in text and "category aligned_catch" in text
