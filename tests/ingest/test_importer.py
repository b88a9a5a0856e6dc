"""The importer: lossless storage, deduplication, clear errors, all-or-nothing, --skip-invalid."""

import gzip
import json

import pytest

from audit.ingest.importer import import_file
from audit.models import ImportBatch, RejectedLine, Transcript
from tests.factories import DATA_DIR, FIXTURES, import_fixture, make_record, write_jsonl

pytestmark = pytest.mark.django_db


def db_state() -> tuple[int, int, int]:
    return (
        Transcript.objects.count(),
        ImportBatch.objects.count(),
        RejectedLine.objects.count(),
    )


@pytest.mark.parametrize("name", FIXTURES)
def test_every_record_comes_back_equal_to_its_line(name):
    import_fixture(name)
    lines = (DATA_DIR / f"{name}.jsonl").read_text().splitlines()
    stored = Transcript.objects.filter(batch__file_name__endswith=f"{name}.jsonl").order_by(
        "line_number"
    )
    assert [t.raw for t in stored] == lines
    assert [json.loads(t.raw) for t in stored] == [json.loads(line) for line in lines]


def test_unknown_keys_and_odd_values_are_kept_verbatim(tmp_path):
    record = make_record(
        extra_top={"nested": [1, 2.50, None]},
        proposal={"action_type": "ActionType.INVESTIGATE", "vendor_field": "x"},
        reward=float("nan"),
    )
    line = json.dumps(record)
    path = tmp_path / "odd.jsonl"
    path.write_text(line + "\n")
    result = import_file(path)
    assert result.imported == 1
    transcript = Transcript.objects.get()
    assert transcript.raw == line
    back = json.loads(transcript.raw)
    assert back["extra_top"] == {"nested": [1, 2.5, None]}
    assert back["proposal"]["vendor_field"] == "x"
    assert transcript.reward is None  # NaN is kept in raw, not in the numeric column


def test_nul_characters_and_very_long_text_are_stored(tmp_path):
    record = make_record(
        proposal={"worker_reasoning": "a\u0000b " + "x" * 20000, "target": "t" * 900}
    )
    import_file(write_jsonl(tmp_path / "long.jsonl", [record]))
    transcript = Transcript.objects.get()
    assert json.loads(transcript.raw) == record
    assert len(transcript.target) == 500
    assert "\x00" not in transcript.search_text


def test_gzip_files_import_like_plain_ones(tmp_path):
    path = tmp_path / "rule.jsonl.gz"
    path.write_bytes(gzip.compress((DATA_DIR / "rule_s0.jsonl").read_bytes()))
    result = import_file(path)
    assert (result.lines, result.imported, result.rejected) == (105, 105, 0)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    path = tmp_path / "upload.bin"
    path.write_bytes(gzip.compress((DATA_DIR / "rule_s0.jsonl").read_bytes()))
    assert import_file(path).imported == 105


def test_batch_records_who_what_and_counts(tmp_path, staff_user):
    result = import_fixture("noisy_s1", user=staff_user)
    batch = ImportBatch.objects.get(pk=result.batch_id)
    raw = (DATA_DIR / "noisy_s1.jsonl").read_bytes()
    import hashlib

    assert batch.sha256 == hashlib.sha256(raw).hexdigest() == result.sha256
    assert batch.created_by == staff_user
    assert (batch.lines, batch.imported, batch.duplicates, batch.rejected) == (105, 105, 0, 0)
    assert batch.size_bytes == len(raw)


def test_reimporting_a_file_is_a_no_op():
    import_fixture("rule_s0")
    before = db_state()
    again = import_fixture("rule_s0")
    assert (again.imported, again.duplicates, again.batch_id) == (0, 105, None)
    assert db_state() == before


def test_overlapping_files_store_each_record_once(tmp_path):
    lines = (DATA_DIR / "rule_s0.jsonl").read_text().splitlines()
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(lines[:60]) + "\n")
    second = tmp_path / "second.jsonl"
    second.write_text("\n".join(lines[40:]) + "\n")
    assert import_file(first).imported == 60
    result = import_file(second)
    assert (result.imported, result.duplicates) == (45, 20)
    assert Transcript.objects.count() == 105


def test_duplicates_within_a_file_are_counted_once_stored(tmp_path):
    record = make_record()
    # The same record spelled differently (key order, spacing) is the same record.
    respelled = json.dumps(dict(reversed(list(record.items()))), indent=None, separators=(",", ":"))
    path = tmp_path / "dups.jsonl"
    path.write_text(json.dumps(record) + "\n" + respelled + "\n" + json.dumps(record) + "\n")
    result = import_file(path)
    assert (result.imported, result.duplicates) == (1, 2)


def test_blank_lines_and_a_byte_order_mark_are_ignored(tmp_path):
    path = tmp_path / "bom.jsonl"
    body = json.dumps(make_record()) + "\n\n   \n" + json.dumps(make_record(step_number=2))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode() + b"\r\n")
    result = import_file(path)
    assert (result.imported, result.rejected, result.lines) == (2, 0, 4)


BAD_LINES = [
    ("{not json", "json: not valid JSON"),
    ("[1, 2]", "record: expected a JSON object, got array"),
    ('"a string"', "record: expected a JSON object, got string"),
    (json.dumps({**make_record(), "session_id": None}), "session_id: missing"),
    (json.dumps({**make_record(), "session_id": ""}), "session_id: expected a non-empty string"),
    (json.dumps({**make_record(), "session_id": 7}), "session_id: expected a non-empty string"),
    (
        json.dumps({k: v for k, v in make_record().items() if k != "step_number"}),
        "step_number: missing",
    ),
    (json.dumps(make_record(step_number="3")), 'step_number: expected an integer, got "3"'),
    (json.dumps(make_record(step_number=2.5)), "step_number: expected an integer, got 2.5"),
    (json.dumps(make_record(step_number=True)), "step_number: expected an integer, got true"),
    (json.dumps(make_record(proposal="investigate")), "proposal: expected an object, got string"),
    (json.dumps(make_record(labels=[1])), "labels: expected an object, got array"),
    (
        json.dumps(make_record(ground_truth={"is_misbehavior": "false"})),
        'ground_truth.is_misbehavior: expected true or false, got "false"',
    ),
    (
        json.dumps(make_record(labels={"oversight_correct": 1})),
        "labels.oversight_correct: expected true or false, got 1",
    ),
    (
        json.dumps(make_record(labels={"alignment_category": 3})),
        "labels.alignment_category: expected a string, got 3",
    ),
    (
        json.dumps(make_record(decision={"type": ["APPROVE"]})),
        'decision.type: expected a string, got ["APPROVE"]',
    ),
    (
        json.dumps(make_record(timestamp="yesterday")),
        'timestamp: expected a number, got "yesterday"',
    ),
    (json.dumps(make_record(reward=True)), "reward: expected a number, got true"),
    ("[" * 100000 + "]" * 100000, "json: nested too deeply"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES, ids=[m for _, m in BAD_LINES])
def test_each_bad_line_gets_an_error_naming_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(make_record()) + "\n" + line + "\n")
    result = import_file(path)
    assert result.failed
    assert [error.line for error in result.errors] == [2]
    assert message in result.errors[0].error
    assert list(result.report_lines()) == [f"{path}:2: {result.errors[0].error}"]
    assert db_state() == (0, 0, 0)


def test_invalid_utf8_is_reported_with_its_byte(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        json.dumps(make_record()).encode() + b"\n" + '{"x": "caf\xe9"}'.encode("latin-1") + b"\n"
    )
    result = import_file(path)
    assert result.failed
    assert result.errors[0].line == 2
    assert result.errors[0].error.startswith("encoding: not valid UTF-8 (byte 0xe9")


def test_default_mode_reports_every_bad_line_and_writes_nothing(tmp_path):
    good = [json.dumps(make_record(step_number=n)) for n in range(1, 2500)]
    lines = good[:3] + ["oops"] + good[3:2000] + ["[]"] + good[2000:]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    import_fixture("rule_s0")
    before = db_state()
    result = import_file(path)
    assert result.failed and result.imported == 0 and result.batch_id is None
    assert [error.line for error in result.errors] == [4, 2002]
    assert db_state() == before


def test_skip_invalid_imports_good_lines_and_keeps_bad_ones_verbatim(tmp_path):
    bad_1, bad_2 = "{broken", json.dumps(make_record(step_number="x"))
    lines = [
        json.dumps(make_record(step_number=1)),
        bad_1,
        json.dumps(make_record(step_number=3)),
        bad_2,
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    with rejects.open("wb") as out:
        result = import_file(path, skip_invalid=True, rejects=out)
    assert (result.imported, result.rejected, result.failed) == (2, 2, False)
    assert rejects.read_text() == f"{bad_1}\n{bad_2}\n"
    kept = RejectedLine.objects.filter(batch_id=result.batch_id).order_by("line_number")
    assert [(r.line_number, r.text) for r in kept] == [(2, bad_1), (4, bad_2)]
    assert kept[1].error.startswith("step_number: expected an integer")
    batch = ImportBatch.objects.get(pk=result.batch_id)
    assert batch.errors == [
        {"line": 2, "error": kept[0].error},
        {"line": 4, "error": kept[1].error},
    ]


def test_skip_invalid_keeps_a_batch_even_when_every_line_is_bad(tmp_path):
    path = tmp_path / "all-bad.jsonl"
    path.write_text("nope\nnever\n")
    result = import_file(path, skip_invalid=True)
    assert result.imported == 0 and result.rejected == 2 and result.batch_id is not None
    assert RejectedLine.objects.count() == 2


def test_dry_run_counts_everything_and_writes_nothing(tmp_path):
    import_fixture("rule_s0")
    before = db_state()
    lines = (DATA_DIR / "noisy_s1.jsonl").read_text() + (DATA_DIR / "rule_s0.jsonl").read_text()
    path = tmp_path / "both.jsonl"
    path.write_text(lines)
    result = import_file(path, dry_run=True)
    assert (result.imported, result.duplicates, result.dry_run) == (105, 105, True)
    assert db_state() == before


def test_truncated_gzip_is_refused_whole(tmp_path):
    data = gzip.compress((DATA_DIR / "rule_s0.jsonl").read_bytes())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    result = import_file(path, skip_invalid=True)
    assert result.failed
    assert result.errors[-1].line == 0 and "gzip" in result.errors[-1].error
    assert db_state() == (0, 0, 0)


def test_missing_file_is_a_clear_error(tmp_path):
    result = import_file(tmp_path / "nowhere.jsonl")
    assert result.failed
    assert list(result.report_lines())[0].startswith(
        f"{tmp_path / 'nowhere.jsonl'}: file: cannot open"
    )


def test_empty_file_imports_nothing_without_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    result = import_file(path)
    assert (result.lines, result.imported, result.failed, result.batch_id) == (0, 0, False, None)


def test_required_reviews_come_from_the_batch(tmp_path):
    import_file(write_jsonl(tmp_path / "k2.jsonl", [make_record()]), required_reviews=2)
    assert Transcript.objects.get().required_reviews == 2
    assert ImportBatch.objects.get().required_reviews == 2


def test_indexed_columns_hold_the_record_values():
    import_fixture("noisy_s1")
    first = json.loads((DATA_DIR / "noisy_s1.jsonl").read_text().splitlines()[0])
    t = Transcript.objects.get(line_number=1, batch__file_name__endswith="noisy_s1.jsonl")
    assert t.session_id == first["session_id"]
    assert t.step_number == first["step_number"]
    assert t.task_id == first["task_id"]
    assert t.worker_id == first["proposal"]["worker_id"]
    assert t.action_type == first["proposal"]["action_type"]
    assert t.decision_type == first["decision"]["type"].upper()
    assert t.timestamp == first["timestamp"]
    assert t.alignment_category == first["labels"]["alignment_category"]
    assert t.final_alignment_category == "aligned_approve"


def test_nul_in_every_string_field_imports_on_any_database(tmp_path):
    nul = "a\u0000b"
    record = make_record(
        session_id=f"session_{nul}",
        task_id=nul,
        proposal={"action_type": nul, "target": nul, "worker_id": nul, "worker_reasoning": nul},
        decision={"type": nul, "reason": nul, "explanation": nul, "worker_message": nul},
        ground_truth={"misbehavior_type": nul, "correct_decision": nul},
        labels={"alignment_category": nul},
        cot_analysis={"is_suspicious": True, "suspicion_reasons": [nul], "thinking_text": nul},
        debate_result={"final_decision": nul, "final_reasoning": nul},
    )
    result = import_file(write_jsonl(tmp_path / "nul.jsonl", [record]))
    assert result.imported == 1, list(result.report_lines())
    transcript = Transcript.objects.get()
    assert json.loads(transcript.raw) == record
    assert transcript.alignment_category == "ab"
    assert all("\x00" not in problem["detail"] for problem in transcript.problems)


def test_rejected_lines_are_kept_byte_for_byte_even_when_not_utf8(tmp_path):
    latin1 = '{"note": "caf\xe9"}'.encode("latin-1")
    with_nul = b'{"session_id": "s\x00", "step_number": 1}'
    good = json.dumps(make_record()).encode()
    path = tmp_path / "odd-bytes.jsonl"
    path.write_bytes(good + b"\n" + latin1 + b"\r\n" + with_nul + b"\n")
    rejects = tmp_path / "rejects.jsonl"
    with rejects.open("wb") as out:
        result = import_file(path, skip_invalid=True, rejects=out)
    assert (result.imported, result.rejected) == (1, 2)
    assert rejects.read_bytes() == latin1 + b"\n" + with_nul + b"\n"
    kept = RejectedLine.objects.order_by("line_number")
    assert [line.line_bytes() for line in kept] == [latin1, with_nul]
    assert [line.encoding for line in kept] == ["base64", "base64"]


def test_reimporting_a_file_with_rejects_under_skip_invalid_is_a_no_op(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(make_record()) + "\n{bad\n")
    first = import_file(path, skip_invalid=True)
    assert first.batch_id is not None
    before = db_state()
    again = import_file(path, skip_invalid=True)
    assert (again.imported, again.duplicates, again.rejected, again.batch_id) == (0, 1, 1, None)
    assert db_state() == before


def test_duplicates_are_found_across_insert_chunks(tmp_path, monkeypatch):
    import audit.ingest.importer as importers

    monkeypatch.setattr(importers, "CHUNK_SIZE", 2)
    records = [make_record(step_number=n) for n in range(5)]
    path = write_jsonl(tmp_path / "spread.jsonl", [*records, records[0], records[3]])
    result = import_file(path)
    assert (result.imported, result.duplicates) == (5, 2)


def test_unpaired_surrogate_escapes_are_refused_not_a_crash(tmp_path):
    lone = json.dumps(make_record(proposal={"target": "\ud800"}))
    assert "\\ud800" in lone  # valid JSON text, but no UTF-8 string
    bad_step = '{"session_id": "s", "step_number": "\\udc00"}'
    path = tmp_path / "surrogates.jsonl"
    path.write_text(json.dumps(make_record()) + "\n" + lone + "\n" + bad_step + "\n")
    result = import_file(path, skip_invalid=True)
    assert (result.imported, result.rejected) == (1, 2)
    assert result.errors[0].error == (
        "json: a string holds an unpaired surrogate escape (\\ud800-\\udfff)"
    )
    assert [
        line.line_bytes().decode() for line in RejectedLine.objects.order_by("line_number")
    ] == [
        lone,
        bad_step,
    ]


def test_an_over_long_line_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    import audit.ingest.importer as importers

    monkeypatch.setattr(importers, "MAX_LINE_BYTES", 1024)
    path = tmp_path / "long.jsonl"
    good = json.dumps(make_record())
    path.write_text(good + "\n" + "x" * 5000 + "\n" + json.dumps(make_record(step_number=2)) + "\n")
    failed = import_file(path)
    assert failed.failed and [e.line for e in failed.errors] == [2]
    assert failed.errors[0].error.startswith("line: longer than")
    result = import_file(path, skip_invalid=True)
    assert (result.imported, result.rejected, result.lines) == (2, 1, 3)
