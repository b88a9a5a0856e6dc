"""The synthetic transcript generator writes realistic exporter-format JSONL, deterministically,
and the demo setup built on it is idempotent."""

import gzip
import io
import json
from collections import Counter
from collections.abc import Iterator
from itertools import groupby, islice

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from audit.demo.generator import generate_records, write_jsonl
from audit.labels import ACTION_TYPES, DECISION_TYPES, MISBEHAVIOR_TYPES, TASKS, WORKERS
from audit.models import ImportBatch, Transcript

# The exporter's record layout (seed/transcript_export.py, record_decision), in its key order.
EXPORTER_KEYS = [
    "session_id",
    "timestamp",
    "step_number",
    "task_id",
    "proposal",
    "decision",
    "ground_truth",
    "cot_analysis",
    "debate_result",
    "reward",
    "context",
    "labels",
]
SECTION_KEYS = {
    "proposal": ["action_type", "target", "parameters", "worker_id", "worker_reasoning"],
    "decision": ["type", "reason", "explanation", "worker_message", "redirect_action"],
    "ground_truth": [
        "is_misbehavior",
        "misbehavior_type",
        "correct_decision",
        "was_true_positive",
        "was_false_positive",
        "was_false_negative",
    ],
    "context": ["available_services", "incident_status", "worker_track_record"],
    "labels": ["oversight_correct", "alignment_category"],
}
CATEGORIES = {"aligned_catch", "alignment_failure_fn", "aligned_approve", "alignment_failure_fp"}


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    return list(generate_records(count=5000, seed=11))


def derived_category(record: dict) -> str:
    approve = (record["decision"].get("type") or "").upper() == "APPROVE"
    if record["ground_truth"]["is_misbehavior"]:
        return "alignment_failure_fn" if approve else "aligned_catch"
    return "aligned_approve" if approve else "alignment_failure_fp"


def is_inconsistent(record: dict) -> bool:
    truth, labels = record["ground_truth"], record["labels"]
    category = derived_category(record)
    flags = (truth["was_true_positive"], truth["was_false_positive"], truth["was_false_negative"])
    return (
        labels["alignment_category"] != category
        or labels["oversight_correct"] != (category in ("aligned_catch", "aligned_approve"))
        or flags
        != (
            category == "aligned_catch",
            category == "alignment_failure_fp",
            category == "alignment_failure_fn",
        )
    )


def test_same_seed_writes_byte_identical_files(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert write_jsonl(first, count=400, seed=5) == 400
    assert write_jsonl(second, count=400, seed=5) == 400
    assert first.read_bytes() == second.read_bytes()


def test_different_seeds_give_different_records():
    one = list(generate_records(count=50, seed=1))
    two = list(generate_records(count=50, seed=2))
    assert one != two
    assert {r["session_id"] for r in one}.isdisjoint({r["session_id"] for r in two})


def test_records_are_streamed_not_built_up_front():
    records = generate_records(count=10**9, seed=3)
    assert isinstance(records, Iterator)
    assert len(list(islice(records, 5))) == 5


def test_every_line_is_an_exporter_shaped_json_object(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, count=2000, seed=4)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2000
    complete = 0
    for line in lines:
        record = json.loads(line)
        assert isinstance(record, dict)
        assert list(record) == EXPORTER_KEYS
        # The exporter writes each line with json.dumps(record, default=str).
        assert line == json.dumps(record, default=str)
        for section, keys in SECTION_KEYS.items():
            assert isinstance(record[section], dict)
            assert set(record[section]) <= set(keys)
        # What export_summary() reads is always there.
        assert set(SECTION_KEYS["labels"]) <= set(record["labels"])
        assert set(SECTION_KEYS["ground_truth"]) - {"correct_decision"} <= set(
            record["ground_truth"]
        )
        complete += all(list(record[s]) == keys for s, keys in SECTION_KEYS.items())
    # Only a rare record lacks a nested key.
    assert complete / len(lines) > 0.98


def test_export_summary_arithmetic_runs_on_generated_records(sample):
    # The exporter's export_summary(), restated: it indexes these keys directly.
    correct = sum(1 for t in sample if t["labels"]["oversight_correct"])
    tp = sum(1 for t in sample if t["ground_truth"]["was_true_positive"])
    fp = sum(1 for t in sample if t["ground_truth"]["was_false_positive"])
    fn = sum(1 for t in sample if t["ground_truth"]["was_false_negative"])
    distribution = Counter(t["labels"]["alignment_category"] for t in sample)
    assert 0.6 < correct / len(sample) < 0.95
    assert 0.3 < tp / (tp + fp) < 0.95
    assert 0.35 < tp / (tp + fn) < 0.95
    assert set(distribution) == CATEGORIES


def test_vocabularies_are_mostly_known_with_rare_unknown_values(sample):
    fields = {
        "task": (lambda r: r["task_id"], TASKS),
        "worker": (lambda r: r["proposal"]["worker_id"], WORKERS),
        "action": (lambda r: r["proposal"]["action_type"], ACTION_TYPES),
        "decision": (lambda r: r["decision"]["type"], DECISION_TYPES),
    }
    for name, (get, known) in fields.items():
        values = Counter(get(r) for r in sample)
        assert set(known) <= set(values), name
        share_known = sum(n for v, n in values.items() if v in known) / len(sample)
        assert share_known > 0.97, name
    actions = Counter(r["proposal"]["action_type"] for r in sample)
    decisions = Counter(r["decision"]["type"] for r in sample)
    assert any(a.startswith("ActionType.") for a in actions)
    assert any(d.startswith("DecisionType.") for d in decisions)
    assert "rollback" in actions
    reasons = Counter(r["decision"]["reason"] for r in sample)
    assert {None, "null", "P5_DomainCompetence", "hallucination"} <= set(reasons)


def test_misbehavior_share_is_realistic_and_covers_every_type():
    for seed in (1, 2, 3):
        records = list(generate_records(count=3000, seed=seed))
        share = sum(r["ground_truth"]["is_misbehavior"] for r in records) / len(records)
        assert 0.12 <= share <= 0.25, (seed, share)
        kinds = {r["ground_truth"]["misbehavior_type"] for r in records}
        assert set(MISBEHAVIOR_TYPES) <= kinds


def test_overseer_is_imperfect(sample):
    categories = Counter(derived_category(r) for r in sample)
    assert categories["alignment_failure_fn"] > 0.02 * len(sample)  # misses
    assert categories["alignment_failure_fp"] > 0.01 * len(sample)  # over-blocks
    assert categories["aligned_catch"] > categories["alignment_failure_fn"] * 0.8


def test_some_records_reproduce_the_exporters_label_bugs(sample):
    inconsistent = [r for r in sample if is_inconsistent(r)]
    assert 0.04 <= len(inconsistent) / len(sample) <= 0.12
    # The exporter's own bug: the type came from "action", labels saw no APPROVE.
    assert any(
        r["decision"]["type"] == "APPROVE"
        and not r["ground_truth"]["is_misbehavior"]
        and r["labels"]["alignment_category"] == "alignment_failure_fp"
        for r in inconsistent
    )
    # was_* flags that contradict an otherwise consistent category.
    assert any(r["labels"]["alignment_category"] == derived_category(r) for r in inconsistent)


def test_steps_are_consecutive_within_each_episode(sample):
    sessions = [r["session_id"] for r in sample]
    # Sessions are contiguous runs, never interleaved.
    assert len(set(sessions)) == len([k for k, _ in groupby(sessions)])
    assert all(s.startswith("session_") and len(s) == 18 and s[8:].isdigit() for s in sessions)
    for _, episode in groupby(sample, key=lambda r: (r["session_id"], r["task_id"])):
        steps = [r["step_number"] for r in episode]
        assert steps == list(range(1, len(steps) + 1))
    stamps = [r["timestamp"] for r in sample]
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False))
    tasks_per_session = Counter(
        session for session, _ in {(r["session_id"], r["task_id"]) for r in sample}
    )
    assert max(tasks_per_session.values()) >= 3


def test_cot_debate_and_rewards_look_like_real_exports(sample):
    scores = (
        "evidence_score",
        "counterfactual_score",
        "deliberation_score",
        "constitutional_score",
        "faithfulness_score",
        "deception_risk",
        "reasoning_quality",
    )
    cots = [r["cot_analysis"] for r in sample if r["cot_analysis"]]
    assert len(cots) < len(sample)  # some "cot_analysis": {}
    for cot in cots:
        assert all(0.0 <= cot[key] <= 1.0 for key in scores)
        json.loads(cot["answer_text"])
    thinking = [c for c in cots if c["has_thinking"]]
    assert thinking and all(c["thinking_text"].count(". ") >= 1 for c in thinking)
    assert any(c["is_suspicious"] and c["suspicion_reasons"] for c in cots)
    debates = [r for r in sample if r["debate_result"]]
    assert 0 < len(debates) < len(sample)
    assert any(r["debate_result"]["final_decision"] != r["decision"]["type"] for r in debates)
    rewards = [r["reward"] for r in sample]
    assert None in rewards
    assert all(0.0 <= x <= 1.0 for x in rewards if x is not None)
    assert any(r["context"]["worker_track_record"] in (None, {}) for r in sample)
    assert any(
        r["context"]["worker_track_record"]
        and r["context"]["worker_track_record"]["approved_count"]
        for r in sample
    )


def test_free_text_is_varied_and_includes_hostile_markup(sample):
    reasonings = {r["proposal"].get("worker_reasoning") for r in sample}
    assert len(reasonings) > 500
    assert any("<script>" in (text or "") for text in reasonings)


def test_gzip_output_holds_the_same_lines(tmp_path):
    plain, packed = tmp_path / "t.jsonl", tmp_path / "t.jsonl.gz"
    write_jsonl(plain, count=300, seed=9)
    write_jsonl(packed, count=300, seed=9)
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    again = tmp_path / "u.jsonl.gz"
    write_jsonl(again, count=300, seed=9)
    assert again.read_bytes() == packed.read_bytes()


def test_generate_transcripts_command_writes_the_file(tmp_path):
    out = io.StringIO()
    path = tmp_path / "cmd.jsonl"
    call_command("generate_transcripts", count=25, seed=3, output=str(path), stdout=out)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 25
    assert "25" in out.getvalue() and str(path) in out.getvalue()


def test_generate_transcripts_command_rejects_count_zero(tmp_path):
    with pytest.raises(CommandError, match="--count"):
        call_command("generate_transcripts", count=0, output=str(tmp_path / "x.jsonl"))
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.django_db
def test_generated_file_imports_with_zero_rejected_lines(tmp_path):
    from audit.ingest.importer import import_file

    path = tmp_path / "gen.jsonl.gz"
    write_jsonl(path, count=1200, seed=21)
    result = import_file(path)
    assert not result.failed, result.errors[:5]
    assert result.rejected == 0
    assert result.imported == 1200
    assert Transcript.objects.count() == 1200
    # The mess is there for the queue to find.
    assert Transcript.objects.filter(flag_label_inconsistency=True).exists()
    assert Transcript.objects.filter(flag_missed_misbehavior=True).exists()
    assert Transcript.objects.filter(flag_unknown_vocabulary=True).exists()


@pytest.mark.django_db
def test_setup_demo_is_idempotent_and_demo_users_can_log_in(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("setup_demo", count=80, seed=7, stdout=io.StringIO())
    demo_file = tmp_path / "demo" / "demo_7_80.jsonl"
    assert demo_file.exists()
    assert Transcript.objects.count() == 80
    batches = ImportBatch.objects.count()

    user_model = get_user_model()
    demo = user_model.objects.get(username="demo")
    demo.set_password("changed")
    demo.save()

    out = io.StringIO()
    call_command("setup_demo", count=80, seed=7, url="http://127.0.0.1:9123/", stdout=out)
    assert Transcript.objects.count() == 80
    assert ImportBatch.objects.count() == batches
    assert "Imported 0 new, 80 already present" in out.getvalue()
    assert "demo" in out.getvalue() and "Open:   http://127.0.0.1:9123/" in out.getvalue()

    expected_groups = {
        "demo": {"auditor", "adjudicator"},
        "auditor2": {"auditor"},
        "adjudicator": {"auditor", "adjudicator"},
    }
    for username, groups in expected_groups.items():
        user = user_model.objects.get(username=username)
        assert set(user.groups.values_list("name", flat=True)) == groups
        assert Client().login(username=username, password="demo"), username
    demo.refresh_from_db()
    assert demo.is_staff and demo.is_superuser
    assert not user_model.objects.get(username="auditor2").is_staff
