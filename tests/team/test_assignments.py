"""Assignments (issue 11): how items are spread over the named auditors, K, what counts as done,
and "Next" serving an auditor's assignments first."""

from collections import Counter

import pytest
from django.contrib.auth.models import Group, User

from audit.models import Assignment, AssignmentTask, Lease, Status, Transcript
from audit.publish.selection import Selection
from audit.review import leases
from audit.team import assignments
from audit.team.assignments import assign, progress, progress_of
from tests.conftest import PASSWORD
from tests.factories import confirm, fresh, import_records, make_misbehavior, make_record, unsure

pytestmark = pytest.mark.django_db


def over_block(step: int) -> dict:
    return make_record(
        session_id="ob",
        step_number=step,
        decision={"type": "BLOCK"},
        labels={"oversight_correct": False, "alignment_category": "alignment_failure_fp"},
        ground_truth={"was_false_positive": True},
    )


@pytest.fixture
def work(tmp_path):
    """Four missed misbehaviors (high priority), four over-blocks (lower), two unflagged steps
    outside the queue."""
    records = [
        *(make_misbehavior(decision="APPROVE", session_id="mm", step_number=i) for i in range(4)),
        *(over_block(i) for i in range(4)),
        *(make_record(session_id="plain", step_number=i) for i in range(2)),
    ]
    rows = import_records(records, tmp_path)
    high, low, plain = rows[:4], rows[4:8], rows[8:]
    assert all(t.in_queue for t in high + low) and not any(t.in_queue for t in plain)
    assert min(t.priority for t in high) > max(t.priority for t in low)
    return high, low, plain


def make_auditor(name: str) -> User:
    user = User.objects.create_user(username=name, password=PASSWORD)
    user.groups.add(Group.objects.get(name="auditor"))
    return user


def by_auditor(a: Assignment) -> dict[int, assignments.Progress]:
    return {row.auditor.pk: row.progress for row in progress([a])[a.pk]}


def ids(rows) -> list[int]:
    return [t.pk for t in rows]


def of(rows) -> Transcript:
    return Transcript.objects.filter(pk__in=ids(rows))


def test_each_item_goes_to_k_auditors_and_shares_are_balanced(work, auditor, auditor2, staff_user):
    high, low, _ = work
    dave = make_auditor("dave")
    result = assign(
        of(high + low[:3]), auditors=[auditor, auditor2, dave], k=2, by=staff_user, name="cal"
    )
    assert (result.items, result.tasks, result.outside_queue) == (7, 14, 0)
    tasks = list(AssignmentTask.objects.filter(assignment=result.assignment))
    per_item = Counter(t.transcript_id for t in tasks)
    assert set(per_item.values()) == {2} and set(per_item) == set(ids(high + low[:3]))
    assert all(len({t.auditor_id for t in tasks if t.transcript_id == pk}) == 2 for pk in per_item)
    shares = Counter(t.auditor_id for t in tasks)
    assert sorted(shares.values()) == [4, 5, 5]  # 14 tasks over three: differ by at most one
    assert set(fresh(t).required_reviews for t in high + low[:3]) == {2}
    a = result.assignment
    assert (a.name, a.k, a.items, a.created_by) == ("cal", 2, 7, staff_user)


def test_k_above_the_auditors_gives_every_item_to_each_of_them(work, auditor, auditor2):
    high, _, _ = work
    result = assign(of(high), auditors=[auditor, auditor2], k=3, by=None, name="all of it")
    assert result.tasks == 8
    assert {fresh(t).required_reviews for t in high} == {3}
    # The duplicate name counts once.
    again = assign(of(high[:1]), auditors=[auditor, auditor], k=1, by=None, name="once")
    assert again.tasks == 1


def test_k_goes_through_the_workflow_so_raising_it_reopens_a_settled_item(work, auditor, auditor2):
    high, _, _ = work
    confirm(high[0], auditor2)
    assert fresh(high[0]).status == Status.CONFIRMED
    result = assign(of(high[:2]), auditors=[auditor, auditor2], k=2, by=None, name="recheck")
    assert fresh(high[0]).status == Status.IN_PROGRESS
    assert result.k_changed == 2


def test_items_outside_the_queue_are_left_out_and_counted(work, auditor):
    high, _, plain = work
    result = assign(of(high[:2] + plain), auditors=[auditor], k=1, by=None, name="mixed")
    assert (result.items, result.outside_queue) == (2, 2)
    assert "2 selected item(s) outside the review queue" in result.describe()
    assert not AssignmentTask.objects.filter(transcript__in=ids(plain)).exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"auditors": []}, "at least one auditor"),
        ({"k": 0}, "K must be a whole number of at least 1"),
        ({"k": 11}, "K must be at most 10"),
        ({"name": "  "}, "needs a name"),
        ({"name": "x" * 201}, "longer than 200"),
    ],
)
def test_bad_input_is_refused_naming_the_problem(work, auditor, kwargs, message):
    high, _, _ = work
    arguments = {"auditors": [auditor], "k": 1, "by": None, "name": "n", **kwargs}
    with pytest.raises(ValueError, match=message):
        assign(of(high), **arguments)
    assert not Assignment.objects.exists()


def test_a_user_without_the_auditor_role_and_empty_selections_are_refused(
    work, auditor, plain_user
):
    high, _, plain = work
    with pytest.raises(ValueError, match="'pat' does not have the auditor role"):
        assign(of(high), auditors=[auditor, plain_user], k=1, by=None, name="n")
    with pytest.raises(ValueError, match="the selection is empty"):
        assign(Transcript.objects.none(), auditors=[auditor], k=1, by=None, name="n")
    with pytest.raises(ValueError, match="none of the 2 selected transcript"):
        assign(of(plain), auditors=[auditor], k=1, by=None, name="n")
    assert not Assignment.objects.exists() and not AssignmentTask.objects.exists()


def test_select_samples_queued_items_reproducibly(work):
    high, low, _ = work
    chosen = Selection.of({})
    first = list(assignments.select(chosen, sample=3, seed=7).values_list("pk", flat=True))
    again = list(assignments.select(chosen, sample=3, seed=7).values_list("pk", flat=True))
    assert first == again and len(first) == 3 and set(first) <= set(ids(high + low))
    by_session = assignments.select(Selection.of({"session": ["ob"]}))
    assert set(by_session.values_list("pk", flat=True)) == set(ids(low))


# --- progress ----------------------------------------------------------------------------------


def test_done_needs_a_verdict_of_ones_own_and_unsure_is_not_one(work, auditor, auditor2):
    high, _, _ = work
    a = assign(of(high[:2]), auditors=[auditor, auditor2], k=2, by=None, name="p").assignment
    assert by_auditor(a)[auditor.pk] == assignments.Progress(total=2)
    unsure(high[0], auditor)
    assert progress_of(auditor, [a])[a.pk].done == 0
    confirm(high[1], auditor)
    mine = progress_of(auditor, [a])[a.pk]
    assert (mine.total, mine.done, mine.settled_without, mine.open) == (2, 1, 0, 1)
    assert by_auditor(a)[auditor2.pk].done == 0


def test_an_item_settled_or_disputed_without_the_auditor_stops_waiting_for_them(
    work, auditor, auditor2, adjudicator
):
    high, _, _ = work
    a = assign(of(high[:2]), auditors=[auditor], k=1, by=None, name="p").assignment
    confirm(high[0], auditor2)  # settled by someone else
    mine = progress_of(auditor, [a])[a.pk]
    assert (mine.done, mine.settled_without, mine.open, mine.finished) == (0, 1, 1, 1)
    Transcript.objects.filter(pk=high[1].pk).update(status=Status.DISPUTED)
    assert progress_of(auditor, [a])[a.pk].settled_without == 2


# --- "Next" ---------------------------------------------------------------------------------------


def test_next_serves_the_auditors_assignment_before_higher_priority_work(work, auditor):
    high, low, _ = work
    assign(of(low[2:]), auditors=[auditor], k=1, by=None, name="low ones")
    assert leases.claim_next(auditor).pk == low[2].pk
    confirm(low[2], auditor)
    assert leases.claim_next(auditor).pk == low[3].pk
    confirm(low[3], auditor)
    assert leases.claim_next(auditor).pk == high[0].pk  # assignment done: back to the queue


def test_next_keeps_the_auditors_own_lease_first(work, auditor):
    high, low, _ = work
    assert leases.reserve(fresh(high[1]), auditor=auditor) is not None
    assign(of(low[:1]), auditors=[auditor], k=1, by=None, name="a")
    assert leases.claim_next(auditor).pk == high[1].pk


def test_next_serves_assigned_items_within_its_filters_and_skips(work, auditor):
    high, low, _ = work
    assign(of([high[3], low[0], low[1]]), auditors=[auditor], k=1, by=None, name="a")
    # Next order within the assignment: priority first.
    assert leases.claim_next(auditor, skip=[]).pk == high[3].pk
    Lease.objects.all().delete()
    assert leases.claim_next(auditor, skip=[high[3].pk]).pk == low[0].pk
    Lease.objects.all().delete()
    # A filter that leaves no assigned item: the general order under it.
    assert leases.claim_next(auditor, filters={"session_id": "mm"}, skip=[high[3].pk]).pk == (
        high[0].pk
    )
    Lease.objects.all().delete()
    assert leases.claim_next(auditor, filters={"session_id": "ob"}).pk == low[0].pk


def test_next_reads_assigned_items_chunk_by_chunk_past_taken_ones(
    work, auditor, auditor2, monkeypatch
):
    high, low, _ = work
    monkeypatch.setattr(leases, "_LISTED_CHUNK", 1)
    assign(of(low), auditors=[auditor], k=1, by=None, name="a")
    assert leases.reserve(fresh(low[0]), auditor=auditor2) is not None  # K = 1: full
    confirm(low[1], auditor2)  # settled
    assert leases.claim_next(auditor).pk == low[2].pk


def test_items_assigned_to_others_come_after_unassigned_work(work, auditor, auditor2):
    high, low, _ = work
    assign(of(high), auditors=[auditor2], k=1, by=None, name="bobs")
    # Alice gets the unassigned over-blocks first, though bob's items rank higher...
    served = []
    for _ in low:
        item = leases.claim_next(auditor)
        served.append(item.pk)
        confirm(item, auditor)
    assert served == ids(low)
    # ...and bob's, in Next order, once nothing else is left: nothing waits forever.
    assert leases.claim_next(auditor).pk == high[0].pk


def test_an_others_item_they_reviewed_is_ordered_as_usual(work, auditor, auditor2):
    high, low, _ = work
    assign(of(high[:1]), auditors=[auditor2], k=2, by=None, name="bobs")
    confirm(high[0], auditor2)  # bob's task is done; K = 2 leaves room for one more
    assert leases.claim_next(auditor).pk == high[0].pk
