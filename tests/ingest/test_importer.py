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
    assert [t.text.raw for t in stored] == lines
    assert [json.loads(t.text.raw) for t in stored] == [json.loads(line) for line in lines]


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
    assert transcript.text.raw == line
    back = json.loads(transcript.text.raw)
    assert back["extra_top"] == {"nested": [1, 2.5, None]}
    assert back["proposal"]["vendor_field"] == "x"
    assert transcript.reward is None  # NaN is kept in raw, not in the numeric column


def test_nul_characters_and_very_long_text_are_stored(tmp_path):
    record = make_record(
        proposal={"worker_reasoning": "a\u0000b " + "x" * 20000, "target": "t" * 900}
    )
    import_file(write_jsonl(tmp_path / "long.jsonl", [record]))
    transcript = Transcript.objects.get()
    assert json.loads(transcript.text.raw) == record
    assert len(transcript.target) == 500
    assert "\x00" not in transcript.text.search_text


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


def test_empty_file_is_refused_saying_it_is_empty(tmp_path):
    # Not "nothing new: every record was already stored" (issue 15, D12): there were none.
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    result = import_file(path)
    assert (result.lines, result.imported, result.failed, result.batch_id) == (0, 0, True, None)
    assert [e.error for e in result.errors] == [
        "file: empty (0 bytes): no records to import; nothing from the file was imported"
    ]


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
    assert json.loads(transcript.text.raw) == record
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


def test_model_and_run_source_go_on_the_batch_stripped(tmp_path):
    path = write_jsonl(tmp_path / "run.jsonl", [make_record()])
    result = import_file(path, model="  sentinel-7b\n", run_source=" noisy policy ")
    batch = ImportBatch.objects.get(pk=result.batch_id)
    assert (batch.model, batch.run_source) == ("sentinel-7b", "noisy policy")


def test_model_and_run_source_default_to_unknown(tmp_path):
    import_file(write_jsonl(tmp_path / "run.jsonl", [make_record()]))
    batch = ImportBatch.objects.get()
    assert (batch.model, batch.run_source) == ("", "")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "m" * 201}, "model is 201 characters long; at most 200 are allowed"),
        ({"run_source": "s" * 300}, "run source is 300 characters long; at most 200 are allowed"),
        ({"model": "a\x00b"}, "model holds a NUL character"),
    ],
)
def test_run_metadata_that_cannot_be_kept_is_refused_before_reading(tmp_path, kwargs, message):
    from audit.ingest.importer import RunMetadataError

    path = write_jsonl(tmp_path / "run.jsonl", [make_record()])
    with pytest.raises(RunMetadataError) as excinfo:
        import_file(path, **kwargs)
    assert str(excinfo.value) == message
    assert ImportBatch.objects.count() == 0 and Transcript.objects.count() == 0


def test_run_metadata_of_exactly_the_limit_is_kept_whole(tmp_path):
    import_file(write_jsonl(tmp_path / "run.jsonl", [make_record()]), model="m" * 200)
    assert ImportBatch.objects.get().model == "m" * 200


def test_a_reimport_that_adds_nothing_leaves_the_run_metadata_as_it_was(tmp_path):
    path = write_jsonl(tmp_path / "run.jsonl", [make_record()])
    import_file(path, model="first", run_source="one")
    result = import_file(path, model="second", run_source="two")
    assert (result.imported, result.duplicates, result.batch_id) == (0, 1, None)
    batch = ImportBatch.objects.get()
    assert (batch.model, batch.run_source) == ("first", "one")


def test_reimporting_an_export_with_its_malt_block_adds_nothing(tmp_path):
    """The round trip through the importer: export (review and malt blocks), import into the
    database it came from, and into one that holds only the original."""
    from audit.publish.export import write_jsonl as export_jsonl

    original = write_jsonl(tmp_path / "run.jsonl", [make_record(step_number=n) for n in range(3)])
    import_file(original, model="m", run_source="s")
    export_jsonl(Transcript.objects.all(), tmp_path / "out.jsonl")
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert all(json.loads(line)["malt"]["model"] == "m" for line in lines)
    assert import_file(tmp_path / "out.jsonl").duplicates == 3
    assert ImportBatch.objects.count() == 1


# --- a large import never locks auditors out (D2) ----------------------------------------------


def every_row() -> tuple[int, int, int]:
    """db_state, counting rows of unfinished batches too."""
    return (
        Transcript.including_unfinished.count(),
        ImportBatch.including_unfinished.count(),
        RejectedLine.objects.count(),
    )


@pytest.mark.django_db(transaction=True)
def test_a_verdict_and_a_login_during_a_large_import_get_in_between_its_chunks(
    tmp_path, monkeypatch, auditor
):
    """The insert commits a chunk at a time, so another writer waits for one chunk, never for
    the file: the property holds per chunk, so a few thousand generated records with small
    chunks stand for the biggest file the upload page allows. Meanwhile the rows already in
    stay invisible."""
    import threading
    import time

    from django.db import connection, connections
    from django.test import Client
    from django.urls import reverse

    import audit.ingest.importer as importers
    from audit.demo.generator import write_jsonl as generate
    from tests.conftest import PASSWORD
    from tests.factories import confirm, import_records, make_misbehavior

    [item] = import_records([make_misbehavior(decision="APPROVE")], tmp_path)
    monkeypatch.setattr(importers, "CHUNK_SIZE", 100)
    path = tmp_path / "big.jsonl"
    generate(path, count=2000, seed=3)
    results: list = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(import_file(path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not Transcript.including_unfinished.filter(batch__complete=False).exists():
            assert thread.is_alive() and time.monotonic() < deadline, "no chunk committed alone"
            time.sleep(0.01)
        invisible = Transcript.objects.count()
        started = time.monotonic()
        confirm(item, auditor)
        verdict_wait = time.monotonic() - started
        started = time.monotonic()
        login = Client().post(reverse("login"), {"username": "alice", "password": PASSWORD})
        login_wait = time.monotonic() - started
        unfinished = ImportBatch.including_unfinished.unfinished().exists()
    finally:
        thread.join()
    assert errors == []
    assert invisible == 1  # the import's committed chunks are not seen yet
    assert login.status_code == 302 and login["Location"] == reverse("queue")
    # The busy timeout is 20 s; one chunk is a few tens of milliseconds.
    assert verdict_wait < 2 and login_wait < 2, (verdict_wait, login_wait)
    if connection.vendor == "sqlite":  # one write lock: they got in between chunks
        assert unfinished
    [result] = results
    assert result.imported + result.duplicates == 2000
    assert Transcript.objects.count() == 1 + result.imported
    assert ImportBatch.objects.get(pk=result.batch_id).imported == result.imported


def test_rows_of_an_unfinished_batch_are_invisible_everywhere(
    tmp_path, auditor, auditor_client, staff_client
):
    """What an import has inserted but not finished: the queue, the item page, "Next", the
    summaries, the dashboard, exports (and so releases) and the imports pages see none of it."""
    from django.urls import reverse

    from audit.metrics.summaries import summarize
    from audit.publish import export, selection
    from audit.review import leases
    from tests.factories import import_records, make_misbehavior

    [shown] = import_records([make_misbehavior(decision="APPROVE", step_number=1)], tmp_path)
    [hidden] = import_records(
        [make_misbehavior(decision="APPROVE", step_number=2)], tmp_path, name="second.jsonl"
    )
    ImportBatch.objects.filter(pk=hidden.batch_id).update(complete=False)
    assert list(Transcript.objects.values_list("pk", flat=True)) == [shown.pk]
    assert Transcript.including_unfinished.count() == 2
    assert auditor_client.get(reverse("queue")).context["total"] == 1
    assert auditor_client.get(reverse("item", args=[hidden.pk])).status_code == 404
    assert summarize(Transcript.objects.all())["total_decisions"] == 1
    assert staff_client.get(reverse("dashboard")).status_code == 200
    lines = list(export.iter_lines(selection.records({"filter": {}})))
    assert [json.loads(line)["step_number"] for line in lines] == [1]
    assert list(ImportBatch.objects.values_list("pk", flat=True)) == [shown.batch_id]
    assert staff_client.get(reverse("batch_detail", args=[hidden.batch_id])).status_code == 404
    assert leases.claim_next(auditor).pk == shown.pk
    assert leases.claim_next(auditor, skip=[shown.pk]) is None


def test_the_managers_kept_queryset_sees_every_change_after_it_was_built(tmp_path):
    """``Transcript.objects`` builds its finished-batches queryset once and clones it
    (``audit.models._BuiltOnce``): the one kept is never evaluated, and a batch that becomes
    unfinished, or rows added, after it was built are seen as they are now."""
    from audit.models import Rollup
    from tests.factories import import_records, make_misbehavior

    assert list(Transcript.objects.all()) == []  # built (or reused) and evaluated: a clone
    [first] = import_records([make_misbehavior(step_number=1)], tmp_path)
    assert list(Transcript.objects.values_list("pk", flat=True)) == [first.pk]
    [second] = import_records([make_misbehavior(step_number=2)], tmp_path, name="b.jsonl")
    assert Transcript.objects.count() == 2
    ImportBatch.objects.filter(pk=second.batch_id).update(complete=False)
    assert list(Transcript.objects.values_list("pk", flat=True)) == [first.pk]
    assert set(Rollup.objects.values_list("batch_id", flat=True)) == {first.batch_id}
    for manager in (Transcript.objects, Rollup.objects):
        assert manager._built._result_cache is None
    # Another database's manager builds its own (the default one here, by name).
    assert Transcript.objects.db_manager("default").count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_import_that_fails_midway_removes_what_it_inserted(tmp_path, monkeypatch):
    import audit.ingest.importer as importers

    monkeypatch.setattr(importers, "CHUNK_SIZE", 2)
    real = importers._write_rows
    chunks: list[int] = []

    def failing(rows, *, batch):
        chunks.append(len(rows))
        if len(chunks) == 3:
            raise RuntimeError("injected failure in the third chunk")
        return real(rows, batch=batch)

    monkeypatch.setattr(importers, "_write_rows", failing)
    path = write_jsonl(tmp_path / "mixed.jsonl", [make_record(step_number=n) for n in range(7)])
    path.write_text(path.read_text() + "{bad\n")
    before = every_row()
    with pytest.raises(RuntimeError, match="injected"):
        import_file(path, skip_invalid=True)
    assert every_row() == before
    monkeypatch.setattr(importers, "_write_rows", real)
    assert import_file(path, skip_invalid=True).imported == 7


def test_the_next_import_removes_what_a_killed_import_left(tmp_path, monkeypatch):
    """A kill leaves an unfinished batch (invisible): the next import, which runs alone, removes
    it before inserting, so its records are stored once, by the import that finished."""
    import audit.ingest.importer as importers

    monkeypatch.setattr(importers, "CHUNK_SIZE", 2)
    real = importers._write_rows
    chunks: list[int] = []

    def killed(rows, *, batch):
        chunks.append(len(rows))
        if len(chunks) == 3:
            raise SystemExit("killed")  # what SIGKILL leaves: no clean-up ran
        return real(rows, batch=batch)

    monkeypatch.setattr(importers, "_write_rows", killed)
    monkeypatch.setattr(importers, "_discard_after_failure", lambda batch_id: None)
    path = write_jsonl(tmp_path / "run.jsonl", [make_record(step_number=n) for n in range(7)])
    with pytest.raises(SystemExit):
        import_file(path)
    assert Transcript.including_unfinished.count() == 4 and Transcript.objects.count() == 0
    monkeypatch.undo()
    result = import_file(path)
    assert (result.imported, result.duplicates) == (7, 0)
    assert every_row() == (7, 1, 0)
    assert ImportBatch.objects.get().pk == result.batch_id


def test_dry_run_finds_duplicates_across_chunks_and_writes_nothing(tmp_path, monkeypatch):
    import audit.ingest.importer as importers

    monkeypatch.setattr(importers, "CHUNK_SIZE", 2)
    records = [make_record(step_number=n) for n in range(5)]
    import_file(write_jsonl(tmp_path / "old.jsonl", records[:1]))
    before = every_row()
    path = write_jsonl(tmp_path / "spread.jsonl", [*records, records[0], records[3]])
    result = import_file(path, dry_run=True)
    assert (result.imported, result.duplicates, result.batch_id) == (4, 3, None)
    assert every_row() == before
