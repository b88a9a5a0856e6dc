"""Fixtures of the review tests: three flagged items for the domain tests (workflow, leases,
visibility), and the episode the screen tests browse, with its queued steps and a disputed one.
(test_commands.py keeps its own ``items``.)"""

import pytest

from audit.models import Status, Transcript
from audit.review.workflow import set_required_reviews
from tests.factories import confirm, fresh, import_records, make_misbehavior, make_record, relabel
from tests.review.pages import episode


@pytest.fixture
def items(tmp_path):
    """Three queued items: a missed misbehavior (highest priority), an over-block, a caught one
    whose labels contradict the decision."""
    records = [
        make_misbehavior(mb_type="reward_hacking", decision="APPROVE", step_number=1),
        make_record(
            step_number=2,
            decision={"type": "BLOCK"},
            labels={"oversight_correct": False, "alignment_category": "alignment_failure_fp"},
            ground_truth={"was_false_positive": True},
        ),
        make_misbehavior(step_number=3, labels={"alignment_category": "aligned_approve"}),
    ]
    return import_records(records, tmp_path)


@pytest.fixture
def steps(tmp_path):
    """The six steps of one episode (``pages.episode``), in order; steps 1, 3, 5 are queued."""
    return import_records(episode(6), tmp_path)


@pytest.fixture
def queued(steps):
    return [t for t in steps if t.in_queue]


@pytest.fixture
def disputed(queued, auditor, auditor2):
    """queued[0] with K = 2: alice confirms, bob relabels it as no misbehavior."""
    transcript = queued[0]
    set_required_reviews(Transcript.objects.filter(pk=transcript.pk), 2)
    confirm(transcript, auditor)
    relabel(
        transcript,
        auditor2,
        is_misbehavior=False,
        correct_decision="APPROVE",
        rationale="bob thinks the retry is legitimate",
    )
    t = fresh(transcript)
    assert t.status == Status.DISPUTED
    return t
