"""Leases (audit.review.leases): "Next" claims, skips and expiry, reserving an item on open, and
the two room rules (``claimable`` in SQL for "Next", ``has_room`` in Python for an opened item)
checked against each other."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import Lease, Status, Transcript
from audit.review import leases
from audit.review.workflow import current_reviews, set_required_reviews
from tests.factories import confirm, fresh, import_records, make_misbehavior, relabel

pytestmark = pytest.mark.django_db


# --- "Next" -----------------------------------------------------------------------------------


def test_claim_next_takes_the_highest_priority_first(items, auditor):
    claimed = leases.claim_next(auditor)
    top = Transcript.objects.in_queue().order_by("-priority", "pk").first()
    assert claimed.pk == top.pk
    assert Lease.objects.filter(transcript=claimed, auditor=auditor).exists()


def test_claim_next_returns_the_auditors_own_lease_again(items, auditor):
    first = leases.claim_next(auditor)
    assert leases.claim_next(auditor).pk == first.pk
    assert Lease.objects.filter(auditor=auditor).count() == 1


def test_two_auditors_get_different_items_with_k1(items, auditor, auditor2):
    a = leases.claim_next(auditor)
    b = leases.claim_next(auditor2)
    assert a is not None and b is not None
    assert a.pk != b.pk


def test_two_auditors_share_an_item_that_needs_two_reviews(items, auditor, auditor2, adjudicator):
    set_required_reviews(Transcript.objects.all(), 2)
    a = leases.claim_next(auditor)
    b = leases.claim_next(auditor2)
    assert a.pk == b.pk
    c = leases.claim_next(adjudicator)
    assert c.pk != a.pk


def test_expired_lease_frees_the_item(items, auditor, auditor2):
    Transcript.objects.exclude(pk=items[0].pk).update(in_queue=False)
    a = leases.claim_next(auditor)
    assert leases.claim_next(auditor2) is None
    Lease.objects.filter(transcript=a).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert leases.claim_next(auditor2).pk == a.pk


def test_skip_releases_the_lease(items, auditor, auditor2):
    Transcript.objects.exclude(pk=items[0].pk).update(in_queue=False)
    a = leases.claim_next(auditor)
    assert leases.release_lease(a, auditor=auditor) == 1
    assert leases.claim_next(auditor, skip=[a.pk]) is None
    assert leases.claim_next(auditor2).pk == a.pk


def test_submitting_removes_the_lease_and_the_item_is_not_handed_out_again(items, auditor):
    a = leases.claim_next(auditor)
    confirm(a, auditor)
    assert not Lease.objects.filter(auditor=auditor).exists()
    b = leases.claim_next(auditor)
    assert b is not None and b.pk != a.pk


def test_claim_next_never_hands_out_an_item_the_auditor_reviewed(items, auditor):
    set_required_reviews(Transcript.objects.all(), 2)
    for transcript in items:
        confirm(transcript, auditor)
    assert leases.claim_next(auditor) is None


def test_claim_next_skips_disputed_and_settled_items(items, auditor, auditor2, adjudicator):
    set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    confirm(items[0], auditor)
    relabel(items[0], auditor2, is_misbehavior=False, correct_decision="APPROVE")
    assert fresh(items[0]).status == Status.DISPUTED
    seen = set()
    while (claimed := leases.claim_next(adjudicator)) is not None:
        seen.add(claimed.pk)
        confirm(claimed, adjudicator)
    assert items[0].pk not in seen


def test_claim_next_respects_filters(items, auditor):
    claimed = leases.claim_next(auditor, filters={"step_number": 3})
    assert claimed.pk == items[2].pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_hand_out_different_items(tmp_path):
    import threading

    from django.contrib.auth import get_user_model
    from django.db import connections

    import_records(
        [make_misbehavior(decision="APPROVE", step_number=step) for step in range(1, 9)], tmp_path
    )
    users = [get_user_model().objects.create(username=f"racer{n}") for n in range(6)]
    claimed: list[int | None] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(users))

    def work(user):
        try:
            start.wait()
            item = leases.claim_next(user)
            claimed.append(item.pk if item else None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert None not in claimed
    assert len(set(claimed)) == len(users)
    assert Lease.objects.count() == len(users)


def _queued(tmp_path, n: int) -> list[Transcript]:
    """n queued items (missed misbehaviors, one priority), in "Next" order."""
    import_records(
        [make_misbehavior(decision="APPROVE", step_number=step) for step in range(n)], tmp_path
    )
    return list(Transcript.objects.in_queue().order_by("-priority", "pk"))


def _lease(transcript, user, minutes: int = 10) -> Lease:
    return Lease.objects.create(
        transcript=transcript, auditor=user, expires_at=timezone.now() + timedelta(minutes=minutes)
    )


@pytest.mark.django_db(transaction=True)
def test_claim_next_searches_with_no_transaction_open_and_writes_only_the_claimed_row(
    tmp_path, auditor, auditor2
):
    """D3: the search is a plain read (on SQLite a write transaction is the database's one
    write lock); the write transaction after it touches the row it claims and nothing else."""
    from django.db import connection

    queued = _queued(tmp_path, 6)
    for transcript in queued[:3]:  # the search has to walk past others' leases
        _lease(transcript, auditor2)
    statements: list[tuple[bool, str, tuple]] = []

    def record(execute, sql, params, many, context):
        statements.append((connection.in_atomic_block, sql, tuple(params or ())))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        claimed = leases.claim_next(auditor)
        again = leases.claim_next(auditor)  # the auditor's own lease comes back
    assert claimed.pk == again.pk == queued[3].pk
    queries = [
        (inside, sql, params)
        for inside, sql, params in statements
        if sql.lstrip().split()[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE")
    ]
    searches = [sql for inside, sql, _ in queries if '"priority" DESC' in sql]
    assert searches and all(not inside for inside, sql, _ in queries if '"priority" DESC' in sql), (
        "the search ran inside a write transaction"
    )
    written = [(sql, params) for inside, sql, params in queries if inside]
    assert written, "the lease was not taken in a transaction"
    for sql, params in written:
        assert claimed.pk in params, f"the write transaction read or wrote more than one row: {sql}"


@pytest.mark.parametrize("taken", [10, 12])
def test_claim_next_keeps_looking_while_others_take_the_items_it_finds(
    taken, tmp_path, auditor, auditor2, monkeypatch
):
    """D4: each item the search finds is taken by another auditor before this one's claim
    re-checks it (here 10 or all 12 times, more than the 8 tries "Next" used to give up
    after). "Next" goes on to the following item, and says there is nothing left only when
    the read finds nothing claimable."""
    queued = _queued(tmp_path, 12)
    real = leases.claimable
    calls: list[int] = []
    stolen: list[int] = []

    def contended(who, now):
        calls.append(1)
        if len(calls) > 1 and len(stolen) < taken:  # a re-check: someone is faster
            best = real(who, timezone.now()).order_by("-priority", "pk").first()
            _lease(best, auditor2)
            stolen.append(best.pk)
        return real(who, now)

    monkeypatch.setattr(leases, "claimable", contended)
    claimed = leases.claim_next(auditor)
    assert stolen == [t.pk for t in queued[: len(stolen)]]
    if taken < len(queued):
        assert claimed is not None and claimed.pk == queued[taken].pk
    else:
        assert claimed is None
        assert not real(auditor, timezone.now()).exists()  # nothing was left indeed
    assert len(calls) <= len(queued) + 2  # one re-check per row at most: it never spins


def test_claim_next_hands_out_items_in_priority_order_across_open_statuses(
    items, auditor, auditor2
):
    """Items needing more reviews (in progress) and unreviewed ones are searched one status at a
    time, and merged: the order is priority, then id, whatever the status."""
    set_required_reviews(Transcript.objects.all(), 2)
    confirm(items[1], auditor2)  # in progress now, still open to alice
    expected = list(
        Transcript.objects.in_queue().open().order_by("-priority", "pk").values_list("pk", "status")
    )
    assert {status for _, status in expected} == {Status.UNREVIEWED, Status.IN_PROGRESS}
    handed = []
    while (claimed := leases.claim_next(auditor)) is not None:
        handed.append((claimed.pk, claimed.status))
        confirm(claimed, auditor)
    assert handed == expected


def test_the_search_walks_the_tr_next_index_in_order(items, auditor):
    """One status at a time, the query reads ``tr_next`` (in_queue, status, -priority, id) in
    order and stops at the first row with room: no sort of every open row (a two-value
    ``status IN`` cannot use the index order on PostgreSQL)."""
    from django.db import connection, transaction

    candidates = leases.claimable(auditor, timezone.now())
    for after in (None, (items[0].priority, items[0].pk)):
        query = leases.in_next_order(candidates, status=Status.UNREVIEWED, after=after)
        query = query.values_list("priority", "pk")[:1]
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # A few rows make any plan cheap; forbid the alternatives to see what is used.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL enable_seqscan = off")
                    cursor.execute("SET LOCAL enable_bitmapscan = off")
                    cursor.execute("SET LOCAL enable_sort = off")
            plan = query.explain()
        assert "tr_next" in plan, plan
        assert "TEMP B-TREE FOR ORDER BY" not in plan and "Sort" not in plan, plan


# --- reserving on open ----------------------------------------------------------------------------


def test_opening_reserves_an_item_with_room_when_the_auditor_holds_no_other_lease(
    items, auditor, auditor2
):
    t = fresh(items[0])
    assert leases.has_room(t, auditor=auditor, reviews=[], leases=leases.live_leases(t))
    lease = leases.reserve(t, auditor=auditor)
    assert lease is not None and lease.transcript_id == t.pk
    # K = 1 and alice holds it: no room for bob.
    assert not leases.has_room(t, auditor=auditor2, reviews=[], leases=leases.live_leases(t))
    assert leases.reserve(t, auditor=auditor2) is None
    assert leases.claim_next(auditor2, filters={"pk": t.pk}) is None


def test_opening_an_item_keeps_the_lease_next_handed_out(items, auditor, auditor2):
    claimed = leases.claim_next(auditor, filters={"pk": items[1].pk})
    assert claimed.pk == items[1].pk
    t = fresh(items[0])
    assert leases.has_room(t, auditor=auditor, reviews=[], leases=leases.live_leases(t))
    assert leases.reserve(t, auditor=auditor) is None  # browsing does not move the lease
    held = Lease.objects.filter(auditor=auditor).values_list("transcript_id", flat=True)
    assert list(held) == [items[1].pk]
    assert leases.claim_next(auditor2, filters={"pk": items[1].pk}) is None


def test_a_lease_on_an_item_settled_meanwhile_does_not_block_reserving(items, auditor, auditor2):
    leases.claim_next(auditor, filters={"pk": items[1].pk})
    Transcript.objects.filter(pk=items[1].pk).update(status=Status.CONFIRMED)  # settled by others
    assert leases.reserve(fresh(items[0]), auditor=auditor) is not None


def test_opening_an_item_replaces_the_auditors_expired_lease_on_it(items, auditor):
    Lease.objects.create(
        transcript=items[0], auditor=auditor, expires_at=timezone.now() - timedelta(seconds=1)
    )
    lease = leases.reserve(fresh(items[0]), auditor=auditor)
    assert lease is not None and lease.expires_at > timezone.now()
    assert Lease.objects.filter(auditor=auditor).count() == 1


def test_opening_an_item_outside_the_queue_reserves_nothing(items, auditor):
    Transcript.objects.filter(pk=items[0].pk).update(in_queue=False)
    t = fresh(items[0])
    assert not leases.has_room(t, auditor=auditor, reviews=[], leases=[])
    assert leases.reserve(t, auditor=auditor) is None
    assert not Lease.objects.exists()


def test_opening_an_item_that_needs_two_reviews_reserves_it_for_two(
    items, auditor, auditor2, adjudicator
):
    set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    t = fresh(items[0])
    assert leases.reserve(t, auditor=auditor) is not None
    assert leases.reserve(t, auditor=auditor2) is not None
    assert leases.reserve(t, auditor=adjudicator) is None


def test_opening_a_settled_or_reviewed_item_reserves_nothing(items, auditor, auditor2):
    confirm(items[0], auditor)
    t = fresh(items[0])
    current = list(current_reviews(t))
    assert not leases.has_room(t, auditor=auditor, reviews=current, leases=[])
    assert not leases.has_room(t, auditor=auditor2, reviews=current, leases=[])
    assert leases.reserve(t, auditor=auditor2) is None


# --- the twins: has_room (Python) and claimable (SQL) agree -----------------------------------

# What happens to a fresh queued item (a missed misbehavior) before alice asks for room on it:
# ("lease", who, minutes until it expires; negative: expired), ("confirm", who),
# ("relabel", who) as no misbehavior, or ("unqueue",).
ROOM = [
    # case, K, what happens first, whether alice has room
    ("K=1, untouched", 1, [], True),
    ("K=2, untouched", 2, [], True),
    ("K=1, other's live lease", 1, [("lease", "bob", 10)], False),
    ("K=1, other's expired lease", 1, [("lease", "bob", -1)], True),
    ("K=2, other's live lease", 2, [("lease", "bob", 10)], True),
    ("K=2, two others' live leases", 2, [("lease", "bob", 10), ("lease", "carol", 10)], False),
    ("K=2, others' live, expired lease", 2, [("lease", "bob", 10), ("lease", "carol", -1)], True),
    ("K=2, other's counting review", 2, [("confirm", "bob")], True),
    ("K=2, other's review, lease", 2, [("confirm", "bob"), ("lease", "carol", 10)], False),
    ("K=2, own counting review", 2, [("confirm", "alice")], False),
    ("K=2, own revised counting review", 2, [("relabel", "alice"), ("confirm", "alice")], False),
    ("K=1, settled by another", 1, [("confirm", "bob")], False),
    ("K=1, settled by own review", 1, [("confirm", "alice")], False),
    ("K=2, disputed", 2, [("confirm", "bob"), ("relabel", "carol")], False),
    ("K=1, not in queue", 1, [("unqueue",)], False),
    ("K=2, not in queue", 2, [("unqueue",)], False),
]  # fmt: skip


def happen(t, step, users) -> None:
    action, *args = step
    if action == "lease":
        who, minutes = args
        expires_at = timezone.now() + timedelta(minutes=minutes)
        Lease.objects.create(transcript=t, auditor=users[who], expires_at=expires_at)
    elif action == "confirm":
        confirm(t, users[args[0]])
    elif action == "relabel":
        relabel(t, users[args[0]], is_misbehavior=False, correct_decision="APPROVE")
    elif action == "unqueue":
        Transcript.objects.filter(pk=t.pk).update(in_queue=False)
    else:
        raise ValueError(step)


@pytest.mark.parametrize(
    ("k", "steps", "expected"), [case[1:] for case in ROOM], ids=[case[0] for case in ROOM]
)
def test_has_room_and_claimable_agree(k, steps, expected, tmp_path, auditor, auditor2, adjudicator):
    users = {"alice": auditor, "bob": auditor2, "carol": adjudicator}
    [t] = import_records([make_misbehavior(decision="APPROVE")], tmp_path)
    assert t.in_queue
    set_required_reviews(Transcript.objects.filter(pk=t.pk), k)
    for step in steps:
        happen(t, step, users)
    t = fresh(t)
    room = leases.has_room(
        t, auditor=auditor, reviews=list(current_reviews(t)), leases=leases.live_leases(t)
    )
    claimable = leases.claimable(auditor, timezone.now()).filter(pk=t.pk).exists()
    assert (room, claimable) == (expected, expected)
