"""``manage.py assign`` (issue 11): making an assignment from the command line, listing them with
progress, and its errors naming the problem."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import Assignment, AssignmentTask
from tests.factories import confirm, fresh, import_records, make_misbehavior, make_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(tmp_path):
    records = [
        *(make_misbehavior(decision="APPROVE", session_id="mm", step_number=i) for i in range(4)),
        make_record(session_id="plain", step_number=1),
    ]
    return import_records(records, tmp_path)


def run(*args: str) -> str:
    out = StringIO()
    call_command("assign", *args, stdout=out)
    return out.getvalue()


def test_assign_makes_the_assignment_and_sets_k(items, auditor, auditor2):
    out = run("--name", "cal", "--to", "alice,bob", "--k", "2", "--session", "mm")
    a = Assignment.objects.get()
    assert f"Assignment #{a.pk} 'cal': 4 item(s), 8 task(s), K = 2" in out
    assert (a.k, a.items, a.selection, a.sample, a.seed, a.created_by) == (
        2,
        4,
        {"session": ["mm"]},
        None,
        None,
        None,
    )
    assert {fresh(t).required_reviews for t in items[:4]} == {2}


def test_a_sample_is_recorded_with_its_seed_and_json_is_machine_readable(items, auditor):
    out = run("--name", "s", "--to", "alice", "--k", "1", "--sample", "2", "--seed", "9", "--json")
    entry = json.loads(out)
    assert (entry["items"], entry["sample"], entry["seed"], entry["k"]) == (2, 2, 9, 1)
    assert entry["tasks"] == {"total": 2, "done": 0, "settled_without": 0, "open": 2}
    assert entry["outside_queue"] == 0
    again = run("--name", "s2", "--to", "alice", "--k", "1", "--sample", "2", "--seed", "9")
    assert "2 item(s)" in again
    first, second = Assignment.objects.order_by("pk")
    assert set(first.tasks.values_list("transcript", flat=True)) == set(
        second.tasks.values_list("transcript", flat=True)
    )


def test_list_shows_progress_per_auditor(items, auditor, auditor2):
    run("--name", "cal", "--to", "alice,bob", "--k", "1", "--filter", "session=mm")
    task = AssignmentTask.objects.filter(auditor=auditor).first()
    confirm(task.transcript, auditor)
    out = run("--list")
    assert "cal (K = 1): 4 item(s), 1 of them settled; tasks: 1 of 4 done" in out
    assert "alice: 1 of 2 task(s) done, 0 settled without them, 1 open" in out
    assert "bob: 0 of 2 task(s) done" in out
    (entry,) = json.loads(run("--list", "--json"))
    assert entry["auditors"]["alice"]["done"] == 1 and entry["settled_items"] == 1


def test_list_says_when_there_are_none(db):
    assert run("--list").strip() == "No assignments."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "alice", "--k", "1", "--all"], "missing --name"),
        (["--name", "n", "--to", "alice", "--k", "1"], "choose a selection"),
        (["--name", "n", "--to", "zed,alice", "--k", "1", "--all"], "unknown user(s): zed"),
        (["--name", "n", "--to", "pat", "--k", "1", "--all"], "'pat' does not have the auditor"),
        (["--name", "n", "--to", "alice", "--k", "0", "--all"], "K must be a whole number"),
        (["--name", "n", "--to", "alice", "--k", "1", "--session", "none"], "selection is empty"),
        (["--name", "n", "--to", "alice", "--k", "1", "--session", "plain"], "review queue"),
        (["--name", "n", "--to", "alice", "--k", "1", "--filter", "flag=nope"], "unknown flag"),
        (["--name", "n", "--to", "alice", "--k", "1", "--batch", "999"], "no import batch #999"),
        (["--name", "n", "--to", "alice", "--k", "1", "--sample", "0"], "at least 1 item"),
    ],
)
def test_errors_name_the_problem(items, auditor, plain_user, args, message):
    with pytest.raises(CommandError) as raised:
        run(*args)
    assert message in str(raised.value)
    assert not Assignment.objects.exists()
