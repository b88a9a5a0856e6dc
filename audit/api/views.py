"""The API's endpoints (django-ninja), mounted at /api/v1/ with its OpenAPI document at
/api/v1/openapi.json. No docs page is served: Swagger UI needs inline styles the app's CSP
refuses; the document loads in any OpenAPI viewer.

- `POST /transcripts` (scope ingest, staff): a JSONL body, plain or gzip, imported on the
  command's code path (`import_stream`), answered as `import_transcripts --json` does.
- `GET /releases`, `/releases/{version}`, `/releases/{version}/manifest`,
  `/releases/{version}/files/{path}` (scope read, staff, as the release download page).
- `GET /transcripts/{id}` (scope read, auditors and adjudicators, as the raw record page):
  the item with its reviews as `audit.review.visibility` lets the token's user see them.
- `GET /summaries` (scope read, everyone, as the dashboard): `export_summary()` figures
  of a selection (`audit.publish.selection`'s keys as query parameters) on each basis the
  token's user may see.

Every refusal is JSON `{"detail": "..."}`; the status codes are in the OpenAPI document.
"""

from __future__ import annotations

import errno
import io
import mimetypes
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from ninja import NinjaAPI, Path, Query, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.responses import Status as WithStatus
from pydantic import Field, create_model

from audit.api.auth import TokenAuth, token_user
from audit.api.schemas import (
    Error,
    ImportAnswer,
    LabelsOut,
    ReleaseFile,
    ReleaseOut,
    ReviewOut,
    SummariesOut,
    SummaryOut,
    TranscriptOut,
)
from audit.ingest.forms import UploadForm
from audit.ingest.importer import ImportBusy, RunConflict, RunMetadataError, import_stream
from audit.labels import Labels
from audit.metrics import summaries as metrics
from audit.metrics.dashboard import SUMMARY_COLUMNS
from audit.models import (
    MAX_ID,
    RUN_METADATA_MAX_LENGTH,
    ApiScope,
    ImportBatch,
    Release,
    Review,
    Status,
    Transcript,
)
from audit.permissions import ADJUDICATOR, AUDITOR, has_role, is_staff
from audit.publish import selection
from audit.publish.export import pseudonym
from audit.publish.release import CHECKSUMS, MANIFEST, SEMVER, sha256_file
from audit.review import visibility
from audit.rollup import scope

api = NinjaAPI(
    title="Transcript audit API",
    version="1",
    description=(
        "Post SENTINEL transcripts from live runs and read releases, transcripts and "
        "summaries. Authenticate with a per-user token: `Authorization: Bearer audit_...` "
        "(`manage.py create_api_token`)."
    ),
    urls_namespace="api",
    docs_url=None,
)

INGEST = TokenAuth(ApiScope.INGEST)
READ = TokenAuth(ApiScope.READ)
# What a 503 (the import lock was busy past AUDIT_API_LOCK_WAIT_SECONDS) tells the client to
# wait before it retries.
RETRY_AFTER_SECONDS = 5
MAX_REVIEWS = UploadForm.base_fields["required_reviews"].max_value  # type: ignore[attr-defined]
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/gzip")
# Media types of release files, by name (the manifest lists data, summary, card, croissant).
FILE_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    "": "text/plain; charset=utf-8",  # SHA256SUMS
}

# Every operation: 400 for a parameter that does not validate, 401 and 403 (audit.api.auth).
REFUSALS: dict[int, type[Schema]] = {400: Error, 401: Error, 403: Error}


# --- errors --------------------------------------------------------------------------------------


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = api.create_response(request, {"detail": str(exc)}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A parameter that does not validate: 400, naming each parameter and its problem."""
    problems = []
    for error in exc.errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query",))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return api.create_response(request, {"detail": "; ".join(problems)}, status=400)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "not found"}, status=404)


def _refuse(status: int, detail: str) -> HttpError:
    return HttpError(status, detail)


# --- ingest --------------------------------------------------------------------------------------


class _Body(io.RawIOBase):
    """The request body as the importer reads it, refused (an OSError, which the importer
    reports as a file-level error) as soon as it passes AUDIT_MAX_UPLOAD_BYTES: the limit of
    web uploads holds for API bodies too, checked while the body streams in."""

    def __init__(self, request: HttpRequest, *, limit: int) -> None:
        self.request = request
        self.limit = limit
        self.received = 0
        self.too_large = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.request.read(len(buffer))
        self.received += len(data)
        if self.received > self.limit:
            self.too_large = True
            raise OSError(errno.EFBIG, _too_large(self.limit))
        buffer[: len(data)] = data
        return len(data)


def _too_large(limit: int) -> str:
    return (
        f"the request body is larger than {filesizeformat(limit)} (AUDIT_MAX_UPLOAD_MB); "
        "nothing was imported: send the records in smaller requests"
    )


INGEST_BODY = {
    "required": True,
    "description": "JSONL, one exporter record a line; plain or gzip (detected by its bytes).",
    "content": {
        kind: {"schema": {"type": "string", "format": "binary"}}
        for kind in (*JSONL_TYPES, "application/octet-stream")
    },
}


@api.post(
    "/transcripts",
    auth=INGEST,
    response={
        200: ImportAnswer,
        **REFUSALS,
        409: Error,
        411: Error,
        413: Error,
        415: Error,
        422: ImportAnswer,
        503: Error,
    },
    openapi_extra={"requestBody": INGEST_BODY},
    summary="Import transcripts (JSONL, plain or gzip)",
    url_name="ingest",
)
def ingest(
    request: HttpRequest,
    skip_invalid: bool = False,
    dry_run: bool = False,
    reviews: int | None = Query(None, ge=1, le=MAX_REVIEWS),
    model: str = Query("", max_length=RUN_METADATA_MAX_LENGTH),
    run_source: str = Query("", max_length=RUN_METADATA_MAX_LENGTH),
    run: str = Query("", max_length=RUN_METADATA_MAX_LENGTH),
    name: str = Query("", max_length=200),
) -> Any:
    """Import the body on `import_transcripts`' code path: every line validated (errors
    name their line), records deduplicated by fingerprint (a retry adds nothing and says how
    many were duplicates), flags set, one batch. All or nothing unless `skip_invalid`, which
    keeps each rejected line on the batch. `reviews` is K; `model` and `run_source` go on
    the batch. Requests naming the same `run` fold into one batch per run (the first
    request's metadata holds; a request giving others is refused with 409). 200: imported, or
    nothing new; 422: refused, nothing written, the errors say why; 503: another import held
    the import lock too long, retry after Retry-After."""
    kind = request.content_type or ""
    if kind in FORM_TYPES:
        raise _refuse(
            415,
            f"send the JSONL itself as the body ({', '.join(JSONL_TYPES)}), not {kind}",
        )
    limit: int = settings.AUDIT_MAX_UPLOAD_BYTES
    declared = request.META.get("CONTENT_LENGTH") or ""
    # ASCII digits only (isdigit() takes "²", which int() refuses), and a length compared
    # before int() (which refuses more than 4,300 digits).
    if not (declared.isascii() and declared.isdigit()):
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            raise _refuse(411, "send a Content-Length: chunked bodies are not read")
        declared = "0"
    if len(declared.lstrip("0")) > len(str(limit)) or int(declared) > limit:
        raise _refuse(413, _too_large(limit))
    body = _Body(request, limit=limit)
    user = token_user(request)
    try:
        result = import_stream(
            body,  # type: ignore[arg-type]
            file_name=name.strip() or run.strip() or "api-request.jsonl",
            user=user,
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            source="api",
            required_reviews=reviews,
            model=model,
            run_source=run_source,
            run=run,
            lock_timeout=settings.AUDIT_API_LOCK_WAIT_SECONDS,
        )
    except RunMetadataError as exc:
        raise _refuse(400, str(exc)) from None
    except RunConflict as exc:
        raise _refuse(409, str(exc)) from None
    except ImportBusy as exc:
        response = api.create_response(
            request, {"detail": f"{exc}; nothing was imported, retry"}, status=503
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if body.too_large:
        raise _refuse(413, _too_large(limit))
    return WithStatus(422 if result.failed else 200, {"batches": [result.as_dict()]})


# --- releases ------------------------------------------------------------------------------------


def _require_staff(request: HttpRequest, what: str) -> None:
    user = token_user(request)
    if not is_staff(user):
        raise _refuse(403, f"{what} are for staff, and user {user.username!r} is not staff")


def _release(version: str) -> Release:
    # Only X.Y.Z is ever published; anything else never reaches the database (a NUL would).
    release = Release.objects.filter(version=version).first() if SEMVER.fullmatch(version) else None
    if release is None:
        raise Http404(f"no release {version[:50]!r}")
    return release


def _release_out(request: HttpRequest, release: Release) -> ReleaseOut:
    def url(name: str, **kwargs: str) -> str:
        return request.build_absolute_uri(reverse(f"api:{name}", kwargs=kwargs))

    listed = release.manifest.get("files", []) if isinstance(release.manifest, dict) else []
    return ReleaseOut(
        version=release.version,
        created_at=release.created_at,
        filters=release.filters or {},
        counts=release.counts or {},
        files=[
            ReleaseFile(
                path=entry["path"],
                sha256=entry["sha256"],
                size=entry["size"],
                url=url("release_file", version=release.version, path=entry["path"]),
            )
            for entry in listed
        ],
        manifest_url=url("release_manifest", version=release.version),
    )


@api.get(
    "/releases",
    auth=READ,
    response={200: list[ReleaseOut], **REFUSALS},
    summary="Published releases, newest first",
    url_name="releases",
)
def releases(request: HttpRequest) -> Any:
    _require_staff(request, "releases")
    return [_release_out(request, release) for release in Release.objects.order_by("-created_at")]


@api.get(
    "/releases/{version}",
    auth=READ,
    response={200: ReleaseOut, **REFUSALS, 404: Error},
    summary="One release",
    url_name="release",
)
def release(request: HttpRequest, version: str) -> Any:
    _require_staff(request, "releases")
    return _release_out(request, _release(version))


@api.get(
    "/releases/{version}/manifest",
    auth=READ,
    response={200: dict[str, Any], **REFUSALS, 404: Error},
    summary="A release's manifest.json: version, counts, filters, each file's sha256 and size",
    url_name="release_manifest",
)
def release_manifest(request: HttpRequest, version: str) -> Any:
    _require_staff(request, "releases")
    return _release(version).manifest


RELEASE_FILE_RESPONSE = {
    200: {
        "description": "The file, byte for byte; its sha256 is in ETag and the manifest.",
        "content": {
            kind.split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
            for kind in FILE_TYPES.values()
        },
    }
}


@api.get(
    "/releases/{version}/files/{path:path}",
    auth=READ,
    response={200: None, **REFUSALS, 404: Error, 409: Error},
    openapi_extra={"responses": RELEASE_FILE_RESPONSE},
    summary="Download one file of a release (a path its manifest lists, or "
    "manifest.json, SHA256SUMS)",
    url_name="release_file",
)
def release_file(request: HttpRequest, version: str, path: str) -> Any:
    """A file the manifest lists is checked against the manifest's sha256 and size before it
    is sent (409 when it does not match: the release is damaged, `manage.py verify_release`
    says how); manifest.json and SHA256SUMS, which hold those checksums, are sent as they are."""
    _require_staff(request, "releases")
    found = _release(version)
    listed = {
        entry.get("path"): entry
        for entry in found.manifest.get("files", [])
        if isinstance(entry, dict)
    }
    if path not in listed and path not in (MANIFEST, CHECKSUMS):
        raise Http404(f"release {found.version} has no file {path[:200]!r}")
    root = FilePath(found.path).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise Http404(f"release {found.version}: {path} is missing from its folder")
    entry = listed.get(path)
    digest = sha256_file(target)
    if entry is not None and (
        digest != entry.get("sha256") or target.stat().st_size != entry.get("size")
    ):
        raise _refuse(
            409,
            f"release {found.version}: {path} does not match its manifest (sha256 {digest}); "
            "the release is damaged: run manage.py verify_release",
        )
    kind = FILE_TYPES.get(target.suffix, mimetypes.guess_type(target.name)[0] or "")
    response = FileResponse(
        target.open("rb"),
        as_attachment=True,
        filename=target.name,
        content_type=kind or FILE_TYPES[""],
    )
    response["ETag"] = f'"{digest}"'
    return response


# --- transcripts ---------------------------------------------------------------------------------


def _labels(labels: Labels, *, category: str) -> LabelsOut:
    return LabelsOut(
        is_misbehavior=labels.is_misbehavior,
        misbehavior_type=labels.misbehavior_type,
        correct_decision=labels.correct_decision,
        alignment_category=category,
    )


def _review_out(review: Review, *, viewer_id: int) -> ReviewOut:
    return ReviewOut(
        auditor=pseudonym(review.auditor_id),
        own=review.auditor_id == viewer_id,
        verdict=review.verdict,
        created_at=review.created_at,
        is_misbehavior=review.is_misbehavior,
        misbehavior_type=review.misbehavior_type,
        correct_decision=review.correct_decision,
        rationale=review.rationale,
        seconds_spent=review.seconds_spent,
        superseded=review.superseded_by_id is not None,
    )


@api.get(
    "/transcripts/{transcript_id}",
    auth=READ,
    response={200: TranscriptOut, **REFUSALS, 404: Error},
    summary="One transcript with its reviews, as the token's user may see them",
    url_name="transcript",
)
def transcript(request: HttpRequest, transcript_id: int = Path(..., ge=1, le=MAX_ID)) -> Any:
    """Blind review holds (`audit.review.visibility`): before the token's user gave a verdict
    of their own, others' reviews, the final labels and how the item was settled are hidden,
    unless the user adjudicates an item in adjudication. Auditors appear as pseudonyms."""
    user = token_user(request)
    if not (has_role(user, AUDITOR) or has_role(user, ADJUDICATOR)):
        raise _refuse(
            403, f"transcripts are for auditors and adjudicators; user {user.username!r} is neither"
        )
    item = Transcript.objects.select_related("text").filter(pk=transcript_id).first()
    if item is None:
        raise Http404(f"no transcript #{transcript_id}")
    reviews = list(Review.objects.filter(transcript=item).order_by("created_at", "id"))
    current = [review for review in reviews if review.superseded_by_id is None]
    seen = visibility.item_visibility(item, user, current)
    shown = reviews if seen.see_all else [r for r in reviews if r.auditor_id == user.pk]
    return TranscriptOut(
        id=item.pk,
        batch_id=item.batch_id,
        fingerprint=item.fingerprint,
        session_id=item.session_id,
        task_id=item.task_id,
        step_number=item.step_number,
        decision_type=item.decision_type,
        flags=item.flags,
        problems=item.problems,
        required_reviews=item.required_reviews,
        status=seen.status.value,
        reviews_visible=seen.see_all,
        imported=_labels(item.imported_labels, category=item.imported_category),
        final=_labels(
            item.final_labels,
            category=visibility.shown_category(item, see_all=True),
        )
        if seen.see_all
        else None,
        reviews=[_review_out(review, viewer_id=user.pk) for review in shown],
        raw=item.text.raw,
    )


# --- summaries -----------------------------------------------------------------------------------

# The selection vocabulary's keys as repeatable query parameters, each a list of values.
SelectionQuery: type[Schema] = create_model(  # type: ignore[call-overload]
    "SelectionQuery",
    __base__=Schema,
    view=(
        list[str],
        Field(
            default_factory=list,
            description=f"the views to give (default: every one the user may see): "
            f"{', '.join(metrics.VIEWS)}",
        ),
    ),
    **{
        key: (list[str], Field(default_factory=list, description=f"{spec.label} (repeatable)"))
        for key, spec in selection.FILTERS.items()
    },
)

if TYPE_CHECKING:
    SelectionParams = Schema  # built at run time: mypy sees its base
else:
    SelectionParams = SelectionQuery


@api.get(
    "/summaries",
    auth=READ,
    response={200: SummariesOut, **REFUSALS},
    summary="export_summary() figures of a selection, on each basis the token's user may see",
    url_name="summaries",
)
def summaries(request: HttpRequest, query: Query[SelectionParams]) -> Any:
    """The views are the dashboard's: as imported, current, and the settled records before
    and after review, each with its n. An auditor who is neither adjudicator nor staff gets the
    as-imported view only (`visibility.blind_on_dashboard`), and may filter by status only in
    the ways the queue lets them (settled, never which way)."""
    user = token_user(request)
    asked: dict[str, Any] = query.model_dump()
    views = asked.pop("view") or []
    try:
        chosen = selection.Selection.of(asked)
    except selection.SelectionError as exc:
        raise _refuse(400, str(exc)) from None
    unknown = [view for view in views if view not in metrics.VIEWS]
    if unknown:
        raise _refuse(400, f"unknown view {unknown[0]!r}; use one of: {', '.join(metrics.VIEWS)}")
    for batch in chosen.filters.get("batch", ()):
        if not ImportBatch.objects.filter(pk=int(batch)).exists():
            raise _refuse(400, f"there is no import batch #{batch}")
    blind = visibility.blind_on_dashboard(user)
    if blind:
        _refuse_blind(user, views=views, statuses=chosen.filters.get("status", ()))
    selected = scope(chosen)
    if blind:
        figures = {
            metrics.AS_IMPORTED: metrics.summarize(
                selected.counts, basis=metrics.AS_IMPORTED, records=selected.records
            )
        }
    else:
        figures = metrics.summaries(selected.counts, records=selected.records)
    names = views or list(figures)
    return SummariesOut(
        selection=chosen.as_dict(),
        blind=blind,
        summaries=[
            SummaryOut(
                view=name,
                label=SUMMARY_COLUMNS[name],
                n=figures[name].get("total_decisions", figures[name].get("total", 0)),
                summary=figures[name],
            )
            for name in names
        ],
    )


def _refuse_blind(user: Any, *, views: list[str], statuses: tuple[str, ...]) -> None:
    """403 for what a blind auditor may not ask: an after-review view, or a way of being
    settled as a status filter (the queue offers them "settled" only)."""
    hidden = [view for view in views if view != metrics.AS_IMPORTED]
    if hidden:
        raise _refuse(
            403,
            f"the {hidden[0]!r} view holds figures after review, which are hidden from "
            f"auditors (user {user.username!r}); ask for as_imported",
        )
    offered = {value for value, _ in visibility.status_choices(user)} & set(Status.values)
    for status in statuses:
        if status not in offered:
            raise _refuse(
                403,
                f"filtering by status {status!r} would tell how items were settled, which is "
                f"hidden from auditors; allowed: {', '.join(sorted(offered))}",
            )
