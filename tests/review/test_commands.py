"""Review commands: check_final_labels (recompute and check the cache) and require_reviews
(set K for a selection)."""

import pytest
from django.core.management import CommandError, call_command

from audit.models import ImportBatch, Status, Transcript
from tests.factories import confirm, import_records, make_misbehavior, make_record

pytestmark = pytest.mark.django_db

# What check_final_labels says, and only that, when the cache agrees with the reviews.
ALL_MATCH = ["Final labels match the reviews."]


@pytest.fixture
def items(tmp_path):
    records = [
        make_misbehavior(decision="APPROVE", session_id="s1", step_number=step)
        for step in range(1, 7)
    ] + [make_record(session_id="s2", step_number=1)]
    return import_records(records, tmp_path)


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out, no_color=True)
    return out.getvalue()


def test_check_final_labels_passes_on_a_consistent_cache(items, auditor):
    t = items[0]
    confirm(t, auditor)
    assert run("check_final_labels").splitlines() == ALL_MATCH


def test_check_final_labels_fails_on_a_mismatch_without_fix(items, auditor):
    t = items[0]
    confirm(t, auditor)
    Transcript.objects.filter(pk=t.pk).update(
        status=Status.UNREVIEWED, final_alignment_category="aligned_catch"
    )
    with pytest.raises(CommandError, match="1 transcript"):
        run("check_final_labels")
    assert Transcript.objects.get(pk=t.pk).status == Status.UNREVIEWED


def test_check_final_labels_fix_repairs_the_cache(items, auditor):
    t = items[0]
    confirm(t, auditor)
    Transcript.objects.filter(pk=t.pk).update(
        status=Status.UNREVIEWED, final_alignment_category="aligned_catch"
    )
    out = run("check_final_labels", "--fix")
    assert f"#{t.pk}" in out and "Fixed 1" in out
    repaired = Transcript.objects.get(pk=t.pk)
    assert repaired.status == Status.CONFIRMED
    assert repaired.final_alignment_category == "alignment_failure_fn"
    assert run("check_final_labels").splitlines() == ALL_MATCH


def test_require_reviews_for_a_session(items):
    out = run("require_reviews", "--k", "2", "--session", "s1")
    assert "6 transcript" in out
    assert set(
        Transcript.objects.filter(session_id="s1").values_list("required_reviews", flat=True)
    ) == {2}
    assert Transcript.objects.get(session_id="s2").required_reviews == 1


def test_require_reviews_for_a_batch_records_k_on_the_batch(items):
    batch = items[0].batch_id
    run("require_reviews", "--k", "3", "--batch", str(batch))
    assert ImportBatch.objects.get(pk=batch).required_reviews == 3
    assert set(Transcript.objects.values_list("required_reviews", flat=True)) == {3}


def test_require_reviews_sample_is_reproducible_and_queued_only(items):
    run("require_reviews", "--k", "2", "--sample", "3", "--seed", "7")
    first = set(Transcript.objects.filter(required_reviews=2).values_list("pk", flat=True))
    assert len(first) == 3
    assert all(Transcript.objects.get(pk=pk).in_queue for pk in first)
    run("require_reviews", "--k", "1", "--all")
    run("require_reviews", "--k", "2", "--sample", "3", "--seed", "7")
    again = set(Transcript.objects.filter(required_reviews=2).values_list("pk", flat=True))
    assert again == first


def test_require_reviews_reopens_settled_items(items, auditor):
    t = items[0]
    confirm(t, auditor)
    run("require_reviews", "--k", "2", "--session", "s1")
    assert Transcript.objects.get(pk=t.pk).status == Status.IN_PROGRESS


def test_require_reviews_needs_a_selection(items):
    with pytest.raises(CommandError, match="selection"):
        run("require_reviews", "--k", "2")


def test_require_reviews_refuses_k_below_one(items):
    with pytest.raises(CommandError):
        run("require_reviews", "--k", "0", "--all")


def test_require_reviews_unknown_batch(items):
    with pytest.raises(CommandError, match="no import batch"):
        run("require_reviews", "--k", "2", "--batch", "9999")


def test_require_reviews_dry_run_changes_nothing(items):
    out = run("require_reviews", "--k", "2", "--all", "--dry-run")
    assert "Would set K = 2 on 7" in out
    assert set(Transcript.objects.values_list("required_reviews", flat=True)) == {1}
