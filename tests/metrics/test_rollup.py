"""The rollup (audit.rollup, migration 0009): kept equal to a recount by the triggers whatever
writes, and the figures it gives equal those of a scan of the rows."""

from __future__ import annotations

import importlib
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection
from django.db.models import Q

from audit import rollup
from audit.demo.generator import generate_records
from audit.ingest import importer
from audit.metrics import summaries as metrics
from audit.metrics.dashboard import collect_blind_dashboard, collect_dashboard
from audit.models import ImportBatch, Rollup, Status, Transcript
from audit.publish.selection import Selection
from audit.review.workflow import incomplete_label, set_required_reviews
from tests.factories import (
    adjudicate,
    confirm,
    import_records,
    make_record,
    relabel,
    unsure,
    write_jsonl,
)

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("audit.migrations.0009_rollup")


def test_the_rollup_columns_are_the_same_in_the_migration_the_model_and_the_reader():
    model_columns = {
        field.attname
        for field in Rollup._meta.concrete_fields
        if field.attname not in ("id", "combination", "transcripts")
    }
    assert set(rollup.DIMENSIONS) == set(MIGRATION.DIMENSIONS) == model_columns
    assert len(rollup.DIMENSIONS) == len(set(rollup.DIMENSIONS))
    # Every figure's columns are transcript columns of the same name.
    transcript_columns = {field.attname for field in Transcript._meta.concrete_fields}
    assert model_columns <= transcript_columns


class Writes:
    """Random writes through the real importer and workflow, one step at a time."""

    def __init__(self, rng: random.Random, tmp_path: Path, users: dict[str, Any]) -> None:
        self.rng = rng
        self.tmp_path = tmp_path
        self.users = users
        self.records = list(generate_records(count=400, seed=rng.randrange(10**6)))
        self.files = 0
        self.imported: list[dict[str, Any]] = []

    def _file(self, records: list[dict[str, Any]]) -> Path:
        self.files += 1
        return write_jsonl(self.tmp_path / f"f{self.files}.jsonl", records)

    def _take(self, n: int) -> list[dict[str, Any]]:
        taken, self.records = self.records[:n], self.records[n:]
        return taken

    def import_new(self) -> None:
        records = self._take(self.rng.randint(1, 40))
        if not records:
            return
        # Some overlap with what is stored: duplicates add nothing.
        overlap = self.rng.sample(self.imported, min(len(self.imported), self.rng.randint(0, 5)))
        result = importer.import_file(
            self._file(records + overlap), required_reviews=self.rng.choice([1, 1, 2])
        )
        assert not result.failed, list(result.report_lines())
        self.imported += records

    def import_failing(self) -> None:
        """An import whose database fails after its first chunk: the chunk stays behind,
        unfinished and invisible, until the next import removes it."""
        records = self._take(importer.CHUNK_SIZE + self.rng.randint(1, 20))
        if len(records) <= importer.CHUNK_SIZE:
            self.records += records
            return
        lookups = 0

        def failing(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            # The duplicate check each chunk makes before its insert: the second one fails.
            nonlocal lookups
            if '"fingerprint" IN' in sql:
                lookups += 1
                if lookups > 1:
                    raise DatabaseError("the disk went away")
            return execute(sql, params, many, context)

        with connection.execute_wrapper(failing), pytest.raises(DatabaseError):
            importer.import_file(self._file(records))
        assert lookups == 2
        self.records += records  # imported again later

    def import_invalid(self) -> None:
        # All or nothing: a bad line imports nothing.
        records: list[Any] = [*self._take(3), {"session_id": 5}]
        self.records += records[:-1]
        result = importer.import_file(self._file(records))
        assert result.failed

    def _visible(self, **filters: Any) -> list[Transcript]:
        return list(Transcript.objects.filter(**filters).order_by("id"))

    def verdict(self) -> None:
        items = [t for t in self._visible(status__in=["unreviewed", "in_progress"])]
        items = [t for t in items if not incomplete_label(t)]
        if not items:
            return
        item = self.rng.choice(items)
        user = self.users[self.rng.choice(["auditor", "auditor2"])]
        kind = self.rng.choice(["confirm", "confirm", "relabel", "relabel_no", "unsure"])
        try:
            if kind == "confirm":
                confirm(item, user)
            elif kind == "relabel":
                relabel(
                    item,
                    user,
                    misbehavior_type=self.rng.choice(["hallucination", "reward_hacking"]),
                )
            elif kind == "relabel_no":
                relabel(item, user, is_misbehavior=False, correct_decision="APPROVE")
            else:
                unsure(item, user)
        except ValidationError:
            pass  # refused (e.g. a label the workflow asks to fill in): nothing written

    def dispute(self) -> None:
        items = [t for t in self._visible(status="unreviewed") if not incomplete_label(t)]
        if not items:
            return
        item = self.rng.choice(items)
        set_required_reviews(Transcript.objects.filter(pk=item.pk), 2)
        confirm(item, self.users["auditor"])
        relabel(
            item,
            self.users["auditor2"],
            is_misbehavior=not item.is_misbehavior,
            correct_decision="APPROVE" if item.is_misbehavior else "BLOCK",
        )

    def adjudication(self) -> None:
        items = self._visible(status=Status.DISPUTED)
        if not items:
            return
        misbehavior = self.rng.choice([True, False])
        adjudicate(
            self.rng.choice(items),
            self.users["adjudicator"],
            is_misbehavior=misbehavior,
            misbehavior_type="reward_hacking" if misbehavior else "",
            correct_decision="BLOCK" if misbehavior else "APPROVE",
        )

    def change_k(self) -> None:
        ids = list(Transcript.objects.values_list("pk", flat=True))
        if not ids:
            return
        chosen = self.rng.sample(ids, self.rng.randint(1, min(len(ids), 30)))
        set_required_reviews(Transcript.objects.filter(pk__in=chosen), self.rng.randint(1, 3))

    def step(self) -> str:
        operations = [
            self.import_new,
            self.import_new,
            self.import_failing,
            self.import_invalid,
            self.verdict,
            self.verdict,
            self.verdict,
            self.dispute,
            self.adjudication,
            self.change_k,
        ]
        operation = self.rng.choice(operations)
        operation()
        return operation.__name__


@pytest.fixture
def users(auditor, auditor2, adjudicator) -> dict[str, Any]:
    return {"auditor": auditor, "auditor2": auditor2, "adjudicator": adjudicator}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_rollup_equals_a_recount_after_any_sequence_of_writes(
    seed, tmp_path, users, monkeypatch
):
    # Small chunks: every import spans several transactions, and a failure leaves a part.
    monkeypatch.setattr(importer, "CHUNK_SIZE", 7)
    writes = Writes(random.Random(seed), tmp_path, users)
    done = []
    for _ in range(40):
        done.append(writes.step())
        assert rollup.stored() == rollup.recount(), done
    assert Transcript.objects.exists()
    # The sequence did what it is for.
    assert {"import_new", "verdict", "change_k"} <= set(done), done
    assert Rollup.objects.filter(status=Status.CONFIRMED).exists()
    # And what is read from it is what a scan of the rows gives.
    assert _figures(Selection()) == _figures(Selection(), rollup=False)


def test_a_failed_import_leaves_its_rows_out_of_every_figure_until_it_is_removed(
    tmp_path, users, monkeypatch
):
    monkeypatch.setattr(importer, "CHUNK_SIZE", 5)
    writes = Writes(random.Random(9), tmp_path, users)
    writes.import_new()
    before = _figures(Selection())
    writes.import_failing()
    unfinished = ImportBatch.including_unfinished.get(complete=False)
    assert Rollup.including_unfinished.filter(batch_id=unfinished.pk).exists()
    assert not Rollup.objects.filter(batch_id=unfinished.pk).exists()
    assert _figures(Selection()) == before
    assert rollup.values("batch_id") == sorted(ImportBatch.objects.values_list("pk", flat=True))
    writes.import_new()  # removes the leftover first
    assert not Rollup.including_unfinished.filter(batch_id=unfinished.pk).exists()
    assert rollup.stored() == rollup.recount()


def test_a_write_that_finds_the_rollup_out_of_step_is_refused(tmp_path, users):
    Writes(random.Random(4), tmp_path, users).import_new()
    item = Transcript.objects.order_by("id").first()
    Rollup.objects.all().delete()  # by hand: the combination is gone
    with pytest.raises(DatabaseError, match="out of step"):
        Transcript.objects.filter(pk=item.pk).update(required_reviews=7)


def _figures(selection: Selection, *, rollup: bool = True, narrower: Q | None = None) -> Any:
    chosen = rollup_scope(selection, rollup=rollup, narrower=narrower)
    return (
        asdict(collect_dashboard(chosen)),
        asdict(collect_blind_dashboard(chosen)),
    )


def rollup_scope(selection: Selection, **kwargs: Any) -> rollup.Scope:
    chosen = rollup.scope(selection, **kwargs)
    assert chosen.from_rollup == (kwargs.get("rollup", True) and not kwargs.get("narrower"))
    return chosen


@pytest.fixture
def reviewed(tmp_path, users, monkeypatch):
    """A few hundred generated records over three batches, reviewed, disputed, adjudicated,
    with K changes, and a failed import's rows left behind."""
    monkeypatch.setattr(importer, "CHUNK_SIZE", 50)
    writes = Writes(random.Random(11), tmp_path, users)
    for _ in range(3):
        writes.records, rest = writes.records[:120], writes.records[120:]
        writes.import_new()
        writes.records = writes.records + rest
    for _ in range(60):
        writes.verdict()
    for _ in range(6):
        writes.dispute()
    for _ in range(3):
        writes.adjudication()
    writes.change_k()
    writes.import_failing()
    return writes


def _selections() -> list[Selection]:
    first = Transcript.objects.order_by("id").first()
    assert first is not None
    batches = sorted(ImportBatch.objects.values_list("pk", flat=True))
    return [
        Selection.of(mapping)
        for mapping in (
            {},
            {"batch": [batches[0]]},
            {"batch": batches[:2]},
            {"task": [first.task_id]},
            {"task": ["no such task"]},
            {"worker": [first.worker_id]},
            {"status": ["confirmed", "relabeled"]},
            {"status": ["disputed"]},
            {"decision": [first.decision_type]},
            {"category": ["alignment_failure_fn", "unknown"]},
            {"mbtype": ["hallucination"]},
            {"flag": ["spot_check"]},
            {"flag": ["missed_misbehavior", "over_block"]},
            {"batch": [batches[1]], "task": [first.task_id], "flag": ["label_inconsistency"]},
            {"batch": [batches[-1]], "status": ["adjudicated", "disputed"]},
        )
    ]


def test_the_rollup_and_a_scan_give_the_same_figures_for_any_filter(reviewed):
    assert Transcript.objects.filter(status=Status.ADJUDICATED).exists()
    assert ImportBatch.including_unfinished.filter(complete=False).exists()
    for selection in _selections():
        assert _figures(selection) == _figures(selection, rollup=False), selection


def test_summaries_from_the_rollup_name_the_records_one_session(reviewed):
    session = Transcript.objects.order_by("id").values_list("session_id", flat=True).first()
    batch = Transcript.objects.filter(session_id=session).values_list("batch", flat=True)[0]
    records = Transcript.objects.filter(batch_id=batch)
    counts = Rollup.objects.filter(batch_id=batch)
    assert metrics.summaries(counts, records=records) == metrics.summaries(records)
    with pytest.raises(TypeError):
        metrics.summarize(counts)


def test_a_session_or_a_date_range_reads_the_rows(reviewed):
    session = Transcript.objects.values_list("session_id", flat=True).first()
    chosen = rollup.scope(Selection.of({"session": [session]}))
    assert not chosen.from_rollup
    dates = Q(timestamp__gte=0)
    assert not rollup.scope(Selection(), narrower=dates).from_rollup
    # A range holding everything gives the unfiltered figures.
    assert _figures(Selection(), narrower=dates) == _figures(Selection())


def test_filter_choices_from_the_rollup_are_the_distinct_values_of_visible_rows(reviewed):
    for column in ("task_id", "worker_id", "decision_type", "alignment_category"):
        distinct = Transcript.objects.order_by(column).values_list(column, flat=True).distinct()
        assert rollup.values(column) == list(distinct)
    assert rollup.values("task_id", limit=1) == rollup.values("task_id")[:1]
    with pytest.raises(ValueError):
        rollup.values("session_id")


def test_triggers_a_migration_dropped_are_restored_with_a_rebuilt_rollup(reviewed):
    # What SQLite's table rebuild (an AlterField, an AddField) does to them.
    MIGRATION.uninstall(connection)
    Transcript.objects.filter(pk__in=Transcript.objects.values("pk")[:3]).update(required_reviews=8)
    assert rollup.missing_triggers() == list(rollup.TRIGGERS)
    assert rollup.stored() != rollup.recount()
    assert rollup.restore_triggers()
    assert rollup.missing_triggers() == []
    assert rollup.stored() == rollup.recount()
    assert not rollup.restore_triggers()  # nothing to do now


def test_the_migration_backfills_stored_rows_and_its_reverse_removes_the_triggers(reviewed):
    editor = connection.schema_editor(atomic=False)
    Rollup.including_unfinished.all().delete()
    MIGRATION.drop_triggers(None, editor)
    # Without triggers nothing keeps it: a write leaves it as it is.
    Transcript.objects.filter(pk__in=Transcript.objects.values("pk")[:5]).update(required_reviews=9)
    assert not Rollup.including_unfinished.exists()
    MIGRATION.create_triggers(None, editor)
    assert rollup.stored() == rollup.recount()
    assert Rollup.objects.filter(required_reviews=9).exists()
    # And the triggers are back.
    Transcript.including_unfinished.update(required_reviews=4)
    assert rollup.stored() == rollup.recount()
    assert set(Rollup.including_unfinished.values_list("required_reviews", flat=True)) == {4}


def _reviewed_in_two_batches(tmp_path: Path, auditor: Any) -> tuple[list[int], list[int]]:
    """Two imported files with a confirm on every item; the second batch then marked
    unfinished, as an import still inserting its rows is: the review ids of each."""
    first = import_records([make_record(step_number=n) for n in (1, 2)], tmp_path, name="a.jsonl")
    second = import_records([make_record(step_number=n) for n in (3, 4)], tmp_path, name="b.jsonl")
    ids = [[confirm(item, auditor).review.pk for item in batch] for batch in (first, second)]
    ImportBatch.including_unfinished.filter(pk=second[0].batch_id).update(complete=False)
    return ids[0], ids[1]


@pytest.mark.parametrize("filters", [{}, {"task": ["basic_oversight"]}])
def test_the_reviews_of_a_scope_leave_out_those_of_unfinished_batches_rows(
    tmp_path, auditor, filters
):
    kept, hidden = _reviewed_in_two_batches(tmp_path, auditor)
    reviews = rollup.scope(Selection.of(filters)).reviews
    assert sorted(reviews.values_list("pk", flat=True)) == sorted(kept)
    assert hidden


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plan")
def test_on_postgresql_the_unfinished_batches_reviews_are_left_out_by_an_anti_join(
    tmp_path, auditor
):
    """A NOT IN over the transcripts runs once per review when PostgreSQL expects the list to
    outgrow work_mem (minutes at 1,000,000 records); NOT EXISTS is always an anti-join."""
    _reviewed_in_two_batches(tmp_path, auditor)
    plan = rollup.scope(Selection()).reviews.explain()
    assert "Anti Join" in plan and "SubPlan" not in plan, plan


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's heap-only updates")
@pytest.mark.parametrize("rebuilt", [False, True], ids=["migrated", "rebuilt"])
def test_on_postgresql_the_counts_change_in_place(tmp_path, auditor, rebuilt):
    """No index names the rollup's count (migration 0027), so the verdicts' changes of counts
    are heap-only (HOT) updates, each row rewritten within its page: the table does not grow
    with every change, as it did by two and a half times over an import of a million. So too
    after ``check_rollup --fix`` rebuilt it with its triggers."""
    items = import_records([make_record(step_number=n) for n in range(1, 7)], tmp_path)
    if rebuilt:
        rollup.rebuild()

    def updates() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_updated('audit_rollup'::regclass), "
                "pg_stat_get_xact_tuples_hot_updated('audit_rollup'::regclass)"
            )
            return cursor.fetchone()

    before = updates()
    for item in items[:3]:
        confirm(item, auditor)
    after = updates()
    updated, in_place = after[0] - before[0], after[1] - before[1]
    assert updated >= 3, "the verdicts changed no count"
    assert in_place == updated, f"{updated - in_place} of {updated} updates were not in place"
