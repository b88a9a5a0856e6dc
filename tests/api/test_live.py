"""End to end against a live server: the client (``audit.api.client``) posts, the records arrive
as a file import would store them, retries are no-ops, runs post in parallel, and a seed
exporter sends what it records."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from django.db import connection

from audit.api.client import ApiError, post_records, send_to_audit
from audit.api.tokens import revoke
from audit.ingest import importer
from audit.ingest.importer import import_file
from audit.models import ApiToken, ImportBatch, IngestRun, Transcript
from tests.api.conftest import snapshot
from tests.api.seed_exporter import TranscriptExporter
from tests.factories import DATA_DIR, FIXTURES, make_record

pytestmark = pytest.mark.django_db(transaction=True)


def fixture_lines(name: str) -> list[str]:
    return (DATA_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()


def test_posted_fixtures_arrive_as_a_file_import_stores_them(
    live_server, staff_user, make_token, settings
):
    settings.AUDIT_SPOT_CHECK_RATE = 0.0
    token = make_token(staff_user, "ingest")
    for name in FIXTURES:
        answer = post_records(live_server.url, token, fixture_lines(name), name=f"{name}.jsonl")
        assert answer["batches"][0]["imported"] == 105, answer
    posted = snapshot()
    assert len(posted) == 4 * 105
    Transcript.objects.all().delete()
    ImportBatch.objects.all().delete()
    for name in FIXTURES:
        assert not import_file(DATA_DIR / f"{name}.jsonl").failed
    assert snapshot() == posted


def test_a_retry_is_a_no_op(live_server, staff_user, make_token):
    token = make_token(staff_user, "ingest")
    first = post_records(live_server.url, token, fixture_lines("rule_s0"), run="r1")
    again = post_records(live_server.url, token, fixture_lines("rule_s0"), run="r1")
    assert first["batches"][0]["imported"] == 105
    assert (again["batches"][0]["imported"], again["batches"][0]["duplicates"]) == (0, 105)
    batch = ImportBatch.objects.get()
    assert (batch.lines, batch.imported, batch.duplicates) == (105, 105, 0)
    assert Transcript.objects.count() == 105


def test_a_bad_line_is_refused_with_its_number(live_server, staff_user, make_token):
    token = make_token(staff_user, "ingest")
    lines = [json.dumps(make_record(step_number=1)), '{"session_id": 1,', "", "[]"]
    with pytest.raises(ApiError) as refused:
        post_records(live_server.url, token, lines)
    assert refused.value.status == 422
    errors = refused.value.answer["batches"][0]["errors"]
    assert [error["line"] for error in errors] == [2, 4]
    assert "line 2" in refused.value.detail
    assert not Transcript.objects.exists()


def test_missing_revoked_and_wrong_scope_tokens(live_server, staff_user, make_token):
    lines = [json.dumps(make_record())]
    with pytest.raises(ApiError) as missing:
        post_records(live_server.url, "", lines, retries=0)
    assert missing.value.status == 401
    read = make_token(staff_user, "read")
    with pytest.raises(ApiError) as scope:
        post_records(live_server.url, read, lines)
    assert scope.value.status == 403 and "ingest" in scope.value.detail
    ingest = make_token(staff_user, "ingest")
    revoke(ApiToken.objects.all())
    with pytest.raises(ApiError) as revoked:
        post_records(live_server.url, ingest, lines)
    assert revoked.value.status == 401 and "revoked" in revoked.value.detail
    assert not Transcript.objects.exists()


def test_parallel_posters_of_overlapping_data_store_each_record_once(
    live_server, staff_user, make_token
):
    """Four runs at once, each posting two fixtures (every fixture posted twice), in requests of
    35 lines under its own run key: exactly 420 records, each once, one batch per run."""
    token = make_token(staff_user, "ingest")
    answers: list[dict] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def poster(index: int) -> None:
        try:
            names = (FIXTURES[index], FIXTURES[(index + 1) % 4])
            lines = [line for name in names for line in fixture_lines(name)]
            for start in range(0, len(lines), 35):
                answer = post_records(
                    live_server.url, token, lines[start : start + 35], run=f"run-{index}"
                )
                with lock:
                    answers.append(answer["batches"][0])
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=poster, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert len(answers) == 4 * 6
    assert sum(a["imported"] for a in answers) == 420
    assert sum(a["duplicates"] for a in answers) == 420
    assert Transcript.objects.count() == 420
    assert Transcript.objects.values("fingerprint").distinct().count() == 420
    # Runs whose every record another run stored first leave no batch; none has two.
    runs = IngestRun.objects.count()
    assert 1 <= runs <= 4
    assert ImportBatch.objects.count() == runs
    assert sum(ImportBatch.objects.values_list("imported", flat=True)) == 420
    assert not ImportBatch.including_unfinished.filter(complete=False).exists()


@pytest.fixture
def import_lock_held() -> Iterator[threading.Event]:
    """The import lock held by another thread (its own connection) until the event is set."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with importer._one_import_at_a_time():
                held.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    yield release
    release.set()
    thread.join(10)


def test_a_busy_import_lock_is_503_with_retry_after_and_the_client_retries(
    live_server, staff_user, make_token, settings, import_lock_held
):
    settings.AUDIT_API_LOCK_WAIT_SECONDS = 0
    token = make_token(staff_user, "ingest")
    lines = [json.dumps(make_record())]
    with pytest.raises(ApiError) as busy:
        post_records(live_server.url, token, lines, retries=0)
    assert busy.value.status == 503
    assert "import lock" in busy.value.detail
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        import_lock_held.set()  # the long import ends while the client waits

    settings.AUDIT_API_LOCK_WAIT_SECONDS = 5
    answer = post_records(live_server.url, token, lines, retries=3, sleep=sleep)
    assert answer["batches"][0]["imported"] == 1
    assert waits and waits[0] == 5  # Retry-After
    assert Transcript.objects.count() == 1


def test_a_seed_exporter_sends_what_it_records(live_server, staff_user, make_token, tmp_path):
    token = make_token(staff_user, "ingest")
    exporter = TranscriptExporter(output_dir=str(tmp_path))
    with send_to_audit(exporter, live_server.url, token, every=4, model="policy-x") as live:
        for step in range(10):
            exporter.record_decision(
                step_number=step,
                task_id="basic_oversight",
                proposal={"action_type": "investigate", "target": "db", "worker_id": "worker_db"},
                decision={"decision": "BLOCK" if step % 3 == 0 else "APPROVE", "reason": None},
                ground_truth={"is_misbehavior": step % 3 == 0, "mb_type": "hallucination"},
                reward=0.5,
            )
        assert len(live.answers) == 2  # 4 + 4 sent; 2 wait for close()
    assert len(live.answers) == 3
    batch = ImportBatch.objects.get()
    assert (batch.imported, batch.model, batch.file_name) == (10, "policy-x", exporter.session_id)
    assert IngestRun.objects.get().key == exporter.session_id
    # Stored exactly as the exporter's own file has them, line for line.
    path = exporter.export_jsonl()
    with open(path, encoding="utf-8") as handle:
        written = handle.read().splitlines()
    stored = Transcript.objects.order_by("line_number").values_list("text__raw", flat=True)
    assert list(stored) == written
    assert import_file(path).imported == 0  # the file adds nothing more
