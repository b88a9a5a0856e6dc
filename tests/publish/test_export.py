"""Exported records, streaming, summaries, the export command, and the round trip."""

import gzip
import hashlib
import json
import math
import re
import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.ingest.importer import import_file
from audit.ingest.records import fingerprint, original_record, parse_line
from audit.metrics import summaries as metrics
from audit.models import ImportBatch, Lease, RejectedLine, Review, Status, Transcript, Verdict
from audit.publish import export as exporters
from audit.review.workflow import set_required_reviews
from audit.team import discussion
from tests.factories import (
    DATA_DIR,
    FIXTURES,
    adjudicate,
    confirm,
    fresh,
    import_fixture,
    import_records,
    make_misbehavior,
    make_record,
    relabel,
    review,
    unsure,
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
def test_unreviewed_fixture_exports_as_its_input_plus_a_review_and_a_malt_block():
    originals = {}
    for name in FIXTURES:
        import_fixture(name)
        for line in (DATA_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            originals[fingerprint(json.loads(line))] = line
    lines = list(exporters.iter_lines(Transcript.objects.all()))
    assert len(lines) == Transcript.objects.count() == len(originals)
    for line in lines:
        record = json.loads(line)
        assert list(record)[-2:] == ["review", "malt"]
        malt = record.pop("malt")
        assert malt["manually_reviewed"] is False
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

    assert list(out) == [*record, "review", "malt"]
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
def test_export_looks_up_reviews_and_comments_only_of_items_that_have_them(tmp_path, auditor):
    transcripts = import_records([make_record(step_number=n) for n in range(30)], tmp_path)
    # Export order is by step: the first chunk of 10 holds the reviewed and the commented item.
    review(transcripts[0], auditor, Verdict.CONFIRM)
    discussion.add_comment(transcripts[1], author=auditor, text="look at the target")
    with CaptureQueriesContext(connection) as queries:
        records = list(exporters.iter_records(Transcript.objects.all(), chunk_size=10))
    assert [len(r["review"]["reviews"]) for r in records] == [1] + [0] * 29
    assert [len(r["review"]["comments"]) for r in records] == [0, 1] + [0] * 28
    reads = [q["sql"] for q in queries]
    # One lookup each, naming the one item that has any: not the chunk's ten, not per chunk.
    [reviews] = [sql for sql in reads if sql.startswith('SELECT "audit_review".')]
    assert re.search(rf'"transcript_id" IN \({transcripts[0].pk}\)', reviews)
    [comments] = [sql for sql in reads if sql.startswith('SELECT "audit_commentrevision".')]
    assert re.search(rf'"transcript_id" IN \({transcripts[1].pk}\)', comments)


@pytest.mark.django_db(transaction=True)
def test_an_export_reads_one_snapshot_in_a_transaction_of_its_own(tmp_path, auditor):
    """Outside a transaction the export opens one (REPEATABLE READ on PostgreSQL), so its
    chunks' reviews describe the same moment as its rows, and PostgreSQL streams the rows
    rather than storing them all first for a cursor WITH HOLD; it ends with the export."""
    # Several chunks: after the first, the cursor is still open.
    transcripts = import_records([make_record(step_number=n) for n in range(12)], tmp_path)
    assert not connection.in_atomic_block
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW jit")
            jit_before = cursor.fetchone()
    records = exporters.iter_records(Transcript.objects.all(), chunk_size=2)
    next(records)
    assert connection.in_atomic_block
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone() == ("repeatable read",)
            cursor.execute("SHOW jit")  # off for the export's transaction only
            assert cursor.fetchone() == ("off",)
            cursor.execute("SELECT name, is_holdable FROM pg_cursors")
            assert [holdable for _, holdable in cursor.fetchall()] == [False]

    def settle_the_last_item():  # another auditor, on a connection of their own
        try:
            review(Transcript.objects.get(pk=transcripts[11].pk), auditor, Verdict.CONFIRM)
        finally:
            connection.close()

    thread = threading.Thread(target=settle_the_last_item)
    thread.start()
    thread.join()
    # The verdict went in, but mid-export: the export's snapshot is of its start.
    rest = list(records)
    assert [r["review"]["status"] for r in rest] == [Status.UNREVIEWED] * 11
    assert [len(r["review"]["reviews"]) for r in rest] == [0] * 11
    assert not connection.in_atomic_block
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW jit")
            assert cursor.fetchone() == jit_before
    assert Transcript.objects.get(pk=transcripts[11].pk).status == Status.CONFIRMED


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
    """Five safe approves; one relabeled as a misbehavior (so, approved: a miss)."""
    transcripts = import_records([make_record(step_number=n) for n in range(5)], tmp_path)
    review(
        transcripts[0], auditor, Verdict.RELABEL, rationale="why", **relabel_values(transcripts[0])
    )
    qs = Transcript.objects.all()
    summary = exporters.build_summary(qs, files={"all.jsonl": qs, "settled.jsonl": qs.settled()})

    def figures(block):
        keys = ("total_decisions", "correct_decisions", "false_negatives", "total_misbehaviors")
        return [block[key] for key in keys] + [block["alignment_distribution"]]

    assert figures(summary["as_imported"]) == [5, 5, 0, 0, {"aligned_approve": 5}]
    current = [5, 4, 1, 1, {"aligned_approve": 4, "alignment_failure_fn": 1}]
    assert figures(summary["current"]) == current
    assert figures(summary["published"]) == current
    assert figures(summary["files"]["all.jsonl"]) == current
    assert figures(summary["files"]["settled.jsonl"]) == [1, 0, 1, 1, {"alignment_failure_fn": 1}]
    assert figures(summary["settled_before"]) == [1, 1, 0, 0, {"aligned_approve": 1}]
    assert figures(summary["settled_after"]) == [1, 0, 1, 1, {"alignment_failure_fn": 1}]
    assert summary["confusion_matrix"]["current"]["false_negatives"] == 1
    assert summary["confusion_matrix"]["as_imported"]["false_negatives"] == 0
    assert summary["label_changes"] == {"aligned_approve": {"alignment_failure_fn": 1}}
    assert summary["label_fixes"] == {"settled": 1, "corrected": 1, "filled": 0}
    assert summary["inconsistent_labels"] == 0
    assert summary["review_status"]["relabeled"] == 1
    assert summary["agreement"]["is_misbehavior"]["items"] == 0
    assert summary["estimated_error_rate"]["sample"] == 0
    again = exporters.build_summary(qs, files={"all.jsonl": qs, "settled.jsonl": qs.settled()})
    assert exporters.dump_summary(summary) == exporters.dump_summary(again)


@pytest.mark.django_db
def test_with_nothing_settled_current_is_as_imported_and_nothing_changed(tmp_path):
    """Whatever the imported inconsistencies: a label nobody settled is its imported label."""
    import_records(
        [
            make_record(step_number=1, decision={"type": "BLOCK"}),  # labels say approve
            make_misbehavior(step_number=2, labels={"alignment_category": "aligned_approve"}),
            make_record(step_number=3, ground_truth={"correct_decision": None}),
            make_record(step_number=4),
        ],
        tmp_path,
    )
    qs = Transcript.objects.all()
    summary = exporters.build_summary(qs, files={"all.jsonl": qs})
    assert summary["current"] == summary["as_imported"] == summary["published"]
    assert summary["confusion_matrix"]["current"] == summary["confusion_matrix"]["as_imported"]
    assert summary["settled_before"] == summary["settled_after"] == {"total": 0}
    assert summary["label_changes"] == {}
    assert summary["label_fixes"] == {"settled": 0, "corrected": 0, "filled": 0}
    assert summary["inconsistent_labels"] == 2


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
    reviewed_summary = metrics.summarize(reviewed, basis="final")
    whole_final_summary = metrics.summarize(Transcript.objects.all(), basis="final")
    whole_current_summary = metrics.summarize(Transcript.objects.all(), basis="current")
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
        block = json.loads(t.text.raw)["review"]
        assert block["manually_reviewed"] is True
        assert len(block["reviews"]) == history[(t.task_id, t.step_number)]
    adjudicated = [json.loads(t.text.raw)["review"] for t in again]
    assert sum(block["adjudication"] is not None for block in adjudicated) == 1

    # And the full export: every record's final labels survive, reviewed or not.
    wipe_database()
    result = import_file(tmp_path / "all.jsonl")
    assert result.imported == 105
    assert metrics.summarize(Transcript.objects.all(), basis="final") == whole_final_summary
    # "current" is what the export contains: imported again, it is the new as-imported.
    assert metrics.summarize(Transcript.objects.all()) == whole_current_summary
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
    lines = (tmp_path / "all.jsonl").read_text().splitlines()
    # Every line carries both blocks, and still maps back to its original.
    assert {json.loads(line)["malt"]["run_id"] for line in lines} == fingerprints
    result = import_file(tmp_path / "all.jsonl")
    assert (result.imported, result.duplicates) == (0, 105)
    # And an export of that export's import maps back to the same identity too.
    wipe_database()
    import_file(tmp_path / "all.jsonl")
    assert set(Transcript.objects.values_list("fingerprint", flat=True)) == fingerprints
    exporters.write_jsonl(Transcript.objects.all(), tmp_path / "again.jsonl")
    again = [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert all({"earlier", "earlier_malt"} <= set(r["review"]) for r in again)
    wipe_database()
    import_fixture("noisy_s1")
    assert import_file(tmp_path / "again.jsonl").imported == 0


# --- the malt block ------------------------------------------------------------------------------


def malt_of(transcript):
    return exporters.export_record(Transcript.objects.get(pk=transcript.pk))["malt"]


@pytest.mark.django_db
def test_malt_block_has_malts_names_and_types_after_the_review_block(tmp_path):
    [t] = import_records([make_record()], tmp_path, model="sentinel-7b", run_source="noisy policy")
    [out] = exported(Transcript.objects.all())
    assert list(out)[-2:] == ["review", "malt"]
    assert out["malt"] == {
        "run_id": t.fingerprint,
        "manually_reviewed": False,
        "labels": ["normal"],
        "run_source": "noisy policy",
        "model": "sentinel-7b",
        "has_chain_of_thought": True,
    }
    # The exporter's own labels dict is untouched beside it.
    assert out["labels"] == {"oversight_correct": True, "alignment_category": "aligned_approve"}


@pytest.mark.django_db
def test_malt_run_source_and_model_are_null_when_the_batch_does_not_say(tmp_path):
    import_records([make_record()], tmp_path)
    [out] = exported(Transcript.objects.all())
    assert (out["malt"]["run_source"], out["malt"]["model"]) == (None, None)


@pytest.mark.parametrize(
    ("record", "labels"),
    [
        (make_record(), ["normal"]),
        (make_misbehavior(mb_type="reward_hacking"), ["reward_hacking"]),
        (make_misbehavior(mb_type="data_exfiltration"), ["data_exfiltration"]),
        (make_misbehavior(mb_type=None), ["misbehavior"]),
        (make_misbehavior(mb_type=""), ["misbehavior"]),
        # A type on a non-misbehavior means nothing; a null is the exporter's false.
        (make_record(ground_truth={"misbehavior_type": "hallucination"}), ["normal"]),
        (make_record(ground_truth={"is_misbehavior": None}), ["normal"]),
        (make_record(ground_truth=None), ["normal"]),
    ],
)
@pytest.mark.django_db
def test_malt_labels_of_an_unsettled_record_are_its_imported_ground_truth(record, labels, tmp_path):
    [t] = import_records([record], tmp_path)
    assert malt_of(t)["labels"] == labels
    assert malt_of(t)["manually_reviewed"] is False


@pytest.mark.django_db
def test_malt_labels_of_a_settled_record_are_its_final_labels(tmp_path, auditor):
    benign, missed = import_records(
        [make_record(step_number=1), make_misbehavior(step_number=2, decision="APPROVE")],
        tmp_path,
    )
    relabel(benign, auditor, misbehavior_type="scope_violation")
    relabel(missed, auditor, is_misbehavior=False, correct_decision="APPROVE")
    assert malt_of(benign) == malt_of(benign) | {
        "manually_reviewed": True,
        "labels": ["scope_violation"],
    }
    assert malt_of(missed)["labels"] == ["normal"]
    assert malt_of(missed)["manually_reviewed"] is True


@pytest.mark.django_db
def test_malt_manually_reviewed_is_true_exactly_for_settled_records(
    tmp_path, auditor, auditor2, adjudicator
):
    transcripts = import_records([make_record(step_number=n) for n in range(7)], tmp_path)
    set_required_reviews(Transcript.objects.filter(pk__in=[t.pk for t in transcripts[2:5]]), 2)
    confirm(transcripts[0], auditor)  # confirmed
    relabel(transcripts[1], auditor)  # relabeled
    confirm(transcripts[2], auditor)  # in progress: one of two reviews
    confirm(transcripts[3], auditor)
    relabel(transcripts[3], auditor2)  # disputed
    confirm(transcripts[4], auditor)
    relabel(transcripts[4], auditor2)
    adjudicate(transcripts[4], adjudicator)  # adjudicated
    unsure(transcripts[5], auditor)  # open: an unsure does not count
    for t in Transcript.objects.all():
        out = exporters.export_record(t)
        assert (
            out["malt"]["manually_reviewed"] is t.is_settled is out["review"]["manually_reviewed"]
        )
    statuses = {t.status: malt_of(t)["manually_reviewed"] for t in Transcript.objects.all()}
    assert fresh(transcripts[5]).is_open and fresh(transcripts[6]).status == Status.UNREVIEWED
    assert statuses == {
        Status.CONFIRMED: True,
        Status.RELABELED: True,
        Status.IN_PROGRESS: False,
        Status.DISPUTED: False,
        Status.ADJUDICATED: True,
        Status.UNREVIEWED: False,
    }


@pytest.mark.parametrize(
    ("proposal", "has_cot"),
    [
        ({"worker_reasoning": "Service degraded; classifying as P2."}, True),
        ({"worker_reasoning": ""}, False),
        ({"worker_reasoning": "  \n"}, False),
        ({"worker_reasoning": None}, False),
        ({"worker_reasoning": ["not", "text"]}, False),
        (None, False),
    ],
)
@pytest.mark.django_db
def test_has_chain_of_thought_says_whether_the_worker_reasoning_is_there(
    proposal, has_cot, tmp_path
):
    # The overseer's own thinking (cot_analysis) is not the run's chain of thought.
    record = make_record(
        proposal=proposal, cot_analysis={"thinking_text": "I think...", "has_thinking": True}
    )
    [t] = import_records([record], tmp_path)
    assert malt_of(t)["has_chain_of_thought"] is has_cot


@pytest.mark.django_db
def test_has_chain_of_thought_ignores_the_overseers_thinking(tmp_path):
    record = make_record(cot_analysis={"thinking_text": "", "has_thinking": False})
    [t] = import_records([record], tmp_path)
    assert malt_of(t)["has_chain_of_thought"] is True


@pytest.mark.django_db
def test_malt_run_id_is_the_fingerprint_unique_and_stable_across_databases(tmp_path):
    import_fixture("noisy_s1")
    first = exported(Transcript.objects.all())
    run_ids = [record["malt"]["run_id"] for record in first]
    assert len(set(run_ids)) == len(run_ids) == 105
    assert set(run_ids) == set(Transcript.objects.values_list("fingerprint", flat=True))
    assert all(run_id == fingerprint(record) for run_id, record in zip(run_ids, first, strict=True))
    # Another database holding the export (not the original file) gives the same run ids.
    wipe_database()
    import_records(first, tmp_path, name="export.jsonl")
    assert [record["malt"]["run_id"] for record in exported(Transcript.objects.all())] == run_ids


@pytest.mark.django_db
def test_malt_block_takes_each_records_batch_without_a_query_per_record(tmp_path):
    for n, (model, source) in enumerate([("m-a", "prompted"), ("", "unprompted"), ("m-c", "")]):
        import_records(
            [make_record(step_number=10 * n + k) for k in range(10)],
            tmp_path,
            name=f"b{n}.jsonl",
            model=model,
            run_source=source,
        )
    with CaptureQueriesContext(connection) as queries:
        lines = list(exporters.iter_lines(Transcript.objects.all(), chunk_size=10))
    # The rows in one query read a chunk at a time; per chunk one query for its reviews,
    # one for its comments (issue 11: discussion) and one for the batches it is the first to name.
    assert len(queries) <= 1 + 3 * 3
    pairs = [(r["malt"]["model"], r["malt"]["run_source"]) for r in map(json.loads, lines)]
    assert pairs == [("m-a", "prompted")] * 10 + [(None, "unprompted")] * 10 + [("m-c", None)] * 10


@pytest.mark.django_db
def test_each_record_gets_its_own_reviews_in_order_whatever_the_chunks(tmp_path, auditor, auditor2):
    items = import_records([make_record(step_number=k) for k in range(7)], tmp_path)
    for t in items:
        set_required_reviews(Transcript.objects.filter(pk=t.pk), 2)
    confirm(fresh(items[1]), auditor)
    confirm(fresh(items[1]), auditor2)
    unsure(fresh(items[3]), auditor2)
    relabel(fresh(items[6]), auditor)
    expected = {
        t.step_number: [
            (exporters.pseudonym(r.auditor_id), r.verdict)
            for r in Review.objects.filter(transcript=t).order_by("created_at", "id")
        ]
        for t in items
    }
    assert sum(map(len, expected.values())) == 4
    for chunk_size in (1, 2, 3, 100):
        lines = exporters.iter_lines(Transcript.objects.all(), chunk_size=chunk_size)
        got = {
            r["step_number"]: [(e["auditor"], e["verdict"]) for e in r["review"]["reviews"]]
            for r in map(json.loads, lines)
        }
        assert got == expected, chunk_size


@pytest.mark.django_db
def test_an_export_with_its_malt_block_adds_nothing_to_its_own_database(tmp_path, auditor):
    [t] = import_records([make_record()], tmp_path, model="m1", run_source="s1")
    relabel(t, auditor)
    [out] = exported(Transcript.objects.all())
    assert out["malt"]["labels"] == ["hallucination"]
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(out) + "\n")
    # Even with other run metadata given: the record is already stored, under its batch.
    result = import_file(path, model="m2", run_source="s2")
    assert (result.imported, result.duplicates, result.batch_id) == (0, 1, None)
    assert ImportBatch.objects.get().model == "m1"


@pytest.mark.django_db
def test_exporting_an_export_keeps_the_earlier_malt_block_and_its_identity(tmp_path, auditor):
    record = make_record()
    [t] = import_records([record], tmp_path, model="first-model", run_source="first-run")
    relabel(t, auditor)
    first = exported(Transcript.objects.all())
    wipe_database()
    import_records(first, tmp_path, name="again.jsonl", model="second-model")
    [second] = exported(Transcript.objects.all())
    assert list(second)[-2:] == ["review", "malt"]
    assert second["review"]["earlier"] == first[0]["review"]
    assert second["review"]["earlier_malt"] == first[0]["malt"]
    assert second["malt"] == {
        "run_id": first[0]["malt"]["run_id"],
        "manually_reviewed": False,
        # The first database's final labels are this one's imported ground truth.
        "labels": ["hallucination"],
        "run_source": None,
        "model": "second-model",
        "has_chain_of_thought": True,
    }
    # The export of the export is still the same decision as the original file's line.
    wipe_database()
    import_records([record], tmp_path, name="original.jsonl")
    path = tmp_path / "second.jsonl"
    path.write_text(json.dumps(second) + "\n")
    assert (import_file(path).imported, import_file(path).duplicates) == (0, 1)


@pytest.mark.parametrize(
    "extra",
    [{"malt": {"run_id": "theirs", "labels": "x"}}, {"review": None}, {"malt": None}],
)
@pytest.mark.django_db
def test_a_sources_own_review_or_malt_key_survives_the_round_trip(extra, tmp_path):
    record = {**make_record(), **extra}
    [t] = import_records([record], tmp_path)
    [out] = exported(Transcript.objects.all())
    assert out["malt"]["run_id"] == t.fingerprint
    assert original_record(out) == record
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(out) + "\n")
    assert import_file(path).duplicates == 1


# --- strict JSON (issue 15, D10) -----------------------------------------------------------------


def _strict_loads(line: str):
    """json.loads as an RFC 8259 reader: NaN, Infinity and -Infinity are not JSON."""

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(line, parse_constant=refuse)


NON_FINITE_LINE = json.dumps(
    make_record(
        reward=float("nan"),
        cot_analysis={"deception_risk": float("-inf"), "scores": [0.5, float("nan")]},
        vendor={"a/b~c": float("inf")},
    )
).replace('"timestamp": 1795504945.25', '"timestamp": 1e400')


@pytest.mark.django_db
def test_exports_are_strict_json_with_non_finite_numbers_null_and_listed(tmp_path):
    path = tmp_path / "nan.jsonl"
    path.write_text(NON_FINITE_LINE + "\n")
    assert import_file(path).imported == 1
    [line] = list(exporters.iter_lines(Transcript.objects.all()))
    assert "NaN" not in line.replace('"NaN"', "") and "Infinity" not in line.replace(
        '"Infinity"', ""
    ).replace('"-Infinity"', "")
    record = _strict_loads(line)
    assert record["timestamp"] is None and record["reward"] is None
    assert record["cot_analysis"]["deception_risk"] is None
    assert record["cot_analysis"]["scores"] == [0.5, None]
    assert record["vendor"] == {"a/b~c": None}
    # Every place, in the record's order, as a JSON Pointer ("/" and "~" escaped in keys).
    assert record["review"]["non_finite"] == [
        {"path": "/timestamp", "value": "Infinity"},
        {"path": "/cot_analysis/deception_risk", "value": "-Infinity"},
        {"path": "/cot_analysis/scores/1", "value": "NaN"},
        {"path": "/reward", "value": "NaN"},
        {"path": "/vendor/a~1b~0c", "value": "Infinity"},
    ]


@pytest.mark.django_db
def test_export_lines_are_compact_utf8_and_one_line_whichever_way_a_reader_splits(tmp_path):
    reasoning = "déjà vu\u2028next\u2029para\x85nel \U0001f600"
    import_records([make_record(proposal={"worker_reasoning": reasoning})], tmp_path)
    [line] = list(exporters.iter_encoded_lines(Transcript.objects.all()))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    text = line.decode("utf-8")
    assert len(text.splitlines()) == 1
    assert "déjà vu\\u2028next\\u2029para\\u0085nel \U0001f600" in text
    assert json.loads(text)["proposal"]["worker_reasoning"] == reasoning
    assert text.startswith('{"') and '": ' not in text  # no spaces between tokens


@pytest.mark.django_db
def test_a_non_finite_number_shared_by_ground_truth_and_its_original_is_listed_twice(tmp_path):
    [t] = import_records([make_record(ground_truth={"confidence": float("nan")})], tmp_path)
    record = exporters.export_record(t)
    # One object in two places of the exported record, as an unreviewed record has it.
    assert record["ground_truth"] is record["review"]["original_ground_truth"]
    [line] = list(exporters.iter_lines(Transcript.objects.all()))
    strict = _strict_loads(line)
    assert strict["review"]["non_finite"] == [
        {"path": "/ground_truth/confidence", "value": "NaN"},
        {"path": "/review/original_ground_truth/confidence", "value": "NaN"},
    ]
    # The record itself was not changed by writing it.
    assert math.isnan(record["ground_truth"]["confidence"])


@pytest.mark.django_db
def test_a_strict_export_reimports_to_the_same_values_and_fingerprints(tmp_path, auditor):
    path = tmp_path / "nan.jsonl"
    path.write_text(NON_FINITE_LINE + "\n" + json.dumps(make_record(step_number=2)) + "\n")
    import_file(path)
    relabel(Transcript.objects.get(step_number=1), auditor)
    fingerprints = set(Transcript.objects.values_list("fingerprint", flat=True))
    original = exporters.export_record(Transcript.objects.get(step_number=1))
    written = exporters.write_jsonl(Transcript.objects.all(), tmp_path / "out.jsonl")
    # Into its own database: nothing new.
    again = import_file(written.path)
    assert (again.imported, again.duplicates) == (0, 2)
    # Into another: the same records, numbers included, under the same fingerprints.
    wipe_database()
    assert import_file(written.path).imported == 2
    assert set(Transcript.objects.values_list("fingerprint", flat=True)) == fingerprints
    reimported = Transcript.objects.get(step_number=1)
    assert reimported.timestamp is None and reimported.reward is None
    back = exporters.export_record(reimported)
    # The review block of the first export now sits under review.earlier, its list gone.
    assert json.dumps(back["review"]["earlier"]) == json.dumps(original["review"])
    for key in ("timestamp", "reward", "cot_analysis", "vendor", "ground_truth"):
        assert json.dumps(back[key]) == json.dumps(original[key]), key
    # And the export of that export is strict, and still the same decisions.
    exporters.write_jsonl(Transcript.objects.all(), tmp_path / "again.jsonl")
    lines = (tmp_path / "again.jsonl").read_text().splitlines()
    nan_line = next(line for line in lines if '"non_finite"' in line)
    assert "/review/earlier/original_ground_truth" not in nan_line  # nothing non-finite there
    assert {"path": "/timestamp", "value": "Infinity"} in _strict_loads(nan_line)["review"][
        "non_finite"
    ]
    wipe_database()
    import_file(path)
    assert import_file(tmp_path / "again.jsonl").imported == 0


@pytest.mark.django_db
def test_a_record_without_non_finite_numbers_exports_without_the_list(tmp_path):
    import_records([make_record()], tmp_path)
    [record] = exported(Transcript.objects.all())
    assert "non_finite" not in record["review"]


@pytest.mark.django_db
def test_summaries_are_strict_json(tmp_path, auditor):
    path = tmp_path / "nan.jsonl"
    path.write_text(NON_FINITE_LINE + "\n")
    import_file(path)
    selection = Transcript.objects.all()
    text = exporters.dump_summary(exporters.build_summary(selection, files={"all": selection}))
    _strict_loads(text)


@pytest.mark.django_db
def test_fingerprints_of_records_with_non_finite_numbers_are_what_they_always_were(tmp_path):
    # The identity of data stored before strict exports: sha256 of the canonical record, whose
    # text spells NaN and Infinity as Python's json does; reading the strict form back keeps it.
    path = tmp_path / "nan.jsonl"
    path.write_text(NON_FINITE_LINE + "\n")
    import_file(path)
    canonical = json.dumps(
        json.loads(NON_FINITE_LINE), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    assert "NaN" in canonical and "Infinity" in canonical
    stored = Transcript.objects.get()
    assert stored.fingerprint == hashlib.sha256(canonical.encode("ascii")).hexdigest()
    [line] = list(exporters.iter_lines(Transcript.objects.all()))
    assert fingerprint(parse_line(line)) == stored.fingerprint
