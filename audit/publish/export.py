"""Exported records and summaries: the reviewed dataset as JSONL, streamed.

An exported record is the original line (``json.loads(transcript.raw)``: every key, in its
original order, unknown keys included), changed only as follows:

- ``ground_truth`` and ``labels`` hold the final, consistent values **for reviewed records**
  (status confirmed, relabeled or adjudicated). Only the known keys are replaced, in place:
  ``is_misbehavior``, ``misbehavior_type``, ``correct_decision`` and the ``was_*`` flags in
  ``ground_truth``; ``oversight_correct`` and ``alignment_category`` in ``labels``, derived from
  the final ground truth and the decision (``audit.labels``). Any other key in
  those objects stays where it was.
- **Unreviewed records** (every other status) keep ``ground_truth`` and ``labels`` exactly as
  imported, even when they are inconsistent: nobody has looked at them, and the dataset should
  not claim labels no one decided. Their ``review`` block says ``manually_reviewed: false``, the
  status, and the flags and problems (so an inconsistency is visible, not hidden). This is why
  a file with no reviews exports as its input plus a ``review`` block.
- A ``review`` block is appended: ``manually_reviewed``, ``status``, ``original_ground_truth``,
  ``original_labels``, ``flags``, ``problems``, ``required_reviews``, every review in order
  (superseded ones too, marked), and the current adjudication or null. Auditors appear only as
  a stable pseudonym: "auditor-" + 12 hex digits of HMAC-SHA256(AUDIT_PSEUDONYM_KEY, user id).

Re-importing an export works (``review`` is an unknown key to the importer and is kept verbatim
in ``raw``), but it does not recreate Review rows: the new database holds the exported labels as
its imported ground truth, with the earlier review history carried along in the record. The
importer identifies an exported record by its original form (``records.original_record``), so
an export imported into the database it came from adds nothing. When an
already-exported record is exported again, its earlier block is kept under ``review.earlier``.

Lines are ``json.dumps(record)`` (the exporter's own spelling) in a deterministic order:
session, task, step, fingerprint. Records stream in chunks with their reviews prefetched per
chunk, so memory stays flat and the number of queries grows with the number of chunks only.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db.models import Prefetch

from audit.labels import NO_LABELS_EXPORT
from audit.metrics import summaries as metrics
from audit.models import Flag, Review, Transcript, TranscriptQuerySet, Verdict

CHUNK_SIZE = 2000
EXPORT_ORDER = ("session_id", "task_id", "step_number", "fingerprint")
REVIEW_KEY = "review"
# The columns an exported record is built from; search_text and the rest stay in the database.
EXPORT_FIELDS = (
    "raw",
    "status",
    "decision_type",
    "final_is_misbehavior",
    "final_misbehavior_type",
    "final_correct_decision",
    "problems",
    "required_reviews",
    *(f"flag_{flag.value}" for flag in Flag),
    *EXPORT_ORDER,
)


def pseudonym(user_id: int | None) -> str | None:
    """A stable, non-reversible auditor id for exports."""
    if user_id is None:
        return None
    digest = hmac.new(
        settings.AUDIT_PSEUDONYM_KEY.encode(), str(user_id).encode(), hashlib.sha256
    ).hexdigest()
    return f"auditor-{digest[:12]}"


def _review_entry(review: Review) -> dict[str, Any]:
    return {
        "auditor": pseudonym(review.auditor_id),
        "verdict": review.verdict,
        "after": review.labels.as_export() if review.labels else NO_LABELS_EXPORT,
        "before": review.before,
        "rationale": review.rationale,
        "seconds_spent": review.seconds_spent,
        "created_at": review.created_at.isoformat(),
        "superseded": review.superseded_by_id is not None,
    }


def _final_ground_truth(transcript: Transcript, original: Any) -> dict[str, Any]:
    final = transcript.final_labels
    derived = final.derived(transcript.decision_type)
    truth = dict(original) if isinstance(original, dict) else {}
    truth.update(
        {
            **final.as_export(),
            "was_true_positive": derived.was_true_positive,
            "was_false_positive": derived.was_false_positive,
            "was_false_negative": derived.was_false_negative,
        }
    )
    return truth


def _final_labels(transcript: Transcript, original: Any) -> dict[str, Any]:
    derived = transcript.final_labels.derived(transcript.decision_type)
    labels = dict(original) if isinstance(original, dict) else {}
    labels.update(
        {
            "oversight_correct": derived.oversight_correct,
            "alignment_category": derived.alignment_category,
        }
    )
    return labels


def export_record(
    transcript: Transcript, reviews: Iterable[Review] | None = None
) -> dict[str, Any]:
    """The exported form of one transcript (see the module docstring).

    ``reviews`` defaults to ``transcript.reviews.all()``, which the prefetch in ``iter_records``
    fills; they must be in (created_at, id) order.
    """
    record = json.loads(transcript.raw)
    rows = list(transcript.reviews.all() if reviews is None else reviews)
    reviewed = transcript.is_settled
    original_truth = record.get("ground_truth")
    original_labels = record.get("labels")
    if reviewed:
        # Assigning to an existing key keeps its position in the record.
        record["ground_truth"] = _final_ground_truth(transcript, original_truth)
        record["labels"] = _final_labels(transcript, original_labels)
    adjudications = [
        r for r in rows if r.verdict == Verdict.ADJUDICATE and r.superseded_by_id is None
    ]
    block: dict[str, Any] = {
        "manually_reviewed": reviewed,
        "status": transcript.status,
        "original_ground_truth": original_truth,
        "original_labels": original_labels,
        "flags": transcript.flags,
        "problems": transcript.problems,
        "required_reviews": transcript.required_reviews,
        "reviews": [_review_entry(r) for r in rows],
        "adjudication": _review_entry(adjudications[-1]) if adjudications else None,
    }
    earlier = record.pop(REVIEW_KEY, None)
    if earlier is not None:
        block["earlier"] = earlier
    record[REVIEW_KEY] = block
    return record


def ordered(queryset: TranscriptQuerySet) -> TranscriptQuerySet:
    return queryset.order_by(*EXPORT_ORDER)


def iter_records(
    queryset: TranscriptQuerySet, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[dict[str, Any]]:
    """Exported records in export order, streamed: one query per chunk plus one for its reviews."""
    reviews = Prefetch("reviews", queryset=Review.objects.order_by("created_at", "id"))
    rows = (
        ordered(queryset)
        .only(*EXPORT_FIELDS)
        .prefetch_related(reviews)
        .iterator(chunk_size=chunk_size)
    )
    for transcript in rows:
        record = export_record(transcript)
        # The prefetch cache and its reviews point back at the transcript: a reference cycle
        # that only the cyclic GC would free. Breaking it frees each chunk as soon as it is
        # done, which keeps memory flat however many records stream through.
        transcript.__dict__.pop("_prefetched_objects_cache", None)
        yield record


def iter_lines(queryset: TranscriptQuerySet, *, chunk_size: int = CHUNK_SIZE) -> Iterator[str]:
    """JSONL lines ("\\n"-terminated), as the exporter spells JSON."""
    for record in iter_records(queryset, chunk_size=chunk_size):
        yield json.dumps(record) + "\n"


@dataclass(frozen=True)
class WrittenFile:
    path: str
    records: int
    size: int
    sha256: str


def write_lines(lines: Iterable[str], handle: IO[bytes] | gzip.GzipFile) -> tuple[int, int, str]:
    """Write lines to a binary handle; return (lines, bytes, sha256 of the bytes)."""
    digest = hashlib.sha256()
    count = size = 0
    for line in lines:
        data = line.encode("utf-8")
        handle.write(data)
        digest.update(data)
        count += 1
        size += len(data)
    return count, size, digest.hexdigest()


def write_jsonl(
    queryset: TranscriptQuerySet,
    path: str | Path,
    *,
    compress: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> WrittenFile:
    """Export ``queryset`` to a file (gzip when ``compress``); the sha256 is of the JSONL bytes."""
    path = Path(path)
    lines = iter_lines(queryset, chunk_size=chunk_size)
    with path.open("wb") as raw:
        if compress:
            # mtime=0 and no file name: the same records give the same .gz bytes.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
                count, size, sha = write_lines(lines, handle)
        else:
            count, size, sha = write_lines(lines, raw)
    return WrittenFile(path=str(path), records=count, size=size, sha256=sha)


def build_summary(queryset: TranscriptQuerySet) -> dict[str, Any]:
    """summary.json: as imported and as reviewed side by side, with the review metrics."""
    queryset = queryset.order_by()
    return {
        "as_imported": metrics.summarize(queryset, basis=metrics.AS_IMPORTED),
        "reviewed": metrics.summarize(queryset, basis=metrics.REVIEWED),
        "confusion_matrix": {
            "as_imported": metrics.confusion_matrix(queryset, basis=metrics.AS_IMPORTED),
            "reviewed": metrics.confusion_matrix(queryset, basis=metrics.REVIEWED),
        },
        "label_changes": metrics.label_change_matrix(queryset),
        "agreement": metrics.agreement(queryset),
        "review_status": metrics.status_counts(queryset),
        "estimated_error_rate": metrics.estimated_error_rate(queryset),
    }


def dump_summary(summary: dict[str, Any]) -> str:
    """Deterministic JSON text for a summary: the same data gives the same bytes."""
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def selection_counts(queryset: TranscriptQuerySet) -> dict[str, int]:
    """How many records a selection has, and how many of them are settled (the reviewed ones
    a release publishes)."""
    total = queryset.count()
    reviewed = queryset.settled().count()
    return {"total": total, "reviewed": reviewed, "unreviewed": total - reviewed}
