"""The selection vocabulary (audit.publish.selection): parsing, errors, what it selects, the
admin changelist mapping, JSON selections for tasks and the commands' options."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import MAX_ID, Transcript, parse_id
from audit.publish.selection import (
    Selection,
    SelectionError,
    from_changelist,
    from_options,
    records,
)
from tests.factories import import_records, make_record


def test_pairs_parse_sorted_and_cleaned():
    selection = Selection.parse(["task=b", "task=a", "decision=block", "flag=spot_check"])
    assert selection.as_dict() == {
        "decision": ["BLOCK"],
        "flag": ["spot_check"],
        "task": ["a", "b"],
    }


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("task", "not key=value"),
        ("task=", "not key=value"),
        ("colour=red", "unknown filter 'colour'; use one of: batch, category"),
        ("flag=nope", "unknown flag 'nope'"),
        ("status=done", "unknown status 'done'"),
        ("batch=x", "batch must be an import batch id"),
        # More digits than int() reads by default: refused, never a ValueError.
        ("batch=" + "9" * 5000, "batch must be an import batch id"),
    ],
)
def test_a_bad_pair_is_refused_with_its_name(bad, message):
    with pytest.raises(SelectionError, match=message):
        Selection.parse([bad])


def test_a_mapping_leaves_out_empty_values_and_a_key_can_be_dropped():
    selection = Selection.of({"batch": [3, None], "session": [""], "task": ["t"]})
    assert selection.as_dict() == {"batch": ["3"], "task": ["t"]}
    assert selection.without("batch").as_dict() == {"task": ["t"]}
    assert not Selection.of({"session": ["  "]})


@pytest.mark.django_db
def test_keys_and_and_values_or(tmp_path):
    import_records(
        [
            make_record(step_number=1, task_id="adversarial_worker"),
            make_record(step_number=2, proposal={"worker_id": "worker_net"}),
            make_record(step_number=3, decision={"type": "BLOCK"}),
        ],
        tmp_path,
    )
    qs = Transcript.objects.all()

    def count(*pairs: str) -> int:
        return Selection.parse(pairs).apply(qs).count()

    assert count() == 3
    assert count("task=adversarial_worker") == 1
    assert count("worker=worker_net", "worker=worker_db") == 3
    assert Selection.parse(["decision=block"]).apply(qs).get().step_number == 3
    assert Selection.parse(["flag=over_block"]).apply(qs).get().step_number == 3
    assert count("status=unreviewed", "worker=worker_net") == 1
    assert count("status=confirmed") == 0


@pytest.mark.django_db
def test_json_selections_name_ids_or_a_filter(tmp_path):
    transcripts = import_records(
        [make_record(step_number=n, task_id=("a", "b")[n % 2]) for n in range(6)], tmp_path
    )
    chosen = [transcripts[0].pk, transcripts[2].pk]
    assert set(records({"pks": chosen}).values_list("pk", flat=True)) == set(chosen)
    assert records({"pks": []}).count() == 0
    assert records({"filter": {"task": ["b"]}}).count() == 3
    assert records({"filter": {}}).count() == 6
    with pytest.raises(SelectionError, match="unknown filter"):
        records({"filter": {"colour": ["red"]}})
    with pytest.raises(SelectionError, match="'filter' or 'pks'"):
        records({})


def test_changelist_parameters_map_only_when_equivalent():
    assert from_changelist({}) == Selection()
    assert from_changelist({"o": ["1"], "q": [""], "flag": ["spot_check"]}).as_dict() == {
        "flag": ["spot_check"]
    }
    assert from_changelist(
        {"batch__id__exact": ["3"], "decision_type__exact": ["BLOCK"]}
    ).as_dict() == {"batch": ["3"], "decision": ["BLOCK"]}
    for unmapped in (
        {"q": ["rm -rf"]},
        {"in_queue__exact": ["1"]},
        {"required_reviews__exact": ["2"]},
        {"flag": ["not-a-flag"]},
        {"task_id__exact": ["a", "b"]},
    ):
        assert from_changelist(unmapped) is None, unmapped


def test_command_options_add_their_shorthands_to_the_filters():
    options = {"filter": ["task=a"], "batch": 4, "session_id": None}
    assert from_options(options, batch="batch", session="session_id").as_dict() == {
        "batch": ["4"],
        "task": ["a"],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command",
    [
        ["export_transcripts", "--output", "{tmp}/out.jsonl"],
        ["summarize", "--json"],
        ["check_final_labels"],
        ["require_reviews", "--k", "2"],
        ["publish_release", "--version", "1.0.0", "--output", "{tmp}"],
    ],
)
def test_commands_parse_filters_alike_and_name_what_is_wrong(command, tmp_path):
    args = [part.format(tmp=tmp_path) for part in command]
    with pytest.raises(CommandError, match="there is no import batch #999"):
        call_command(*args, "--filter", "batch=999", stdout=io.StringIO())
    with pytest.raises(CommandError, match="unknown filter 'colour'"):
        call_command(*args, "--filter", "colour=red", stdout=io.StringIO())
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("batch", ["99999999999999999999", "²", "0", "-1"])
def test_a_batch_outside_the_id_range_is_refused(batch):
    with pytest.raises(SelectionError, match="batch must be an import batch id"):
        Selection.parse([f"batch={batch}"])


def test_the_admins_own_filter_links_map_too():
    assert from_changelist({"task_id": ["a"], "worker_id": ["w"]}).as_dict() == {
        "task": ["a"],
        "worker": ["w"],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        (str(MAX_ID), MAX_ID),
        ("0", None),
        (str(MAX_ID + 1), None),
        ("-1", None),
        ("١٢", None),
        ("", None),
        ("9" * 5000, None),
        (" 7", None),
    ],
)
def test_an_id_is_ascii_digits_from_1_to_max_id(text, expected):
    assert parse_id(text) == expected
