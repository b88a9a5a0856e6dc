"""The item page's "N left for you" over the whole queue comes from the rollup less the
viewer's own reviewed items in it (issue 14: no count of the queue's rows per verdict); it must
equal counting the rows, whatever reviews, K changes and adjudications came before."""

import random

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from audit.models import Review, Status, Transcript
from audit.review.queue import QueueFilters, progress, reviews_today
from audit.review.workflow import set_required_reviews
from tests.factories import adjudicate, confirm, fresh, import_records, make_record, relabel, unsure

pytestmark = pytest.mark.django_db


def counted(viewer, **lookups) -> int:
    """The open queued items (meeting ``lookups``) ``viewer`` has no current review of,
    counted row by row."""
    mine = Review.objects.current().filter(auditor=viewer).values("transcript")
    return Transcript.objects.in_queue().open().filter(**lookups).exclude(pk__in=mine).count()


def left(viewer, filters: QueueFilters | None = None) -> int:
    item = Transcript.objects.in_queue().first()
    return progress(filters, item=item, viewer=viewer).left


def test_left_matches_a_recount_after_random_work(tmp_path, auditor, auditor2, adjudicator):
    records = [
        make_record(step_number=n, decision={"type": "BLOCK"}, session_id=f"s{n % 4}")
        for n in range(1, 25)
    ]
    import_records(records, tmp_path)
    queued = list(Transcript.objects.in_queue().order_by("pk"))
    assert len(queued) >= 10
    rng = random.Random(14)
    saved = 0
    for step in range(60):
        item = fresh(rng.choice(queued))
        who = rng.choice([auditor, auditor2])
        action = rng.randrange(5)
        try:
            if action == 0 and item.is_open:
                confirm(item, who)
            elif action == 1 and item.is_open:
                relabel(item, who, is_misbehavior=False, correct_decision="BLOCK", rationale="r")
            elif action == 2 and item.is_open:
                unsure(item, who)
            elif action == 3:
                set_required_reviews(Transcript.objects.filter(pk=item.pk), rng.choice([1, 2, 3]))
            elif item.status == Status.DISPUTED:
                adjudicate(item, adjudicator)
            else:
                continue
            saved += 1
        except ValidationError:  # refused (already reviewed by them, K reached): nothing saved
            continue
        for viewer in (auditor, auditor2, adjudicator):
            assert left(viewer) == counted(viewer), (step, viewer.username)
            # Under a filter "Next" keeps to: counted from the rows, less the viewer's.
            in_s1 = left(viewer, QueueFilters(session="s1"))
            assert in_s1 == counted(viewer, session_id="s1"), (step, viewer.username)
    assert saved >= 20
    assert counted(auditor) < len(queued)  # the work reached the figure


@pytest.mark.parametrize("probed", [0, 5000])
def test_left_counts_alike_from_the_items_in_progress_and_from_the_reviews(
    monkeypatch, tmp_path, auditor, auditor2, probed
):
    """The viewer's reviewed items are found among the queue's items in progress, or (past
    ``IN_PROGRESS_PROBED`` of them) from the viewer's reviews: the same count either way."""
    from audit.review import queue

    monkeypatch.setattr(queue, "IN_PROGRESS_PROBED", probed)
    records = [make_record(step_number=n, decision={"type": "BLOCK"}) for n in range(1, 13)]
    import_records(records, tmp_path)
    queued = list(Transcript.objects.in_queue().order_by("pk"))
    set_required_reviews(Transcript.objects.filter(pk__in=[t.pk for t in queued[:8]]), 2)
    for item in queued[:5]:
        confirm(fresh(item), auditor)
    unsure(fresh(queued[5]), auditor)
    confirm(fresh(queued[6]), auditor2)
    confirm(fresh(queued[9]), auditor)  # K = 1: settled, out of the queue's open items
    assert Transcript.objects.filter(status=Status.IN_PROGRESS).count() == 7
    for viewer in (auditor, auditor2):
        assert left(viewer) == counted(viewer), viewer.username
    assert left(auditor) == len(queued) - 7


def test_the_reviews_of_today_are_counted_from_index_rv_auditor_alone(tmp_path, auditor):
    """The progress line's "N reviews today", on every item page and verdict: its columns are
    all in ``rv_auditor`` (at a million records, 50,000 of one auditor's reviews read from the
    table took 15 ms of the page, where PostgreSQL reads the index alone). At a few rows the
    planner would as soon read the table, by any index, so here it may only read an index
    alone: with a column ``rv_auditor`` lacks, it could not."""
    [item] = import_records([make_record()], tmp_path)
    unsure(item, auditor)
    assert reviews_today(auditor).count() == 1
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for scan in ("seqscan", "indexscan", "bitmapscan"):
                cursor.execute(f"SET LOCAL enable_{scan} = off")
        plan = reviews_today(auditor).order_by().values("created_at").explain()
    if connection.vendor == "postgresql":
        assert "Index Only Scan using rv_auditor" in plan, plan
    else:
        assert "COVERING INDEX rv_auditor" in plan, plan
