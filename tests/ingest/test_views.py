"""Staff import screens: upload, job report, batch list and detail, rejected-line download."""

import gzip
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.tasks.signals import task_enqueued
from django.urls import reverse

from audit.models import ImportBatch, ImportJob, RejectedLine, Transcript
from tests.factories import DATA_DIR, import_fixture, make_record

pytestmark = pytest.mark.django_db


def upload(client, content: bytes, name="t.jsonl", **extra):
    data = {"file": SimpleUploadedFile(name, content), "required_reviews": 1, **extra}
    return client.post(reverse("upload"), data)


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    """A MEDIA_ROOT of the test's own, where accepted uploads are kept (under uploads/)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def enqueued():
    """Every task enqueued during the test, whatever the backend."""
    results = []

    def note(sender, task_result, **kwargs):
        results.append(task_result)

    task_enqueued.connect(note)
    yield results
    task_enqueued.disconnect(note)


def assert_nothing_accepted(media_root: Path, enqueued: list) -> None:
    """A refused upload leaves no trace: no job, no kept file, no import queued."""
    assert ImportJob.objects.count() == 0
    uploads = media_root / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    assert enqueued == []
    assert ImportBatch.objects.count() == 0 and Transcript.objects.count() == 0


def test_an_accepted_upload_is_kept_under_media_root_and_enqueued_once(
    staff_client, media_root, enqueued
):
    # The probes of the refused uploads below see an accepted one.
    upload(staff_client, (DATA_DIR / "rule_s0.jsonl").read_bytes())
    job = ImportJob.objects.get()
    assert Path(job.upload_path).parent == media_root / "uploads"
    assert [result.task.name for result in enqueued] == ["import_upload"]
    assert enqueued[0].args == [job.pk]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (gzip.compress(b'{"a": 1}\n' * 50)[:-12], "truncated"),
        (gzip.compress(b"\n\n"), "empty"),
    ],
)
def test_the_job_page_says_what_is_wrong_with_the_file_itself(staff_client, content, said):
    response = upload(staff_client, content, name="broken.jsonl")
    page = staff_client.get(response.url).content.decode()
    assert 'id="job-file-error"' in page and said in page
    assert "a line is invalid" not in page and "already stored" not in page


def test_upload_imports_and_shows_the_report(staff_client, staff_user):
    response = upload(staff_client, (DATA_DIR / "rule_s0.jsonl").read_bytes(), name="rule.jsonl")
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response.url == reverse("import_job", args=[job.pk])
    assert job.state == ImportJob.State.DONE and job.batch is not None
    batch = job.batch
    assert (batch.imported, batch.source, batch.created_by, batch.file_name) == (
        105,
        "upload",
        staff_user,
        "rule.jsonl",
    )
    page = staff_client.get(response.url)
    assert page.status_code == 200
    assert b'id="job-imported">105<' in page.content


def test_upload_of_gzip_works(staff_client):
    upload(
        staff_client, gzip.compress((DATA_DIR / "rule_s0.jsonl").read_bytes()), name="r.jsonl.gz"
    )
    assert Transcript.objects.count() == 105


def test_upload_with_a_bad_line_imports_nothing_and_lists_the_error(staff_client):
    content = (json.dumps(make_record()) + "\n{nope\n").encode()
    response = upload(staff_client, content, name="bad.jsonl")
    page = staff_client.get(response.url)
    assert Transcript.objects.count() == 0 and ImportBatch.objects.count() == 0
    assert ImportJob.objects.get().state == ImportJob.State.FAILED
    assert b"bad.jsonl:2: json: not valid JSON" in page.content
    assert b"Nothing from this file was imported" in page.content


def test_upload_with_skip_invalid_keeps_rejected_lines_for_download(staff_client):
    bad = '{"session_id": "s", "step_number": null, "note": "<b>x</b>"}'
    content = (json.dumps(make_record()) + "\n" + bad + "\n").encode()
    response = upload(staff_client, content, skip_invalid="on")
    job = ImportJob.objects.get()
    assert job.batch.imported == 1 and job.batch.rejected == 1
    detail = staff_client.get(reverse("batch_detail", args=[job.batch.pk]))
    assert b"step_number: missing" in detail.content
    assert b"&lt;b&gt;x&lt;/b&gt;" in detail.content  # hostile text escaped
    download = staff_client.get(reverse("rejected_download", args=[job.batch.pk]))
    assert download["Content-Disposition"].startswith("attachment")
    assert b"".join(download.streaming_content) == (bad + "\n").encode()
    assert staff_client.get(response.url).status_code == 200


def test_upload_removes_the_transient_file(staff_client):
    upload(staff_client, (DATA_DIR / "rule_s0.jsonl").read_bytes())
    job = ImportJob.objects.get()
    from pathlib import Path

    assert not Path(job.upload_path).exists()


def test_upload_over_the_size_limit_is_refused(staff_client, settings, media_root, enqueued):
    settings.AUDIT_MAX_UPLOAD_BYTES = 10
    response = upload(staff_client, b"x" * 100)
    assert response.status_code == 413
    assert b"larger than the 10" in response.content
    assert_nothing_accepted(media_root, enqueued)


def test_upload_form_also_checks_the_size(settings):
    from audit.ingest.forms import UploadForm

    settings.AUDIT_MAX_UPLOAD_BYTES = 10
    form = UploadForm({"required_reviews": 1}, {"file": SimpleUploadedFile("a.jsonl", b"x" * 11)})
    assert not form.is_valid()
    assert "the limit is 10\xa0bytes" in form.errors["file"][0]


def test_upload_body_far_over_the_limit_is_refused_before_reading(
    staff_client, settings, media_root, enqueued
):
    settings.AUDIT_MAX_UPLOAD_BYTES = 10
    response = upload(staff_client, b"x" * (2 * 1024 * 1024))
    assert response.status_code == 413
    assert_nothing_accepted(media_root, enqueued)


def test_upload_form_renders(staff_client):
    response = staff_client.get(reverse("upload"))
    assert response.status_code == 200 and b'id="upload-form"' in response.content


def test_batch_list_shows_batches(staff_client):
    import_fixture("rule_s0")
    response = staff_client.get(reverse("batch_list"))
    assert response.status_code == 200 and b"rule_s0.jsonl" in response.content


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("batch_list", []),
        ("upload", []),
        ("import_job", [1]),
        ("batch_detail", [1]),
        ("rejected_download", [1]),
    ],
)
def test_import_views_require_login(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("batch_list", []),
        ("upload", []),
        ("import_job", [1]),
        ("batch_detail", [1]),
        ("rejected_download", [1]),
    ],
)
def test_import_views_require_staff(auditor_client, name, args):
    assert auditor_client.get(reverse(name, args=args)).status_code == 403


@pytest.mark.parametrize("name", ["import_job", "batch_detail", "rejected_download"])
def test_missing_objects_are_404(staff_client, name):
    assert staff_client.get(reverse(name, args=[424242])).status_code == 404


@pytest.mark.parametrize(
    ("name", "args"),
    [("batch_list", []), ("import_job", [1]), ("batch_detail", [1]), ("rejected_download", [1])],
)
def test_read_only_views_refuse_post(staff_client, name, args):
    assert staff_client.post(reverse(name, args=args)).status_code == 405


def test_upload_refuses_put(staff_client):
    assert staff_client.put(reverse("upload")).status_code == 405


def test_job_status_htmx_request_returns_only_the_fragment(staff_client):
    upload(staff_client, (DATA_DIR / "rule_s0.jsonl").read_bytes())
    job = ImportJob.objects.get()
    response = staff_client.get(reverse("import_job", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'id="job-status"' in response.content and b"<html" not in response.content


def test_rejected_download_streams_every_line(staff_client, tmp_path):
    from audit.ingest.importer import import_file

    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(f"bad {n}" for n in range(2500)) + "\n")
    result = import_file(path, skip_invalid=True)
    assert RejectedLine.objects.count() == 2500
    response = staff_client.get(reverse("rejected_download", args=[result.batch_id]))
    assert b"".join(response.streaming_content).decode().splitlines() == [
        f"bad {n}" for n in range(2500)
    ]


def test_running_job_page_shows_progress_read_from_the_task(
    staff_client, staff_user, tmp_path, settings
):
    from audit.tasks import _progress_writer

    settings.VAR_DIR = tmp_path
    job = ImportJob.objects.create(
        created_by=staff_user,
        file_name="big.jsonl",
        upload_path=str(tmp_path / "x"),
        state=ImportJob.State.RUNNING,
    )
    _progress_writer(job.pk, 1000)(250)
    response = staff_client.get(reverse("import_job", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert b'<progress id="job-progress" max="100" value="25">' in response.content
    assert b'hx-trigger="every 1s"' in response.content


def test_upload_without_content_length_is_stopped_past_the_limit(
    staff_client, settings, media_root, enqueued
):
    """A chunked body has no Content-Length: the upload handler stops it as it streams."""
    settings.AUDIT_MAX_UPLOAD_BYTES = 64 * 1024
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

    body = encode_multipart(
        BOUNDARY,
        {"file": SimpleUploadedFile("big.jsonl", b"x" * (200 * 1024)), "required_reviews": "1"},
    )
    response = staff_client.generic(
        "POST",
        reverse("upload"),
        body,
        content_type=MULTIPART_CONTENT,
        CONTENT_LENGTH=str(70 * 1024),  # lies low, as a chunked request effectively does
    )
    assert response.status_code == 413
    assert_nothing_accepted(media_root, enqueued)


def test_oversized_upload_is_refused_with_csrf_enforced(staff_user, settings, media_root, enqueued):
    """As in production: the CSRF middleware parses the body before the view runs."""
    from django.test import Client

    settings.AUDIT_MAX_UPLOAD_BYTES = 10
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    page = client.get(reverse("upload"))
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("upload"),
        {
            # The token comes first, as in the page's form, so it is parsed before the file.
            "csrfmiddlewaretoken": token,
            "file": SimpleUploadedFile("big.jsonl", b"x" * 100),
            "required_reviews": 1,
        },
    )
    assert response.status_code == 413
    assert_nothing_accepted(media_root, enqueued)


def test_several_files_in_one_request_cannot_add_up_past_the_limit(
    staff_client, settings, media_root, enqueued
):
    settings.AUDIT_MAX_UPLOAD_BYTES = 150
    response = staff_client.post(
        reverse("upload"),
        {
            "file": SimpleUploadedFile("a.jsonl", b"x" * 100),
            "other": SimpleUploadedFile("b.jsonl", b"y" * 100),
            "required_reviews": 1,
        },
    )
    assert response.status_code == 413
    assert_nothing_accepted(media_root, enqueued)


def test_upload_carries_model_and_run_source_through_the_job_to_the_batch(staff_client):
    upload(
        staff_client,
        (DATA_DIR / "rule_s0.jsonl").read_bytes(),
        model="  sentinel-7b ",
        run_source="rule policy",
    )
    job = ImportJob.objects.get()
    assert (job.model, job.run_source) == ("sentinel-7b", "rule policy")
    assert (job.batch.model, job.batch.run_source) == ("sentinel-7b", "rule policy")


def test_upload_without_model_and_run_source_leaves_them_unknown(staff_client):
    upload(staff_client, (DATA_DIR / "rule_s0.jsonl").read_bytes())
    batch = ImportJob.objects.get().batch
    assert (batch.model, batch.run_source) == ("", "")


@pytest.mark.parametrize("field", ["model", "run_source"])
def test_upload_with_run_metadata_over_200_characters_is_refused(
    staff_client, field, media_root, enqueued
):
    response = upload(staff_client, (DATA_DIR / "rule_s0.jsonl").read_bytes(), **{field: "x" * 201})
    assert response.status_code == 400
    assert response.context["form"].errors[field] == [
        "Ensure this value has at most 200 characters (it has 201)."
    ]
    assert b"at most 200 characters" in response.content
    assert_nothing_accepted(media_root, enqueued)


def test_upload_form_offers_model_and_run_source(staff_client):
    content = staff_client.get(reverse("upload")).content.decode()
    assert 'name="model"' in content and 'name="run_source"' in content
    assert "Model" in content and "Run source" in content
    assert 'maxlength="200"' in content


def test_batch_pages_show_model_and_run_source_escaped(staff_client, tmp_path):
    from audit.ingest.importer import import_file
    from tests.factories import write_jsonl

    path = write_jsonl(tmp_path / "r.jsonl", [make_record()])
    result = import_file(path, model="<b>gpt</b>", run_source="noisy policy")
    import_fixture("rule_s0")  # a second batch, without metadata
    listing = staff_client.get(reverse("batch_list")).content.decode()
    assert "&lt;b&gt;gpt&lt;/b&gt;" in listing and "<b>gpt</b>" not in listing
    assert "noisy policy" in listing and "<th>Model</th><th>Run source</th>" in listing
    assert ">unknown<" in listing
    detail = staff_client.get(reverse("batch_detail", args=[result.batch_id])).content.decode()
    assert '<dd id="batch-model">&lt;b&gt;gpt&lt;/b&gt;</dd>' in detail
    assert '<dd id="batch-run-source">noisy policy</dd>' in detail
    other = ImportBatch.objects.exclude(pk=result.batch_id).get()
    detail = staff_client.get(reverse("batch_detail", args=[other.pk])).content.decode()
    assert '<dd id="batch-model"><span class="muted">unknown</span></dd>' in detail
