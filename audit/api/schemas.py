"""The API's request and response shapes, as the OpenAPI document states them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Schema

from audit.ingest.importer import ImportResult


class Error(Schema):
    """Every refusal: what is wrong, in one sentence."""

    detail: str


class ImportAnswer(Schema):
    """The answer of ingest: the shape of `import_transcripts --json`, with one batch, each the
    importer's own ``ImportResult`` (``as_dict``)."""

    batches: list[ImportResult]


class ReleaseFile(Schema):
    path: str
    sha256: str
    size: int
    url: str


class ReleaseOut(Schema):
    version: str
    created_at: dt.datetime
    filters: dict[str, Any]
    counts: dict[str, Any]
    files: list[ReleaseFile]
    manifest_url: str


class LabelsOut(Schema):
    is_misbehavior: bool
    misbehavior_type: str
    correct_decision: str
    alignment_category: str


class ReviewOut(Schema):
    """One review as the token's user may see it: the auditor only as the export's pseudonym."""

    auditor: str | None
    own: bool
    verdict: str
    created_at: dt.datetime
    is_misbehavior: bool | None
    misbehavior_type: str
    correct_decision: str
    rationale: str
    seconds_spent: int
    superseded: bool


class TranscriptOut(Schema):
    id: int
    batch_id: int
    fingerprint: str
    session_id: str
    task_id: str
    step_number: int
    decision_type: str
    flags: list[str]
    problems: list[dict[str, Any]]
    required_reviews: int
    status: str
    # Whether others' reviews, the final labels and how the item was settled are shown.
    reviews_visible: bool
    # The imported ground truth, with the category it derives (``imported_category``).
    imported: LabelsOut
    # The final labels; null while hidden from the token's user.
    final: LabelsOut | None
    # Every review when visible, else the token user's own.
    reviews: list[ReviewOut]
    # The JSONL line as imported, verbatim (it may hold NaN, which JSON cannot).
    raw: str


class SummaryOut(Schema):
    """One view of the selection: its name, its heading, its n, and ``export_summary()``'s
    keys and arithmetic (``{"total": 0}`` for an empty one)."""

    view: str
    label: str
    n: int
    summary: dict[str, Any]


class SummariesOut(Schema):
    selection: dict[str, list[str]]
    # True when after-review views are hidden from the token's user.
    blind: bool
    summaries: list[SummaryOut]
