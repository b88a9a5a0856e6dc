"""Every line-level problem is a line error (issue 15, D5): no line aborts a file that
--skip-invalid imports, and a record that imports does so on either database."""

import json

import pytest

from audit.ingest.importer import import_file
from audit.ingest.records import INTEGER_COLUMN_RANGE, MAX_INTEGER_DIGITS
from audit.models import RejectedLine, Transcript
from tests.factories import make_record

pytestmark = pytest.mark.django_db

LOW, HIGH = INTEGER_COLUMN_RANGE
BIG = "9" * 5000


def _cut(text: str) -> str:
    """A long value as messages quote it: its first 57 characters."""
    return text[:57] + "..."


def _line(record: dict, **replace: str) -> str:
    """The record's JSON with placeholders ``"@name@"`` swapped for raw JSON text."""
    text = json.dumps(record)
    for name, raw in replace.items():
        text = text.replace(json.dumps(f"@{name}@"), raw)
    return text


HOSTILE = [
    # Integers longer than CPython's 4,300 digits raised an uncaught ValueError.
    pytest.param(
        _line(make_record(step_number="@n@"), n=BIG),
        "json: number too long: an integer of 5,000 digits (at most 4,300 are allowed)",
        id="long-integer-step",
    ),
    pytest.param(
        _line(make_record(vendor={"deep": ["@n@"]}), n="-" + BIG),
        "json: number too long: an integer of 5,000 digits (at most 4,300 are allowed)",
        id="long-integer-unknown-key",
    ),
    # Out of PostgreSQL's integer range (a DataError there; 2**63 an OverflowError on SQLite).
    pytest.param(
        json.dumps(make_record(step_number=2**31)),
        f"step_number: out of range: 2147483648 is not between {LOW} and {HIGH}",
        id="step-2**31",
    ),
    pytest.param(
        json.dumps(make_record(step_number=-(2**31) - 1)),
        f"step_number: out of range: -2147483649 is not between {LOW} and {HIGH}",
        id="step-below",
    ),
    pytest.param(
        json.dumps(make_record(step_number=2**63)),
        f"step_number: out of range: 9223372036854775808 is not between {LOW} and {HIGH}",
        id="step-2**63",
    ),
    pytest.param(
        _line(make_record(step_number="@n@"), n="9" * 4300),
        f"step_number: out of range: {_cut('9' * 4300)} is not between {LOW} and {HIGH}",
        id="step-4300-digits",
    ),
    # A number column (a double) cannot hold an integer beyond a float's range.
    pytest.param(
        json.dumps(make_record(timestamp=10**400)),
        f"timestamp: out of range: {_cut(str(10**400))} is too large for a number column",
        id="timestamp-10**400",
    ),
    pytest.param(
        json.dumps(make_record(cot_analysis={"deception_risk": -(10**309)})),
        f"cot_analysis.deception_risk: out of range: {_cut(str(-(10**309)))} is too large for "
        "a number column",
        id="risk-10**309",
    ),
    # Non-finite where the column needs a number: the integer step.
    pytest.param(
        json.dumps(make_record(step_number=float("nan"))),
        "step_number: expected an integer, got NaN",
        id="step-nan",
    ),
    pytest.param(
        _line(make_record(step_number="@n@"), n="1e400"),
        "step_number: expected an integer, got Infinity",
        id="step-1e400",
    ),
]


@pytest.mark.parametrize(("line", "message"), HOSTILE)
def test_a_hostile_line_is_a_line_error_and_the_rest_imports(tmp_path, line, message):
    good = json.dumps(make_record(step_number=1))
    path = tmp_path / "hostile.jsonl"
    path.write_text(f"{good}\n{line}\n{json.dumps(make_record(step_number=3))}\n")
    result = import_file(path, skip_invalid=True)
    assert not result.failed, list(result.report_lines())
    assert list(result.report_lines()) == [f"{path}:2: {message}"]
    assert (result.imported, result.rejected) == (2, 1)
    assert sorted(Transcript.objects.values_list("step_number", flat=True)) == [1, 3]
    kept = RejectedLine.objects.get()
    assert (kept.line_number, kept.error, kept.text) == (2, message, line)


@pytest.mark.parametrize(("line", "message"), HOSTILE)
def test_a_hostile_line_refuses_the_file_by_default_with_its_error(tmp_path, line, message):
    path = tmp_path / "hostile.jsonl"
    path.write_text(f"{json.dumps(make_record())}\n{line}\n")
    result = import_file(path)
    assert result.failed and list(result.report_lines()) == [f"{path}:2: {message}"]
    assert Transcript.objects.count() == 0


@pytest.mark.parametrize("step", [LOW, HIGH, 0])
def test_steps_at_the_ends_of_the_range_import_on_either_database(tmp_path, step):
    path = tmp_path / "edge.jsonl"
    path.write_text(json.dumps(make_record(step_number=step)) + "\n")
    assert import_file(path).imported == 1
    assert Transcript.objects.get().step_number == step


def test_an_integer_of_exactly_the_digit_limit_is_kept(tmp_path):
    digits = "7" * MAX_INTEGER_DIGITS
    line = _line(make_record(vendor="@n@"), n=digits)
    path = tmp_path / "digits.jsonl"
    path.write_text(line + "\n")
    assert import_file(path).imported == 1
    assert Transcript.objects.get().text.raw == line


def test_decision_text_that_upper_casing_lengthens_still_fits_its_column(tmp_path):
    # "ß".upper() is "SS": 200 characters became 400, past PostgreSQL's varchar(200).
    record = make_record(decision={"type": "ß" * 200}, debate_result={"final_decision": "ﬃ" * 200})
    path = tmp_path / "upper.jsonl"
    path.write_text(json.dumps(record) + "\n")
    result = import_file(path)
    assert result.imported == 1, list(result.report_lines())
    stored = Transcript.objects.get()
    assert stored.decision_type == "S" * 200 and stored.debate_decision == "FFI" * 66 + "FF"


def _export_like(**review) -> dict:
    record = make_record(reward=None)
    record["review"] = {"original_ground_truth": {}, "original_labels": {}, **review}
    return record


@pytest.mark.parametrize(
    ("non_finite", "message"),
    [
        ("NaN", "review.non_finite: expected an array, got string"),
        ([{"path": "/reward"}], 'review.non_finite[0]: expected an object with "path" and "value"'),
        (
            [{"path": "/reward", "value": "nan"}],
            'review.non_finite[0]: expected a value of "NaN", "Infinity" or "-Infinity", got "nan"',
        ),
        (
            [{"path": "reward", "value": "NaN"}],
            'review.non_finite[0]: expected a JSON Pointer, got "reward"',
        ),
        (
            [{"path": "/nowhere/0", "value": "NaN"}],
            'review.non_finite[0]: "/nowhere/0" names nothing in the record',
        ),
        (
            [{"path": "/step_number", "value": "Infinity"}],
            'review.non_finite[0]: "/step_number" holds 1, not null',
        ),
    ],
)
def test_an_export_whose_non_finite_list_does_not_fit_is_a_line_error(
    tmp_path, non_finite, message
):
    path = tmp_path / "edited.jsonl"
    path.write_text(json.dumps(_export_like(non_finite=non_finite)) + "\n")
    result = import_file(path, skip_invalid=True)
    assert [e.error for e in result.errors] == [message]
    assert result.rejected == 1
