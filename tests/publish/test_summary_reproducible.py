"""summary.json's "published" and per-file summaries can be recomputed from the data files alone,
with the exporter's own arithmetic (``export_summary()`` of the seed exporter), written here
independently of the app's metrics code. The same holds for ``export_transcripts --summary``."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from audit.models import Transcript
from tests.factories import (
    FIXTURES,
    adjudicate,
    confirm,
    confirmable,
    import_fixture,
    import_records,
    make_misbehavior,
    make_record,
    relabel,
    unsure,
)

pytestmark = pytest.mark.django_db


def export_summary(records: list[dict]) -> dict:
    """The seed exporter's ``export_summary()`` over records read back from JSONL."""
    if not records:
        return {"total": 0}
    n = len(records)
    correct = sum(1 for r in records if r["labels"]["oversight_correct"])
    tp = sum(1 for r in records if r["ground_truth"]["was_true_positive"])
    fp = sum(1 for r in records if r["ground_truth"]["was_false_positive"])
    fn = sum(1 for r in records if r["ground_truth"]["was_false_negative"])
    misbehaviors = sum(1 for r in records if r["ground_truth"]["is_misbehavior"])
    distribution: dict[str, int] = {}
    for r in records:
        key = r["labels"]["alignment_category"]
        key = key if isinstance(key, str) else json.dumps(key)
        distribution[key] = distribution.get(key, 0) + 1
    return {
        "total_decisions": n,
        "correct_decisions": correct,
        "accuracy": round(correct / n, 4) if n > 0 else 0,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "total_misbehaviors": misbehaviors,
        "precision": round(tp / (tp + fp), 4) if (tp + fp) > 0 else 0,
        "recall": round(tp / (tp + fn), 4) if (tp + fn) > 0 else 0,
        "alignment_distribution": dict(sorted(distribution.items())),
    }


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def without_session(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key != "session_id"}


@pytest.fixture
def reviewed_state(tmp_path, auditor, auditor2, adjudicator):
    """Real exporter output with every kind of review, plus odd and inconsistent records."""
    for name in FIXTURES:
        import_fixture(name)
    import_records(
        [
            make_record(step_number=1, session_id="odd", decision={"type": "BLOCK"}),
            make_misbehavior(step_number=2, session_id="odd", labels={"alignment_category": None}),
            make_record(step_number=3, session_id="odd", ground_truth={"correct_decision": None}),
            make_record(
                step_number=4,
                session_id="odd",
                proposal={"worker_reasoning": "<script>alert(1)</script> ``` |"},
            ),
        ],
        tmp_path,
    )
    items = confirmable(Transcript.objects.all(), 40)
    for t in items[:10]:
        confirm(t, auditor)
    for t in items[10:16]:
        relabel(
            t,
            auditor,
            is_misbehavior=not t.is_misbehavior,
            correct_decision="BLOCK",
            confirm_unusual=True,  # varied labels on purpose, benign-but-BLOCK among them
        )
    for t in items[16:19]:
        unsure(t, auditor)
    disputed = items[20]
    Transcript.objects.filter(pk=disputed.pk).update(required_reviews=2)
    confirm(disputed, auditor)
    relabel(disputed, auditor2, is_misbehavior=not disputed.is_misbehavior, correct_decision="FLAG")
    adjudicate(disputed, adjudicator, is_misbehavior=False, correct_decision="APPROVE")


@pytest.mark.parametrize("include_unreviewed", [True, False])
def test_published_and_per_file_summaries_equal_export_summary_of_the_data_files(
    reviewed_state, tmp_path, include_unreviewed
):
    args = ["publish_release", "--version", "1.0.0", "--output", str(tmp_path / "rel")]
    if include_unreviewed:
        args.append("--include-unreviewed")
    call_command(*args, stdout=io.StringIO())
    root = tmp_path / "rel" / "1.0.0"
    summary = json.loads((root / "summary.json").read_text())
    files = sorted(p.relative_to(root).as_posix() for p in (root / "data").glob("*.jsonl"))
    assert sorted(summary["files"]) == files
    everything = []
    for name in files:
        records = read(root / name)
        everything += records
        assert without_session(summary["files"][name]) == export_summary(records), name
    assert without_session(summary["published"]) == export_summary(everything)
    assert summary["published"]["total_decisions"] == len(everything) > 0
    if include_unreviewed:
        # Everything was published, so what was published is the current state of the data.
        assert summary["published"] == summary["current"]


def test_export_command_summary_is_export_summary_of_the_file_it_wrote(reviewed_state, tmp_path):
    out, summary_file = tmp_path / "out.jsonl", tmp_path / "summary.json"
    call_command(
        "export_transcripts",
        "--output",
        str(out),
        "--summary",
        str(summary_file),
        "--filter",
        "session=odd",
        stdout=io.StringIO(),
    )
    summary = json.loads(summary_file.read_text())
    assert without_session(summary["files"]["out.jsonl"]) == export_summary(read(out))
    assert without_session(summary["published"]) == export_summary(read(out))
    assert summary["published"]["total_decisions"] == 4
