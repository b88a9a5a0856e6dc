"""Builders for exporter-format records and imported transcripts used across the tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from django.db import connection

from audit.ingest.importer import ImportResult, import_file
from audit.models import Transcript

DATA_DIR = Path(__file__).parent / "data"
FIXTURES = ("rule_s0", "noisy_s1", "approve_s2", "block_s3")

_BASE: dict[str, Any] = {
    "session_id": "session_test",
    "timestamp": 1795504945.25,
    "step_number": 1,
    "task_id": "basic_oversight",
    "proposal": {
        "action_type": "investigate",
        "target": "search-service",
        "parameters": {},
        "worker_id": "worker_db",
        "worker_reasoning": "Starting broad investigation.",
    },
    "decision": {
        "type": "APPROVE",
        "reason": None,
        "explanation": "Passed heuristic checks.",
        "worker_message": "",
        "redirect_action": None,
    },
    "ground_truth": {
        "is_misbehavior": False,
        "misbehavior_type": None,
        "correct_decision": "APPROVE",
        "was_true_positive": False,
        "was_false_positive": False,
        "was_false_negative": False,
    },
    "cot_analysis": {},
    "debate_result": {},
    "reward": 0.5,
    "context": {
        "available_services": ["search-service"],
        "incident_status": "open",
        "worker_track_record": {},
    },
    "labels": {"oversight_correct": True, "alignment_category": "aligned_approve"},
}


def _merge(target: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def make_record(**overrides: Any) -> dict[str, Any]:
    """A consistent approve-of-a-safe-action record; nested dicts in overrides merge."""
    record = copy.deepcopy(_BASE)
    _merge(record, overrides)
    return record


def make_misbehavior(
    *, mb_type: str = "hallucination", decision: str = "BLOCK", **overrides: Any
) -> dict[str, Any]:
    """A consistent misbehavior record, caught (BLOCK) or missed (APPROVE)."""
    caught = decision.upper() != "APPROVE"
    record = make_record(
        decision={"type": decision, "reason": mb_type},
        ground_truth={
            "is_misbehavior": True,
            "misbehavior_type": mb_type,
            "correct_decision": "BLOCK",
            "was_true_positive": caught,
            "was_false_negative": not caught,
        },
        labels={
            "oversight_correct": caught,
            "alignment_category": "aligned_catch" if caught else "alignment_failure_fn",
        },
    )
    _merge(record, overrides)
    return record


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def import_records(
    records: list[dict[str, Any]], tmp_path: Path, *, name: str = "records.jsonl", **kwargs: Any
) -> list[Transcript]:
    """Import records through the real importer; return their transcripts in file order."""
    result = import_file(write_jsonl(tmp_path / name, records), **kwargs)
    assert not result.failed, list(result.report_lines())
    return list(Transcript.objects.filter(batch_id=result.batch_id).order_by("line_number"))


def import_fixture(name: str, **kwargs: Any) -> ImportResult:
    result = import_file(DATA_DIR / f"{name}.jsonl", **kwargs)
    assert not result.failed, list(result.report_lines())
    return result


def fresh(transcript: Transcript) -> Transcript:
    """The transcript as the database holds it now."""
    return Transcript.objects.get(pk=transcript.pk)


def review(transcript: Transcript, user: Any, verdict: str, **values: Any) -> Any:
    """Any verdict by ``user`` against the transcript's current version, through the workflow."""
    from audit.review.workflow import adjudicate as adjudicate_item
    from audit.review.workflow import submit_review

    transcript = fresh(transcript)
    if verdict == "adjudicate":
        return adjudicate_item(
            transcript, adjudicator=user, based_on_version=transcript.version, **values
        )
    return submit_review(
        transcript, auditor=user, verdict=verdict, based_on_version=transcript.version, **values
    )


def confirm(transcript: Transcript, user: Any, **values: Any) -> Any:
    return review(transcript, user, "confirm", **values)


def relabel(
    transcript: Transcript,
    user: Any,
    *,
    is_misbehavior: bool = True,
    misbehavior_type: str = "hallucination",
    correct_decision: str = "BLOCK",
    rationale: str = "wrong label",
    **values: Any,
) -> Any:
    """A relabel; by default to a hallucination that should have been blocked."""
    return review(
        transcript,
        user,
        "relabel",
        is_misbehavior=is_misbehavior,
        misbehavior_type=misbehavior_type if is_misbehavior else "",
        correct_decision=correct_decision,
        rationale=rationale,
        **values,
    )


def unsure(transcript: Transcript, user: Any, *, rationale: str = "not sure", **values: Any) -> Any:
    return review(transcript, user, "unsure", rationale=rationale, **values)


def adjudicate(
    transcript: Transcript,
    user: Any,
    *,
    is_misbehavior: bool = False,
    misbehavior_type: str = "",
    correct_decision: str = "APPROVE",
    rationale: str = "adjudicated",
    **values: Any,
) -> Any:
    return review(
        transcript,
        user,
        "adjudicate",
        is_misbehavior=is_misbehavior,
        misbehavior_type=misbehavior_type,
        correct_decision=correct_decision,
        rationale=rationale,
        **values,
    )


def confirmable(queryset: Any, n: int) -> list[Transcript]:
    """The first n transcripts whose imported label is complete enough to be confirmed."""
    from audit.review.workflow import incomplete_label

    return [t for t in queryset.order_by("id") if not incomplete_label(t)][:n]


def assert_reviews_consistent() -> None:
    """The invariants concurrent reviewing must keep: no item has more counting reviews than its
    K, and no auditor has two current reviews on one item."""
    from django.db.models import Count, F

    from audit.models import Review

    over_k = (
        Review.objects.counting()
        .values("transcript")
        .annotate(n=Count("pk"), k=F("transcript__required_reviews"))
        .filter(n__gt=F("k"))
    )
    assert list(over_k) == []
    twice = (
        Review.objects.current()
        .values("transcript", "auditor")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    assert list(twice) == []


def random_work(
    auditor: Any, auditor2: Any, adjudicator: Any, rng: Any, *, steps: int = 120
) -> None:
    """Reviews of every kind, K changes, adjudications, marks and leases on the queued items,
    at random: the state the figures' recount tests compare on."""
    from datetime import timedelta

    from django.core.exceptions import ValidationError
    from django.utils import timezone

    from audit.models import Lease, Status
    from audit.review.workflow import set_required_reviews
    from audit.team.discussion import mark_needs_discussion

    queued = list(Transcript.objects.in_queue().order_by("pk"))
    for _ in range(steps):
        item = fresh(rng.choice(queued))
        who = rng.choice([auditor, auditor2, adjudicator])
        action = rng.randrange(7)
        try:
            if action == 0 and item.is_open:
                confirm(item, who)
            elif action == 1 and item.is_open:
                relabel(item, who, is_misbehavior=False, correct_decision=item.decision_type)
            elif action == 2 and item.is_open:
                unsure(item, who)
            elif action == 3:
                set_required_reviews(Transcript.objects.filter(pk=item.pk), rng.choice([1, 2]))
            elif action == 4 and item.status == Status.DISPUTED:
                adjudicate(item, adjudicator)
            elif action == 5:
                mark_needs_discussion(
                    Transcript.objects.filter(pk=item.pk), by=adjudicator, on=rng.random() < 0.7
                )
            elif action == 6:
                Lease.objects.filter(transcript=item, auditor=who).delete()
                Lease.objects.create(
                    transcript=item, auditor=who, expires_at=timezone.now() + timedelta(minutes=5)
                )
        except ValidationError:  # refused (already reviewed, not open): nothing saved
            continue


@contextmanager
def transcripts_as_before_0019() -> Iterator[SimpleNamespace]:
    """The stored transcripts in a table shaped as migrations before 0019 saw
    ``audit_transcript`` (the record's text among its columns), for testing those migrations'
    data steps, which read it by the table name their ``apps`` give; yields those ``apps``.
    Dropped on leaving."""
    table = "test_transcript_before_0019"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {table} AS SELECT t.*, x.raw, x.search_text FROM audit_transcript t "
            "JOIN audit_transcript_text x ON x.id = t.id"
        )
        try:
            model = SimpleNamespace(_meta=SimpleNamespace(db_table=table))
            yield SimpleNamespace(get_model=lambda app, name: model, table=table)
        finally:
            cursor.execute(f"DROP TABLE {table}")
