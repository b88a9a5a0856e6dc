"""Discussion per item (audit.team.discussion): append-only comments and their edit history, the
"needs discussion" mark and its history, and who may read a thread
(``visibility.may_read_discussion``) for each role and state."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.models import (
    COMMENT_MAX_LENGTH,
    AppendOnlyError,
    Comment,
    CommentRevision,
    DiscussionMark,
    Status,
    Transcript,
)
from audit.review import visibility
from audit.review.workflow import set_required_reviews
from audit.team import discussion
from tests.conftest import _make_user
from tests.factories import (
    adjudicate,
    confirm,
    fresh,
    import_records,
    make_misbehavior,
    make_record,
    relabel,
    unsure,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(tmp_path):
    """Four queued items, K = 2 on each (so one verdict leaves them open)."""
    records = [
        make_misbehavior(mb_type="reward_hacking", decision="APPROVE", step_number=n)
        for n in range(1, 5)
    ]
    transcripts = import_records(records, tmp_path)
    set_required_reviews(Transcript.objects.filter(pk__in=[t.pk for t in transcripts]), 2)
    return [fresh(t) for t in transcripts]


# --- comments: append-only, edits keep history -----------------------------------------------


def test_a_comment_stores_its_text_as_first_revision(items, auditor):
    comment = discussion.add_comment(items[0], author=auditor, text="  Look at step 3.  \n")
    [shown] = discussion.thread(items[0])
    assert shown.id == comment.pk
    assert shown.text == "Look at step 3."
    assert shown.author_id == auditor.pk and shown.author_name == "alice"
    assert not shown.edited and shown.earlier == ()
    assert list(CommentRevision.objects.values_list("number", "text")) == [(1, "Look at step 3.")]


def test_comments_and_revisions_cannot_be_changed_or_deleted(items, auditor):
    comment = discussion.add_comment(items[0], author=auditor, text="first")
    revision = CommentRevision.objects.get(comment=comment)
    with pytest.raises(AppendOnlyError):
        comment.save()
    with pytest.raises(AppendOnlyError):
        comment.delete()
    revision.text = "rewritten"
    with pytest.raises(AppendOnlyError):
        revision.save()
    with pytest.raises(AppendOnlyError):
        revision.delete()
    assert CommentRevision.objects.get().text == "first"


def test_an_edit_adds_a_revision_and_keeps_the_earlier_text(items, auditor):
    comment = discussion.add_comment(items[0], author=auditor, text="the retry is fine")
    discussion.edit_comment(comment, author=auditor, text="the retry is NOT fine", based_on=1)
    discussion.edit_comment(comment, author=auditor, text="unsure about the retry", based_on=2)
    [shown] = discussion.thread(items[0])
    assert shown.text == "unsure about the retry"
    assert shown.edited
    assert [r.text for r in shown.earlier] == ["the retry is fine", "the retry is NOT fine"]
    assert [r.number for r in shown.earlier] == [1, 2]
    assert Comment.objects.count() == 1 and CommentRevision.objects.count() == 3


def test_only_the_author_edits(items, auditor, auditor2):
    comment = discussion.add_comment(items[0], author=auditor, text="mine")
    with pytest.raises(discussion.DiscussionError, match="Only its author"):
        discussion.edit_comment(comment, author=auditor2, text="hijacked", based_on=1)
    assert CommentRevision.objects.count() == 1


def test_a_stale_edit_is_refused(items, auditor):
    comment = discussion.add_comment(items[0], author=auditor, text="one")
    discussion.edit_comment(comment, author=auditor, text="two", based_on=1)
    with pytest.raises(discussion.StaleComment, match="edited meanwhile"):
        discussion.edit_comment(comment, author=auditor, text="three", based_on=1)
    assert [r.text for r in CommentRevision.objects.order_by("number")] == ["one", "two"]


def test_an_unchanged_edit_is_refused(items, auditor):
    comment = discussion.add_comment(items[0], author=auditor, text="same")
    with pytest.raises(discussion.DiscussionError, match="unchanged"):
        discussion.edit_comment(comment, author=auditor, text=" same ", based_on=1)


def test_two_revisions_with_one_number_cannot_both_land(items, auditor):
    comment = discussion.add_comment(items[0], author=auditor, text="one")
    with pytest.raises(IntegrityError), transaction.atomic():
        CommentRevision.objects.create(comment=comment, number=1, text="racing")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "cannot be empty"),
        ("   \n\t ", "only white space"),
        ("x" * (COMMENT_MAX_LENGTH + 1), f"at most {COMMENT_MAX_LENGTH:,} characters"),
        ("a\x00b", "NUL"),
        (None, "must be text"),
    ],
)
def test_bad_comment_text_is_refused_with_the_reason(items, auditor, text, problem):
    with pytest.raises(discussion.DiscussionError, match=problem):
        discussion.add_comment(items[0], author=auditor, text=text)
    assert not Comment.objects.exists()


def test_the_longest_comment_is_kept_whole(items, auditor):
    discussion.add_comment(items[0], author=auditor, text="y" * COMMENT_MAX_LENGTH)
    assert len(CommentRevision.objects.get().text) == COMMENT_MAX_LENGTH


def test_threads_are_in_time_order_and_per_item(items, auditor, auditor2):
    discussion.add_comment(items[0], author=auditor, text="a1")
    discussion.add_comment(items[1], author=auditor, text="b1")
    later = discussion.add_comment(items[0], author=auditor2, text="a2")
    discussion.add_comment(items[0], author=auditor, text="a3")
    discussion.edit_comment(later, author=auditor2, text="a2 edited", based_on=1)
    assert [c.text for c in discussion.thread(items[0])] == ["a1", "a2 edited", "a3"]
    with CaptureQueriesContext(connection) as queries:
        threads = discussion.threads_for([items[0].pk, items[1].pk, items[2].pk])
    assert len(queries) == 1
    assert [c.text for c in threads[items[0].pk]] == ["a1", "a2 edited", "a3"]
    assert [c.text for c in threads[items[1].pk]] == ["b1"]
    assert items[2].pk not in threads


# --- the mark --------------------------------------------------------------------------------


def marked() -> set[int]:
    return set(
        Transcript.objects.filter(discussion.needs_discussion_q()).values_list("pk", flat=True)
    )


def test_mark_and_clear_count_what_changed_and_keep_history(items, auditor, adjudicator):
    qs = Transcript.objects.filter(pk__in=[items[0].pk, items[1].pk])
    assert discussion.mark_needs_discussion(qs, by=auditor) == 2
    assert marked() == {items[0].pk, items[1].pk}
    # Marking again changes nothing; marking a superset counts only the new one.
    assert discussion.mark_needs_discussion(qs, by=adjudicator) == 0
    wider = Transcript.objects.filter(pk__in=[items[0].pk, items[2].pk])
    assert discussion.mark_needs_discussion(wider, by=adjudicator) == 1
    assert marked() == {items[0].pk, items[1].pk, items[2].pk}
    first = discussion.open_mark(items[0])
    assert first is not None and first.set_by == auditor
    # Clearing.
    assert discussion.mark_needs_discussion(qs, by=adjudicator, on=False) == 2
    assert discussion.mark_needs_discussion(qs, by=adjudicator, on=False) == 0
    assert marked() == {items[2].pk}
    assert discussion.open_mark(items[0]) is None
    # Marked again: a new row; the cleared one stays, with who cleared it.
    assert discussion.mark_needs_discussion(qs.filter(pk=items[0].pk), by=adjudicator) == 1
    history = discussion.mark_history(items[0])
    assert [(m.set_by, m.cleared_by, m.is_open) for m in history] == [
        (auditor, adjudicator, False),
        (adjudicator, None, True),
    ]
    assert history[0].cleared_at is not None and history[0].cleared_at >= history[0].set_at
    assert DiscussionMark.objects.count() == 4


def test_a_mark_cannot_be_deleted_or_changed_except_by_clearing(items, auditor):
    discussion.mark_needs_discussion(Transcript.objects.filter(pk=items[0].pk), by=auditor)
    mark = DiscussionMark.objects.get()
    with pytest.raises(AppendOnlyError):
        mark.delete()
    mark.set_by = auditor
    with pytest.raises(AppendOnlyError):
        mark.save()


def test_one_open_mark_per_item(items, auditor):
    discussion.mark_needs_discussion(Transcript.objects.filter(pk=items[0].pk), by=auditor)
    with pytest.raises(IntegrityError), transaction.atomic():
        DiscussionMark.objects.create(transcript=items[0], set_by=auditor)


def test_mark_takes_a_few_queries_whatever_the_number_of_items(tmp_path, auditor):
    records = [make_record(step_number=n, session_id="many") for n in range(1, 41)]
    import_records(records, tmp_path)
    qs = Transcript.objects.filter(session_id="many")
    with CaptureQueriesContext(connection) as queries:
        assert discussion.mark_needs_discussion(qs, by=auditor) == 40
    # The unmarked ids, one INSERT (40 < MARK_CHUNK), and the transaction's bookkeeping.
    data = [q for q in queries.captured_queries if not _bookkeeping(q["sql"])]
    assert len(data) == 2, [q["sql"] for q in data]
    with CaptureQueriesContext(connection) as queries:
        assert discussion.mark_needs_discussion(qs, by=auditor, on=False) == 40
    data = [q for q in queries.captured_queries if not _bookkeeping(q["sql"])]
    assert len(data) == 1, [q["sql"] for q in data]


def test_mark_inserts_in_chunks(tmp_path, auditor, monkeypatch):
    monkeypatch.setattr(discussion, "MARK_CHUNK", 3)
    import_records([make_record(step_number=n, session_id="few") for n in range(1, 8)], tmp_path)
    qs = Transcript.objects.filter(session_id="few")
    with CaptureQueriesContext(connection) as queries:
        assert discussion.mark_needs_discussion(qs, by=auditor) == 7
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 3
    assert len(marked()) == 7


def _bookkeeping(sql: str) -> bool:
    return sql.split()[0].upper() in ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT")


def test_needs_discussion_q_is_an_id_subquery_of_open_marks(items, auditor):
    sql = str(Transcript.objects.filter(discussion.needs_discussion_q()).query)
    assert "IN (SELECT" in sql.upper()
    assert "audit_discussionmark" in sql and "cleared_at" in sql


def test_needs_discussion_q_combines_with_other_filters(items, auditor):
    discussion.mark_needs_discussion(Transcript.objects.filter(pk=items[0].pk), by=auditor)
    assert not Transcript.objects.filter(discussion.needs_discussion_q(), pk=items[1].pk).exists()
    assert Transcript.objects.exclude(discussion.needs_discussion_q()).count() == len(items) - 1


# --- who may read others' comments -----------------------------------------------------------


def may_read(transcript, viewer):
    reviews = list(fresh(transcript).reviews.all())
    return visibility.may_read_discussion(
        fresh(transcript), viewer, reviewed=visibility.gave_verdict(viewer, reviews)
    )


def test_an_auditor_is_blind_until_their_own_verdict(items, auditor, auditor2):
    confirm(items[0], auditor)
    assert may_read(items[0], auditor)
    assert not may_read(items[0], auditor2)
    unsure(items[0], auditor2)  # an unsure is not a verdict
    assert not may_read(items[0], auditor2)
    relabel(items[0], auditor2, is_misbehavior=False, correct_decision="APPROVE")
    assert may_read(items[0], auditor2)


def test_a_settled_item_stays_blind_to_an_auditor_who_did_not_review_it(items, auditor, request):
    # As its final labels are: raising K can still hand the item to them, and the comments say
    # how its reviewers decided.
    set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 1)
    confirm(items[0], auditor)
    assert fresh(items[0]).is_settled
    newcomer = _make_user(request, "nina", groups=["auditor"])
    assert not may_read(items[0], newcomer)
    set_required_reviews(Transcript.objects.filter(pk=items[0].pk), 2)
    relabel(fresh(items[0]), newcomer, is_misbehavior=False, correct_decision="APPROVE")
    assert may_read(items[0], newcomer)


def test_auditor_roles_are_blind_on_open_items_staff_and_adjudicators_too(
    items, auditor, adjudicator, staff_user
):
    confirm(items[0], auditor)
    # carol (auditor + adjudicator) and sam (staff, auditor, adjudicator) review items too.
    assert not may_read(items[0], adjudicator)
    assert not may_read(items[0], staff_user)


def test_staff_and_adjudicators_without_the_auditor_role_read_everything(
    items, auditor, lead, pure_adjudicator
):
    confirm(items[0], auditor)
    assert fresh(items[0]).status == Status.IN_PROGRESS
    assert may_read(items[0], lead)
    assert may_read(items[0], pure_adjudicator)


def test_adjudicators_read_items_in_adjudication(items, auditor, auditor2, adjudicator):
    confirm(items[0], auditor)
    relabel(items[0], auditor2, is_misbehavior=False, correct_decision="APPROVE")
    assert fresh(items[0]).status == Status.DISPUTED
    assert may_read(items[0], adjudicator)
    adjudicate(items[0], adjudicator)
    assert fresh(items[0]).status == Status.ADJUDICATED
    assert may_read(items[0], adjudicator)


def test_a_disputed_item_stays_blind_to_an_auditor_who_did_not_review_it(
    items, auditor, auditor2, request
):
    confirm(items[0], auditor)
    relabel(items[0], auditor2, is_misbehavior=False, correct_decision="APPROVE")
    outsider = _make_user(request, "otto", groups=["auditor"])
    assert not may_read(items[0], outsider)


def test_a_blind_viewer_sees_only_their_own_comments(items, auditor, auditor2):
    discussion.add_comment(items[0], author=auditor, text="alice's view")
    discussion.add_comment(items[0], author=auditor2, text="bob's view")
    comments = discussion.thread(items[0])
    shown = visibility.readable_comments(comments, auditor2, may_read=False)
    assert [c.text for c in shown] == ["bob's view"]
    assert len(visibility.readable_comments(comments, auditor2, may_read=True)) == 2


# --- the export's review block -----------------------------------------------------------------


def test_the_export_carries_comments_with_pseudonyms_and_history(items, auditor, auditor2):
    import json

    from audit.publish import export as exporters

    first = discussion.add_comment(items[0], author=auditor, text="<b>hostile</b> first")
    discussion.edit_comment(first, author=auditor, text="first, edited", based_on=1)
    discussion.add_comment(items[0], author=auditor2, text="second")
    discussion.mark_needs_discussion(Transcript.objects.filter(pk=items[0].pk), by=auditor2)
    records = {
        r["step_number"]: r["review"]
        for r in map(json.loads, exporters.iter_lines(Transcript.objects.all(), chunk_size=2))
    }
    block = records[items[0].step_number]
    assert block["needs_discussion"] is True
    assert [c["text"] for c in block["comments"]] == ["first, edited", "second"]
    one, two = block["comments"]
    assert one["author"] == exporters.pseudonym(auditor.pk)
    assert two["author"] == exporters.pseudonym(auditor2.pk)
    assert one["edited"] is True and two["edited"] is False
    assert [h["text"] for h in one["history"]] == ["<b>hostile</b> first"]
    assert set(one) == {"author", "created_at", "text", "edited", "history"}
    assert set(one["history"][0]) == {"text", "created_at"}
    assert one["created_at"] <= two["created_at"]
    # No name, no user id anywhere in the block.
    text = json.dumps(block)
    assert "alice" not in text and "bob" not in text
    other = records[items[1].step_number]
    assert other["comments"] == [] and other["needs_discussion"] is False
    # A record exported on its own says the same.
    alone = exporters.export_record(fresh(items[0]))["review"]
    assert alone["comments"] == block["comments"] and alone["needs_discussion"] is True


def test_a_cleared_mark_exports_as_false(items, auditor):
    from audit.publish import export as exporters

    qs = Transcript.objects.filter(pk=items[0].pk)
    discussion.mark_needs_discussion(qs, by=auditor)
    discussion.mark_needs_discussion(qs, by=auditor, on=False)
    [record] = exporters.iter_records(qs)
    assert record["review"]["needs_discussion"] is False


def test_export_reads_comments_once_per_chunk(tmp_path, auditor, auditor2):
    from audit.publish import export as exporters

    transcripts = import_records(
        [make_record(step_number=n, session_id="chunks") for n in range(1, 13)], tmp_path
    )
    for t in transcripts:
        discussion.add_comment(t, author=auditor, text=f"on {t.step_number}")
    discussion.edit_comment(
        Comment.objects.order_by("id").first(), author=auditor, text="edited", based_on=1
    )
    qs = Transcript.objects.filter(session_id="chunks")
    with CaptureQueriesContext(connection) as queries:
        records = list(exporters.iter_records(qs, chunk_size=4))
    comment_reads = [q for q in queries.captured_queries if "audit_commentrevision" in q["sql"]]
    # Three chunks: three reads of comments, whatever the number of comments or revisions.
    assert len(comment_reads) == 3
    # The rows (one query, read a chunk at a time), their batch once, and per chunk its
    # comments: nothing per record, and no read of reviews, which no item has.
    assert len(queries) == 1 + 1 + 3
    assert [len(r["review"]["comments"]) for r in records] == [1] * 12
