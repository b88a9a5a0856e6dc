"""POST /api/v1/transcripts: the importer's code path, its answer, its refusals."""

from __future__ import annotations

import gzip
import io
import json

import pytest

from audit.api.views import _Body
from audit.ingest.importer import import_file
from audit.models import ImportBatch, IngestRun, RejectedLine, Transcript
from tests.api.conftest import API, bearer, fixture_bytes, post_jsonl, snapshot
from tests.factories import DATA_DIR, make_record

pytestmark = pytest.mark.django_db

RESULT_KEYS = {
    "file",
    "sha256",
    "lines",
    "imported",
    "duplicates",
    "rejected",
    "errors",
    "batch_id",
    "dry_run",
    "failed",
}


def lines(*records: dict) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def test_ingest_answers_like_import_transcripts_json(api, ingest_token, staff_user):
    response = post_jsonl(api, ingest_token, fixture_bytes(), model="m-1", run_source="policy")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert set(answer) == {"batches"}
    (batch,) = answer["batches"]
    assert set(batch) == RESULT_KEYS
    assert (batch["lines"], batch["imported"], batch["duplicates"], batch["rejected"]) == (
        105,
        105,
        0,
        0,
    )
    assert batch["failed"] is False and batch["errors"] == []
    stored = ImportBatch.objects.get(pk=batch["batch_id"])
    assert (stored.source, stored.created_by, stored.model, stored.run_source) == (
        "api",
        staff_user,
        "m-1",
        "policy",
    )
    assert stored.transcripts.count() == 105


def test_a_retry_adds_nothing_and_counts_duplicates(api, ingest_token):
    first = post_jsonl(api, ingest_token, fixture_bytes()).json()["batches"][0]
    again = post_jsonl(api, ingest_token, fixture_bytes())
    assert again.status_code == 200
    retry = again.json()["batches"][0]
    assert (retry["imported"], retry["duplicates"], retry["batch_id"]) == (0, 105, None)
    assert Transcript.objects.count() == 105
    assert ImportBatch.objects.count() == 1
    assert first["batch_id"] is not None


def test_gzip_body_is_read(api, ingest_token):
    response = api.post(
        f"{API}/transcripts",
        data=gzip.compress(fixture_bytes("block_s3")),
        content_type="application/gzip",
        headers=bearer(ingest_token),
    )
    assert response.status_code == 200
    assert response.json()["batches"][0]["imported"] == 105


def test_a_bad_line_refuses_the_request_and_names_its_line(api, ingest_token):
    body = lines(make_record(step_number=1), make_record(step_number=2))
    body += b'{"session_id": "s", "step_number": "three"\n'
    response = post_jsonl(api, ingest_token, body)
    assert response.status_code == 422
    result = response.json()["batches"][0]
    assert result["failed"] is True
    assert result["imported"] == 0
    assert [error["line"] for error in result["errors"]] == [3]
    assert Transcript.objects.count() == 0
    assert ImportBatch.including_unfinished.count() == 0


def test_skip_invalid_keeps_rejected_lines(api, ingest_token):
    bad = b"not json at all"
    body = lines(make_record(step_number=1)) + bad + b"\n" + lines(make_record(step_number=2))
    response = post_jsonl(api, ingest_token, body, skip_invalid="true")
    assert response.status_code == 200
    result = response.json()["batches"][0]
    assert (result["imported"], result["rejected"]) == (2, 1)
    assert result["errors"][0]["line"] == 2
    (kept,) = RejectedLine.objects.filter(batch_id=result["batch_id"])
    assert (kept.line_number, kept.line_bytes()) == (2, bad)


def test_dry_run_writes_nothing(api, ingest_token):
    response = post_jsonl(api, ingest_token, fixture_bytes(), dry_run="true")
    assert response.status_code == 200
    result = response.json()["batches"][0]
    assert (result["dry_run"], result["imported"], result["batch_id"]) == (True, 105, None)
    assert Transcript.objects.count() == 0


def test_an_empty_body_is_refused_with_the_importers_error(api, ingest_token):
    response = post_jsonl(api, ingest_token, b"")
    assert response.status_code == 422
    assert "empty" in response.json()["batches"][0]["errors"][0]["error"]


def test_reviews_sets_k_on_the_batch_and_its_items(api, ingest_token):
    result = post_jsonl(api, ingest_token, lines(make_record()), reviews=2).json()["batches"][0]
    assert ImportBatch.objects.get(pk=result["batch_id"]).required_reviews == 2
    assert Transcript.objects.get().required_reviews == 2


@pytest.mark.parametrize(
    ("params", "named"),
    [({"reviews": 0}, "reviews"), ({"reviews": 11}, "reviews"), ({"model": "x" * 201}, "model")],
)
def test_bad_parameters_are_400_naming_the_parameter(api, ingest_token, params, named):
    response = post_jsonl(api, ingest_token, lines(make_record()), **params)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(named)
    assert Transcript.objects.count() == 0


def test_a_body_over_the_limit_is_413_before_it_is_read(api, ingest_token, settings):
    settings.AUDIT_MAX_UPLOAD_BYTES = 1000
    response = post_jsonl(api, ingest_token, fixture_bytes())
    assert response.status_code == 413
    assert "AUDIT_MAX_UPLOAD_MB" in response.json()["detail"]
    assert Transcript.objects.count() == 0


def test_the_body_limit_also_holds_while_the_body_streams():
    class Streaming:
        def __init__(self, data: bytes) -> None:
            self.data = io.BytesIO(data)

        def read(self, size: int) -> bytes:
            return self.data.read(size)

    body = _Body(Streaming(b"x" * 5000), limit=4096)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="AUDIT_MAX_UPLOAD_MB"):
        body.read(8192)
    assert body.too_large


def test_form_bodies_are_415(api, ingest_token):
    response = api.post(
        f"{API}/transcripts", data={"file": "x"}, headers=bearer(ingest_token)
    )  # multipart
    assert response.status_code == 415
    assert "body" in response.json()["detail"]


def test_chunked_bodies_without_length_are_411(api, ingest_token):
    response = api.generic(
        "POST",
        f"{API}/transcripts",
        data=b"",
        content_type="application/x-ndjson",
        headers={**bearer(ingest_token), "Transfer-Encoding": "chunked"},
        CONTENT_LENGTH="",
    )
    assert response.status_code == 411


@pytest.mark.parametrize(
    ("declared", "status"),
    # Too large to read; and no length, so an empty body: nothing to import.
    [("9" * 5000, 413), ("²", 422)],
    ids=["5000-digits", "superscript"],
)
def test_a_content_length_that_is_no_number_gets_an_answer_not_a_server_error(
    api, ingest_token, declared, status
):
    # int() refuses more than 4,300 digits, and isdigit() takes "²", which int() refuses.
    response = api.generic(
        "POST",
        f"{API}/transcripts",
        data=b"",
        content_type="application/x-ndjson",
        headers=bearer(ingest_token),
        CONTENT_LENGTH=declared,
    )
    assert response.status_code == status, response.content


def test_records_arrive_as_a_file_import_stores_them(api, ingest_token, settings):
    settings.AUDIT_SPOT_CHECK_RATE = 0.0
    post_jsonl(api, ingest_token, fixture_bytes("noisy_s1"))
    posted = snapshot()
    Transcript.objects.all().delete()
    ImportBatch.objects.all().delete()
    assert not import_file(DATA_DIR / "noisy_s1.jsonl").failed
    assert snapshot() == posted


# --- runs: many requests, one batch --------------------------------------------------------------


def test_requests_of_one_run_fold_into_one_batch(api, ingest_token, staff_user):
    records = [make_record(step_number=n) for n in range(1, 7)]
    first = post_jsonl(api, ingest_token, lines(*records[:3]), run="session_1", model="m")
    second = post_jsonl(api, ingest_token, lines(*records[3:]), run="session_1")
    a, b = first.json()["batches"][0], second.json()["batches"][0]
    assert a["batch_id"] == b["batch_id"] is not None
    batch = ImportBatch.objects.get()
    assert (batch.lines, batch.imported, batch.duplicates, batch.model) == (6, 6, 0, "m")
    assert IngestRun.objects.get().batch == batch
    assert IngestRun.objects.get().created_by == staff_user
    # Line numbers read as one file: the second request's lines follow the first's.
    steps = Transcript.objects.order_by("line_number").values_list("line_number", "step_number")
    assert list(steps) == [(n, n) for n in range(1, 7)]
    # A retry of either adds nothing to the run.
    retry = post_jsonl(api, ingest_token, lines(*records[3:]), run="session_1")
    assert retry.json()["batches"][0]["duplicates"] == 3
    batch.refresh_from_db()
    assert (batch.lines, batch.imported, batch.duplicates) == (6, 6, 0)
    assert ImportBatch.including_unfinished.count() == 1


def test_a_runs_retry_with_rejected_lines_keeps_them_once(api, ingest_token):
    body = lines(make_record(step_number=1)) + b"{broken\n"
    for _ in range(2):
        post_jsonl(api, ingest_token, body, run="r", skip_invalid="true")
    post_jsonl(
        api, ingest_token, lines(make_record(step_number=2)) + b"[]\n", run="r", skip_invalid="true"
    )
    batch = ImportBatch.objects.get()
    kept = list(batch.rejected_lines.order_by("line_number").values_list("line_number", "text"))
    # Line 2 of the first request, line 2 of the third (after the run's 2 lines).
    assert kept == [(2, "{broken"), (4, "[]")]
    assert batch.rejected == 2
    assert [error["line"] for error in batch.errors] == [2, 4]


def test_a_run_refuses_other_metadata_with_409(api, ingest_token):
    post_jsonl(api, ingest_token, lines(make_record(step_number=1)), run="r", model="a")
    response = post_jsonl(api, ingest_token, lines(make_record(step_number=2)), run="r", model="b")
    assert response.status_code == 409
    assert "model" in response.json()["detail"]
    assert Transcript.objects.count() == 1
    response = post_jsonl(api, ingest_token, lines(make_record(step_number=3)), run="r", reviews=2)
    assert response.status_code == 409


def test_runs_are_per_user(api, make_token, staff_user, django_user_model):
    other = django_user_model.objects.create_user("ops", is_staff=True)
    for user, step in ((staff_user, 1), (other, 2)):
        post_jsonl(api, make_token(user, "ingest"), lines(make_record(step_number=step)), run="r")
    assert ImportBatch.objects.count() == 2
    assert IngestRun.objects.count() == 2
