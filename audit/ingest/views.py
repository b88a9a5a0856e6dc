"""Staff screens for imports: upload a file, follow its import, list batches, get rejects."""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_GET, require_http_methods

from audit.htmx import pager, render_screen
from audit.ingest.forms import UploadForm
from audit.ingest.uploads import TOO_LARGE_FLAG, accept_upload
from audit.models import ImportBatch, ImportJob
from audit.permissions import AuditRequest, staff_required
from audit.tasks import fail_stale_jobs, read_progress, waiting_for_worker, worker_hint


@require_GET
@staff_required
def batch_list(request: AuditRequest) -> HttpResponse:
    # A write on GET: the uploads listed here must not say "Running" for a job that died.
    fail_stale_jobs()
    page = Paginator(
        ImportBatch.objects.select_related("created_by").order_by("-created_at", "-id"), 50
    ).get_page(request.GET.get("page"))
    jobs = ImportJob.objects.select_related("batch").filter(created_by=request.user)[:10]
    return render(
        request,
        "audit/imports.html",
        {
            "page": page,
            "jobs": jobs,
            "form": UploadForm(),
            "nav": "imports",
            **pager(page, lambda n: f"?page={n}"),
        },
    )


@require_http_methods(["GET", "POST"])
@staff_required
def upload(request: AuditRequest) -> HttpResponse:
    # audit.ingest.uploads.SizeLimitUploadHandler stopped an oversized upload while it streamed in.
    if request.method == "POST" and _stopped(request):
        limit = filesizeformat(settings.AUDIT_MAX_UPLOAD_BYTES)
        return render(
            request,
            "audit/upload.html",
            {"form": UploadForm(), "nav": "imports", "too_large": limit},
            status=413,
        )
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        job = accept_upload(
            form.cleaned_data["file"],
            user=request.user,
            skip_invalid=form.cleaned_data["skip_invalid"],
            required_reviews=form.cleaned_data["required_reviews"],
            model=form.cleaned_data["model"],
            run_source=form.cleaned_data["run_source"],
        )
        return redirect("import_job", job_id=job.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "audit/upload.html", {"form": form, "nav": "imports"}, status=status)


def _stopped(request: AuditRequest) -> bool:
    """True when audit.ingest.uploads.SizeLimitUploadHandler cut the upload short. Reading
    ``request.FILES`` parses the body, which is what runs the handler."""
    _ = request.FILES
    return bool(getattr(request, TOO_LARGE_FLAG, False))


@require_GET
@staff_required
def import_job(request: AuditRequest, job_id: int) -> HttpResponse:
    # A write on GET: a job whose worker died is failed, with the reason, before it is shown.
    fail_stale_jobs(job_ids=[job_id])
    job = get_object_or_404(ImportJob.objects.select_related("batch"), pk=job_id)
    progress = read_progress(job.pk) if job.state == ImportJob.State.RUNNING else None
    percent = None
    if progress and progress.get("total"):
        percent = min(100, round(100 * progress["read"] / progress["total"]))
    # A problem with the file as a whole (empty, truncated, over a limit) has no line number.
    file_error = next(
        (e.get("error", "") for e in job.report.get("errors", []) if not e.get("line")), ""
    )
    waited = waiting_for_worker(job)
    context = {
        "job": job,
        "waiting": worker_hint(waited) if waited else "",
        "report": job.report,
        "percent": percent,
        "nav": "imports",
        "file_error": file_error,
    }
    return render_screen(request, "audit/import_job.html", "job-status", context)


@require_GET
@staff_required
def batch_detail(request: AuditRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(ImportBatch.objects.select_related("created_by"), pk=batch_id)
    rejected = Paginator(batch.rejected_lines.order_by("line_number"), 100).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "audit/batch_detail.html",
        {
            "batch": batch,
            "rejected": rejected,
            "nav": "imports",
            **pager(rejected, lambda n: f"?page={n}"),
        },
    )


@require_GET
@staff_required
def rejected_download(request: AuditRequest, batch_id: int) -> StreamingHttpResponse:
    batch = get_object_or_404(ImportBatch, pk=batch_id)
    # The lines as they were received, byte for byte (not every rejected line is UTF-8).
    lines = (
        line.line_bytes() + b"\n"
        for line in batch.rejected_lines.order_by("line_number")
        .only("text", "encoding")
        .iterator(chunk_size=2000)
    )
    response = StreamingHttpResponse(lines, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}-rejected.jsonl"'
    return response
