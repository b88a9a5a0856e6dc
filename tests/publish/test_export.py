"""Exported records, streaming, summaries, the export command, and the round trip."""

import gzip
import hashlib
import json
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.ingest.importer import import_file
from audit.ingest.records import fingerprint
from audit.metrics import summaries as metrics
from audit.models import ImportBatch, Lease, RejectedLine, Review, Status, Transcript, Verdict
from audit.publish import export as exporters
from audit.review.workflow import set_required_reviews
from tests.factories import (
    DATA_DIR,
    FIXTURES,
    import_fixture,
    import_records,
    make_record,
    review,
)

PSEUDONYM = re.compile(r"^auditor-[0-9a-f]{12}$")


def relabel_values(transcript):
    """Values that flip is_misbehavior, whatever it was."""
    if transcript.final_is_misbehavior:
        return {"is_misbehavior": False, "misbehavior_type": "", "correct_decision": "APPROVE"}
    return {
        "is_misbehavior": True,
        "misbehavior_type": "reward_hacking",
        "correct_decision": "BLOCK",
    }


def exported(queryset):
    return [json.loads(line) for line in exporters.iter_lines(queryset)]


def wipe_database():
    Lease.objects.all().delete()
    # Reviews refuse delete() one by one (append-only); a test may empty the table wholesale.
    Review.objects.all()._raw_delete(Review.objects.db)
    Transcript.objects.all().delete()
    RejectedLine.objects.all().delete()
    ImportBatch.objects.all().delete()


@pytest.mark.django_db
def test_unreviewed_fixture_exports_as_its_input_plus_a_review_block():
    originals = {}
    for name in FIXTURES:
        import_fixture(name)
        for line in (DATA_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            originals[fingerprint(json.loads(line))] = line
    lines = list(exporters.iter_lines(Transcript.objects.all()))
    assert len(lines) == Transcript.objects.count() == len(originals)
    for line in lines:
        record = json.loads(line)
        block = record.pop("review")
        assert block["manually_reviewed"] is False
        assert block["status"] == Status.UNREVIEWED
        assert block["reviews"] == [] and block["adjudication"] is None
        # Byte for byte: same keys, same order, same spelling of every value.
        assert json.dumps(record) == originals[fingerprint(record)]


@pytest.mark.django_db
def test_inconsistent_unreviewed_record_keeps_its_imported_labels(tmp_path):
    record = make_record(labels={"oversight_correct": False, "alignment_category": "aligned_catch"})
    import_records([record], tmp_path)
    [out] = exported(Transcript.objects.all())
    assert out["labels"] == record["labels"]
    assert out["ground_truth"] == record["ground_truth"]
    assert "label_inconsistency" in out["review"]["flags"]
    assert any(p["flag"] == "label_inconsistency" for p in out["review"]["problems"])


@pytest.mark.django_db
def test_reviewed_record_holds_final_labels_in_the_original_key_order(tmp_path, auditor):
    record = make_record(
        ground_truth={"annotator_note": "kept", "was_true_positive": True},
        labels={"oversight_correct": False, "extra_label": 7},
        unknown_top_level={"nested": [1, 2]},
    )
    [t] = import_records([record], tmp_path)
    review(t, auditor, Verdict.RELABEL, rationale="worker invented a metric", **relabel_values(t))
    [out] = exported(Transcript.objects.all())

    assert list(out) == [*record, "review"]
    assert list(out["ground_truth"]) == list(record["ground_truth"])
    assert list(out["labels"]) == list(record["labels"])
    assert out["unknown_top_level"] == {"nested": [1, 2]}
    assert out["ground_truth"]["annotator_note"] == "kept"
    assert out["labels"]["extra_label"] == 7
    # A misbehavior the overseer approved: a missed catch, consistently labelled.
    assert out["ground_truth"] | {"annotator_note": "kept"} == {
        "is_misbehavior": True,
        "misbehavior_type": "reward_hacking",
        "correct_decision": "BLOCK",
        "was_true_positive": False,
        "was_false_positive": False,
        "was_false_negative": True,
        "annotator_note": "kept",
    }
    assert out["labels"] == {
        "oversight_correct": False,
        "alignment_category": "alignment_failure_fn",
        "extra_label": 7,
    }
    block = out["review"]
    assert block["manually_reviewed"] is True
    assert block["status"] == Status.RELABELED
    assert block["original_ground_truth"] == record["ground_truth"]
    assert block["original_labels"] == record["labels"]
    assert block["required_reviews"] == 1


@pytest.mark.django_db
def test_confirmed_inconsistent_record_exports_consistent_labels(tmp_path, auditor):
    record = make_record(labels={"oversight_correct": False, "alignment_category": "aligned_catch"})
    [t] = import_records([record], tmp_path)
    review(t, auditor, Verdict.CONFIRM)
    [out] = exported(Transcript.objects.all())
    assert out["review"]["status"] == Status.CONFIRMED
    assert out["labels"] == {"oversight_correct": True, "alignment_category": "aligned_approve"}
    assert out["review"]["original_labels"] == record["labels"]


@pytest.mark.django_db
def test_review_block_lists_every_review_with_stable_pseudonyms(tmp_path, auditor, auditor2):
    [t] = import_records([make_record()], tmp_path)
    set_required_reviews(Transcript.objects.all(), 2)
    review(t, auditor, Verdict.UNSURE, rationale="cannot tell yet", seconds_spent=12)
    review(t, auditor, Verdict.CONFIRM, seconds_spent=30)
    review(t, auditor2, Verdict.CONFIRM, seconds_spent=40)
    line = next(exporters.iter_lines(Transcript.objects.all()))
    reviews = json.loads(line)["review"]["reviews"]

    assert [r["verdict"] for r in reviews] == ["unsure", "confirm", "confirm"]
    assert [r["superseded"] for r in reviews] == [True, False, False]
    assert [r["seconds_spent"] for r in reviews] == [12, 30, 40]
    assert reviews[0]["rationale"] == "cannot tell yet"
    assert reviews[0]["auditor"] == reviews[1]["auditor"] != reviews[2]["auditor"]
    assert all(PSEUDONYM.match(r["auditor"]) for r in reviews)
    assert reviews[1]["after"] == {
        "is_misbehavior": False,
        "misbehavior_type": None,
        "correct_decision": "APPROVE",
    }
    assert reviews[1]["before"]["alignment_category"] == "aligned_approve"
    assert reviews[0]["created_at"].startswith("20")
    assert "alice" not in line and "bob" not in line
    assert exporters.pseudonym(auditor.pk) == reviews[0]["auditor"]


def test_pseudonym_depends_on_the_key(settings):
    settings.AUDIT_PSEUDONYM_KEY = "one"
    first = exporters.pseudonym(7)
    assert first == exporters.pseudonym(7) and PSEUDONYM.match(first)
    assert exporters.pseudonym(8) != first
    settings.AUDIT_PSEUDONYM_KEY = "two"
    assert exporters.pseudonym(7) != first


@pytest.mark.django_db
def test_adjudicated_record_carries_the_adjudication(tmp_path, auditor, auditor2, adjudicator):
    [t] = import_records([make_record()], tmp_path)
    set_required_reviews(Transcript.objects.all(), 2)
    review(t, auditor, Verdict.CONFIRM)
    review(t, auditor2, Verdict.RELABEL, rationale="scope creep", **relabel_values(t))
    t.refresh_from_db()
    assert t.status == Status.DISPUTED
    review(t, adjudicator, Verdict.ADJUDICATE, rationale="bob is right", **relabel_values(t))
    [out] = exported(Transcript.objects.all())
    block = out["review"]
    assert block["status"] == Status.ADJUDICATED
    assert block["adjudication"]["verdict"] == "adjudicate"
    assert block["adjudication"]["rationale"] == "bob is right"
    assert block["adjudication"]["auditor"] == exporters.pseudonym(adjudicator.pk)
    assert block["required_reviews"] == 2
    assert out["ground_truth"]["is_misbehavior"] is True


@pytest.mark.django_db
def test_export_queries_grow_with_chunks_not_records(tmp_path, auditor):
    records = [make_record(step_number=n) for n in range(30)]
    transcripts = import_records(records, tmp_path)
    for t in transcripts[:10]:
        review(t, auditor, Verdict.CONFIRM)
    with CaptureQueriesContext(connection) as queries:
        lines = list(exporters.iter_lines(Transcript.objects.all(), chunk_size=10))
    assert len(lines) == 30
    # Per chunk: the rows, then one prefetch of their reviews; plus the cursor's own statements.
    assert len(queries) <= 3 * 2 + 2
    assert sum(len(json.loads(line)["review"]["reviews"]) for line in lines) == 10


@pytest.mark.django_db
def test_export_order_is_session_task_step_then_fingerprint(tmp_path):
    records = [
        make_record(session_id="b", step_number=1),
        make_record(session_id="a", step_number=2),
        make_record(session_id="a", step_number=1, task_id="zeta"),
        make_record(session_id="a", step_number=1),
    ]
    import_records(records, tmp_path)
    keys = [
        (r["session_id"], r["task_id"], r["step_number"])
        for r in exported(Transcript.objects.all())
    ]
    assert keys == sorted(keys)


@pytest.mark.django_db
def test_exporting_an_export_keeps_the_earlier_review_block(tmp_path, auditor):
    [t] = import_records([make_record()], tmp_path)
    review(t, auditor, Verdict.CONFIRM)
    first = exported(Transcript.objects.all())
    wipe_database()
    import_records(first, tmp_path, name="again.jsonl")
    [second] = exported(Transcript.objects.all())
    assert second["review"]["earlier"] == first[0]["review"]
    assert second["review"]["manually_reviewed"] is False


@pytest.mark.django_db
def test_summary_holds_every_metric_of_the_selection(tmp_path, auditor):
    transcripts = import_records([make_record(step_number=n) for n in range(5)], tmp_path)
    review(
        transcripts[0], auditor, Verdict.RELABEL, rationale="why", **relabel_values(transcripts[0])
    )
    qs = Transcript.objects.all()
    summary = exporters.build_summary(qs)
    assert summary == {
        "as_imported": metrics.summarize(qs),
        "reviewed": metrics.summarize(qs, basis="reviewed"),
        "confusion_matrix": {
            "as_imported": metrics.confusion_matrix(qs, basis="as_imported"),
            "reviewed": metrics.confusion_matrix(qs, basis="reviewed"),
        },
        "label_changes": metrics.label_change_matrix(qs),
        "agreement": metrics.agreement(qs),
        "review_status": metrics.status_counts(qs),
        "estimated_error_rate": metrics.estimated_error_rate(qs),
    }
    assert summary["review_status"]["relabeled"] == 1
    assert summary["label_changes"]["aligned_approve"] == {
        "aligned_approve": 4,
        "alignment_failure_fn": 1,
    }
    assert exporters.dump_summary(summary) == exporters.dump_summary(exporters.build_summary(qs))


@pytest.mark.django_db
def test_export_command_writes_jsonl_and_summary(tmp_path, auditor):
    transcripts = import_records([make_record(step_number=n) for n in range(4)], tmp_path)
    review(transcripts[1], auditor, Verdict.CONFIRM)
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    call_command("export_transcripts", "--output", str(out), "--summary", str(summary))
    assert len(out.read_text().splitlines()) == 4
    assert json.loads(summary.read_text())["review_status"]["confirmed"] == 1

    call_command("export_transcripts", "--output", str(out), "--reviewed-only")
    [line] = out.read_text().splitlines()
    assert json.loads(line)["step_number"] == 1


@pytest.mark.django_db
def test_export_command_gzip_is_reproducible_and_filters(tmp_path):
    import_records(
        [make_record(step_number=1), make_record(step_number=2, task_id="adversarial_worker")],
        tmp_path,
    )
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    for path in (first, second):
        call_command(
            "export_transcripts",
            "--output",
            str(path),
            "--gzip",
            "--filter",
            "task=adversarial_worker",
        )
    assert first.read_bytes() == second.read_bytes()
    [line] = gzip.decompress(first.read_bytes()).decode().splitlines()
    assert json.loads(line)["task_id"] == "adversarial_worker"


@pytest.mark.django_db
def test_export_command_rejects_an_unknown_filter(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown filter 'colour'"):
        call_command(
            "export_transcripts", "--output", str(tmp_path / "x"), "--filter", "colour=red"
        )


@pytest.mark.django_db
def test_round_trip_import_review_export_reimport(tmp_path, auditor, auditor2, adjudicator):
    import_fixture("noisy_s1")
    qs = Transcript.objects.order_by("step_number")
    inconsistent = qs.filter(flag_label_inconsistency=True).first()
    missed = qs.filter(flag_missed_misbehavior=True).exclude(pk=inconsistent.pk).first()
    others = list(qs.exclude(pk__in=[inconsistent.pk, missed.pk])[:3])
    assert inconsistent and missed and len(others) == 3

    review(inconsistent, auditor, Verdict.CONFIRM, seconds_spent=20)
    review(
        missed,
        auditor,
        Verdict.RELABEL,
        rationale="not misbehavior after all",
        **relabel_values(missed),
    )
    review(
        others[0],
        auditor,
        Verdict.RELABEL,
        rationale="invented metric",
        **relabel_values(others[0]),
    )
    set_required_reviews(Transcript.objects.filter(pk=others[1].pk), 2)
    review(others[1], auditor, Verdict.CONFIRM)
    review(others[1], auditor2, Verdict.RELABEL, rationale="disagree", **relabel_values(others[1]))
    review(
        others[1],
        adjudicator,
        Verdict.ADJUDICATE,
        rationale="auditor2 is right",
        **relabel_values(others[1]),
    )
    review(others[2], auditor, Verdict.UNSURE, rationale="needs a second look")

    reviewed = Transcript.objects.settled()
    assert set(reviewed.values_list("status", flat=True)) == {
        Status.CONFIRMED,
        Status.RELABELED,
        Status.ADJUDICATED,
    }
    reviewed_summary = metrics.summarize(reviewed, basis="reviewed")
    whole_reviewed_summary = metrics.summarize(Transcript.objects.all(), basis="reviewed")
    finals = {
        (t.session_id, t.task_id, t.step_number): (
            t.final_is_misbehavior,
            t.final_misbehavior_type,
            t.final_correct_decision,
            t.final_alignment_category,
        )
        for t in Transcript.objects.all()
    }
    history = {
        (t.task_id, t.step_number): Review.objects.filter(transcript=t).count() for t in reviewed
    }
    reviewed_file = exporters.write_jsonl(reviewed, tmp_path / "reviewed.jsonl")
    all_file = exporters.write_jsonl(Transcript.objects.all(), tmp_path / "all.jsonl")
    assert reviewed_file.records == 4 and all_file.records == 105

    # A fresh database: the reviewed export alone.
    wipe_database()
    result = import_file(tmp_path / "reviewed.jsonl")
    assert result.imported == 4 and not result.failed
    again = Transcript.objects.all()
    assert metrics.summarize(again) == reviewed_summary
    assert Review.objects.count() == 0  # the history travels in the record, not as rows
    for t in again:
        key = (t.session_id, t.task_id, t.step_number)
        assert (
            t.final_is_misbehavior,
            t.final_misbehavior_type,
            t.final_correct_decision,
            t.final_alignment_category,
        ) == finals[key]
        assert t.alignment_category == finals[key][3]  # imported labels are now consistent
        assert not t.flag_label_inconsistency
        block = json.loads(t.raw)["review"]
        assert block["manually_reviewed"] is True
        assert len(block["reviews"]) == history[(t.task_id, t.step_number)]
    adjudicated = [json.loads(t.raw)["review"] for t in again]
    assert sum(block["adjudication"] is not None for block in adjudicated) == 1

    # And the full export: every record's final labels survive, reviewed or not.
    wipe_database()
    result = import_file(tmp_path / "all.jsonl")
    assert result.imported == 105
    assert metrics.summarize(Transcript.objects.all(), basis="reviewed") == whole_reviewed_summary
    for t in Transcript.objects.all():
        assert t.final_alignment_category == finals[(t.session_id, t.task_id, t.step_number)][3]


@pytest.mark.django_db
def test_written_file_reports_the_sha256_of_its_bytes(tmp_path):
    import_records([make_record(step_number=n) for n in range(3)], tmp_path)
    written = exporters.write_jsonl(Transcript.objects.all(), tmp_path / "x.jsonl")
    data = (tmp_path / "x.jsonl").read_bytes()
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    assert written.size == len(data) and written.records == 3


@pytest.mark.django_db
def test_importing_an_export_into_its_own_database_adds_nothing(tmp_path, auditor):
    import_fixture("noisy_s1")
    missed = Transcript.objects.filter(flag_missed_misbehavior=True).first()
    review(missed, auditor, Verdict.RELABEL, rationale="not a loop", **relabel_values(missed))
    fingerprints = set(Transcript.objects.values_list("fingerprint", flat=True))
    exporters.write_jsonl(Transcript.objects.all(), tmp_path / "all.jsonl")
    result = import_file(tmp_path / "all.jsonl")
    assert (result.imported, result.duplicates) == (0, 105)
    # And an export of that export's import maps back to the same identity too.
    wipe_database()
    import_file(tmp_path / "all.jsonl")
    assert set(Transcript.objects.values_list("fingerprint", flat=True)) == fingerprints
    exporters.write_jsonl(Transcript.objects.all(), tmp_path / "again.jsonl")
    wipe_database()
    import_fixture("noisy_s1")
    assert import_file(tmp_path / "again.jsonl").imported == 0
