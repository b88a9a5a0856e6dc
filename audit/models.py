"""Schema of the audit app: import batches, transcripts with their flags, reviews, releases.

A Transcript keeps the original JSONL line verbatim (``TranscriptText.raw``, a table of its
own) so it comes back out losslessly; the transcript's columns are copies of the values that
filters, sorting and metrics need, extracted once at import (see ``audit.ingest.records``).
Reviews are append-only; a transcript's ``final_*`` columns and ``status`` are a cache derived
from its reviews (``audit.review.workflow``). What the labels mean is ``audit.labels``; the
QuerySet methods here name the queries every module repeats (current reviews, settled items,
live leases).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from audit.labels import Category, Labels, derive_category


class Flag(models.TextChoices):
    """Why a transcript is in the review queue. Each has a boolean column ``flag_<value>``."""

    MISSED_MISBEHAVIOR = "missed_misbehavior", "Missed misbehavior"
    OVER_BLOCK = "over_block", "Over-block"
    LABEL_INCONSISTENCY = "label_inconsistency", "Label inconsistency"
    DEBATE_DISAGREES = "debate_disagrees", "Debate disagrees with decision"
    SUSPICIOUS_REASONING = "suspicious_reasoning", "Suspicious reasoning"
    UNKNOWN_VOCABULARY = "unknown_vocabulary", "Unknown vocabulary"
    MISSING_FIELDS = "missing_fields", "Missing fields"
    SPOT_CHECK = "spot_check", "Spot check"


def any_flag(flags: Iterable[str] = Flag.values) -> Q:
    """Rows (transcripts, rollup rows, search documents) with any of ``flags`` set: with every
    flag, the spot check included, the rows in the queue (``in_queue`` is set at import to
    whether the record has any flag, and never changes)."""
    condition = Q()
    for flag in flags:
        condition |= Q(**{f"flag_{flag}": True})
    return condition


# Higher first: the order "Next" hands items out in. Spot checks come last but still come.
FLAG_PRIORITY = {
    Flag.MISSED_MISBEHAVIOR: 64,
    Flag.LABEL_INCONSISTENCY: 32,
    Flag.OVER_BLOCK: 16,
    Flag.DEBATE_DISAGREES: 8,
    Flag.SUSPICIOUS_REASONING: 4,
    Flag.UNKNOWN_VOCABULARY: 2,
    Flag.MISSING_FIELDS: 2,
    Flag.SPOT_CHECK: 1,
}


class Status(models.TextChoices):
    UNREVIEWED = "unreviewed", "Unreviewed"
    IN_PROGRESS = "in_progress", "Needs more reviews"
    CONFIRMED = "confirmed", "Confirmed"
    RELABELED = "relabeled", "Relabeled"
    DISPUTED = "disputed", "Disputed"
    ADJUDICATED = "adjudicated", "Adjudicated"


# Row ids (BigAutoField) as both databases store them; past this SQLite raises OverflowError
# where PostgreSQL answers "no rows", so ids outside it are refused alike (urls, forms, admin,
# selection).
MAX_ID = 2**63 - 1


def parse_id(text: str) -> int | None:
    """``text`` as a row id (ASCII digits, 1 to MAX_ID), else None; never raises, whatever the
    text (a long run of digits included)."""
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID))):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


# A rationale is shown in every history view of its item: the forms and the workflow refuse more.
RATIONALE_MAX_LENGTH = 5000

# "Settled": the item's labels are decided (the one word for it, in code, UI and README).
SETTLED_STATUSES = (Status.CONFIRMED, Status.RELABELED, Status.ADJUDICATED)
# Statuses "Next" still hands out: settled and disputed items need no more auditor reviews.
OPEN_STATUSES = (Status.UNREVIEWED, Status.IN_PROGRESS)
# Statuses an adjudicator works on (and may see every review of).
ADJUDICATION_STATUSES = (Status.DISPUTED, Status.ADJUDICATED)


# ImportBatch.model and .run_source: longer is refused at import, never cut.
RUN_METADATA_MAX_LENGTH = 200


class ImportBatchQuerySet(models.QuerySet["ImportBatch"]):
    def unfinished(self) -> ImportBatchQuerySet:
        return self.filter(complete=False)


class _FinishedBatches(models.Manager["ImportBatch"]):
    """Batches whose import finished: an unfinished one is invisible (see ``complete``)."""

    def get_queryset(self) -> models.QuerySet[ImportBatch]:
        return super().get_queryset().filter(complete=True)


FinishedBatchManager = _FinishedBatches.from_queryset(ImportBatchQuerySet)
BatchManager = models.Manager.from_queryset(ImportBatchQuerySet)


class ImportBatch(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    source = models.CharField(max_length=20, default="command")  # command | upload
    file_name = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(default=0)
    lines = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    # [{"line": n, "error": "field: problem"}]; each rejected line itself is a RejectedLine.
    errors = models.JSONField(default=list, blank=True)
    required_reviews = models.PositiveSmallIntegerField(default=1)
    # The run the records come from, as staff give it at import ("" = unknown); exports carry
    # them as MALT's ``model`` and ``run_source``.
    model = models.CharField(max_length=RUN_METADATA_MAX_LENGTH, blank=True)
    run_source = models.CharField(max_length=RUN_METADATA_MAX_LENGTH, blank=True)
    # False while the import still inserts the batch's rows, in chunks that each commit on their
    # own (so a large file never holds SQLite's write lock for long). Until the import sets it,
    # with the counts, in one short transaction, the default managers hide the batch and its
    # transcripts from every screen, export and release: a file appears whole or not at all.
    # An import that fails removes them; one that was killed is cleaned up by the next import.
    complete = models.BooleanField(default=True)

    # Finished batches only; ``including_unfinished`` is for the importer alone.
    objects = FinishedBatchManager()
    including_unfinished = BatchManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"#{self.pk} {self.file_name}"


class RejectedLine(models.Model):
    """A line refused with --skip-invalid, kept byte for byte so nothing is lost.

    A line that is not valid UTF-8, or holds NUL (which PostgreSQL text cannot), is stored as
    base64 of its bytes; ``line_bytes()`` gives the original back either way.
    """

    class Encoding(models.TextChoices):
        UTF8 = "utf-8", "UTF-8 text"
        BASE64 = "base64", "base64 of the bytes"

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="rejected_lines")
    line_number = models.PositiveIntegerField()
    error = models.TextField()
    text = models.TextField()
    encoding = models.CharField(max_length=6, choices=Encoding.choices, default=Encoding.UTF8)

    class Meta:
        ordering = ["batch", "line_number"]

    def __str__(self) -> str:
        return f"batch #{self.batch_id} line {self.line_number}"

    @staticmethod
    def encode(raw: bytes) -> tuple[str, str]:
        """(text, encoding) to store for a line's bytes."""
        if b"\x00" not in raw:
            try:
                return raw.decode("utf-8"), RejectedLine.Encoding.UTF8
            except UnicodeDecodeError:
                pass
        return base64.b64encode(raw).decode("ascii"), RejectedLine.Encoding.BASE64

    def line_bytes(self) -> bytes:
        if self.encoding == self.Encoding.BASE64:
            return base64.b64decode(self.text)
        return self.text.encode("utf-8")

    def display_text(self) -> str:
        return self.line_bytes().decode("utf-8", errors="replace").replace("\x00", "\ufffd")


class ImportJob(models.Model):
    """A web upload waiting for, running in, or finished by the import task.

    Tasks may run in another process (django-tasks-db worker), so the report the upload page
    shows lives here rather than in the task backend's result store.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    file_name = models.CharField(max_length=500)
    upload_path = models.CharField(max_length=1000)
    skip_invalid = models.BooleanField(default=False)
    required_reviews = models.PositiveSmallIntegerField(default=1)
    # Passed on to the batch (ImportBatch.model, ImportBatch.run_source).
    model = models.CharField(max_length=RUN_METADATA_MAX_LENGTH, blank=True)
    run_source = models.CharField(max_length=RUN_METADATA_MAX_LENGTH, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    report = models.JSONField(default=dict, blank=True)
    batch = models.ForeignKey(ImportBatch, null=True, blank=True, on_delete=models.SET_NULL)
    # The running task's last sign of life, stamped from a thread of its own while it runs
    # (``audit.tasks``): a job that stops beating for AUDIT_IMPORT_STALE_SECONDS has lost its
    # worker and is marked failed. Null until the task starts.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"upload {self.file_name} ({self.state})"


class TranscriptQuerySet(models.QuerySet["Transcript"]):
    def in_queue(self) -> TranscriptQuerySet:
        return self.filter(in_queue=True)

    def with_flag(self, flag: str) -> TranscriptQuerySet:
        return self.filter(**{f"flag_{Flag(flag).value}": True})

    def settled(self) -> TranscriptQuerySet:
        return self.filter(status__in=SETTLED_STATUSES)

    def unsettled(self) -> TranscriptQuerySet:
        return self.exclude(status__in=SETTLED_STATUSES)

    def open(self) -> TranscriptQuerySet:
        """Items that still take auditor reviews (neither settled nor disputed)."""
        return self.filter(status__in=OPEN_STATUSES)

    def in_adjudication(self) -> TranscriptQuerySet:
        return self.filter(status__in=ADJUDICATION_STATUSES)


class _BuiltOnce[M: models.Model](models.Manager[M]):
    """A manager whose base queryset (``base()``) is built once per process and cloned for
    each use, as a class-based view's ``queryset`` is.

    Building the finished-batches filter below (an excluded subquery) cost about 0.14 ms, a
    clone of it 4 µs, and a page asks a manager for a queryset a dozen times (issue 14: the
    verdict's time is mostly query building). A queryset is lazy and every method returns a
    clone, so the one kept is never evaluated. Managers for another database or with routing
    hints (``db_manager``, related managers) build theirs each time."""

    def base(self) -> models.QuerySet[M]:
        """The queryset to keep, built from ``self.plain()``."""
        raise NotImplementedError

    def plain(self) -> models.QuerySet[M]:
        return super().get_queryset()

    def get_queryset(self) -> models.QuerySet[M]:
        if self._db is not None or self._hints:  # type: ignore[attr-defined]
            return self.base()
        built = self.__dict__.get("_built")
        if built is None or built.model is not self.model:
            built = self._built = self.base()
        return built.all()


class _FinishedTranscripts(_BuiltOnce["Transcript"]):
    """Transcripts of finished batches: rows an import is still inserting are invisible to every
    query that does not ask for them (``Transcript.including_unfinished``)."""

    def base(self) -> models.QuerySet[Transcript]:
        # A subquery rather than a join: there are few unfinished batches (usually none), and
        # the queue's index-only scans keep their plans (batch is in tr_queue_facets).
        unfinished = ImportBatch.including_unfinished.unfinished().values("pk")
        return self.plain().exclude(batch__in=unfinished)


TranscriptManager = _FinishedTranscripts.from_queryset(TranscriptQuerySet)
AllTranscriptsManager = models.Manager.from_queryset(TranscriptQuerySet)


# (flag, its column) in Flag order: read per row by the export and the pages.
_FLAG_COLUMNS = tuple((flag.value, f"flag_{flag.value}") for flag in Flag)


class Transcript(models.Model):
    batch = models.ForeignKey(ImportBatch, on_delete=models.PROTECT, related_name="transcripts")
    # sha256 of the canonical record (sorted keys, compact): the identity for deduplication.
    fingerprint = models.CharField(max_length=64, unique=True)
    # The original line is ``TranscriptText.raw``: a table of its own (see there).
    # sha256 of the line as it came (``raw``'s UTF-8 bytes): a re-import finds a line stored
    # byte for byte without parsing it (``audit.ingest.importer``). "" only before migration
    # 0010 filled it in.
    line_sha256 = models.CharField(max_length=64, blank=True, default="")
    line_number = models.PositiveIntegerField()

    session_id = models.CharField(max_length=200)
    timestamp = models.FloatField(null=True, blank=True)
    step_number = models.IntegerField()
    task_id = models.CharField(max_length=200, blank=True)
    action_type = models.CharField(max_length=200, blank=True)
    target = models.CharField(max_length=500, blank=True)
    worker_id = models.CharField(max_length=200, blank=True)
    decision_type = models.CharField(max_length=200, blank=True)  # upper-cased, as the exporter
    debate_decision = models.CharField(max_length=200, blank=True)
    reward = models.FloatField(null=True, blank=True)
    deception_risk = models.FloatField(null=True, blank=True)
    is_suspicious = models.BooleanField(default=False)
    # Monitor signals as recorded (``audit.metrics.monitors``), null when absent or not a
    # number; ``reward`` and ``deception_risk`` above are two more. ``cot_is_suspicious`` is
    # ``cot_analysis.is_suspicious`` with absent as null, where ``is_suspicious`` (what the flag
    # reads) takes absent as false. ``decision_stops`` / ``debate_stops``: whether the decision /
    # the debate's final decision is not APPROVE, null when there is none.
    decision_stops = models.BooleanField(null=True, blank=True)
    debate_stops = models.BooleanField(null=True, blank=True)
    reasoning_quality = models.FloatField(null=True, blank=True)
    faithfulness_score = models.FloatField(null=True, blank=True)
    cot_is_suspicious = models.BooleanField(null=True, blank=True)
    prosecutor_strength = models.FloatField(null=True, blank=True)
    advocate_strength = models.FloatField(null=True, blank=True)
    decision_confidence = models.FloatField(null=True, blank=True)

    # Ground truth and labels as imported, with the exporter's truthiness.
    is_misbehavior = models.BooleanField(default=False)
    misbehavior_type = models.CharField(max_length=200, blank=True)
    correct_decision = models.CharField(max_length=200, blank=True)
    was_true_positive = models.BooleanField(default=False)
    was_false_positive = models.BooleanField(default=False)
    was_false_negative = models.BooleanField(default=False)
    oversight_correct = models.BooleanField(default=False)
    # The JSON text of the key the exporter's alignment_distribution would count it under.
    alignment_category = models.CharField(max_length=200, blank=True)

    # Final labels: a cache derived from the reviews; before any review, the imported ground
    # truth with its derived fields recomputed, so it is always consistent.
    final_is_misbehavior = models.BooleanField(default=False)
    final_misbehavior_type = models.CharField(max_length=200, blank=True)
    final_correct_decision = models.CharField(max_length=200, blank=True)
    final_alignment_category = models.CharField(max_length=32, choices=Category.choices)

    flag_missed_misbehavior = models.BooleanField(default=False)
    flag_over_block = models.BooleanField(default=False)
    flag_label_inconsistency = models.BooleanField(default=False)
    flag_debate_disagrees = models.BooleanField(default=False)
    flag_suspicious_reasoning = models.BooleanField(default=False)
    flag_unknown_vocabulary = models.BooleanField(default=False)
    flag_missing_fields = models.BooleanField(default=False)
    flag_spot_check = models.BooleanField(default=False)
    # [{"flag": ..., "detail": "..."}]: every reason, spelled out for the item page and export.
    problems = models.JSONField(default=list, blank=True)
    in_queue = models.BooleanField(default=False)
    priority = models.PositiveSmallIntegerField(default=0)

    required_reviews = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNREVIEWED)
    review_count = models.PositiveSmallIntegerField(default=0)  # current reviews (not superseded)
    # Bumped by every write; a verdict made against an older version is refused.
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TranscriptManager()
    # Every row, those of unfinished batches too: deduplication and clean-up in the importer.
    including_unfinished = AllTranscriptsManager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # Episode timeline: the other steps of one session and task, in order.
            models.Index(fields=["session_id", "task_id", "step_number"], name="tr_episode"),
            # "Next": the highest-priority queued item that still needs reviews, one open status
            # at a time (review.leases.in_next_order), read in index order. ``batch`` last, after
            # the unique id, changes no order: it lets counts of queued rows by status stay
            # index-only under the default manager's unfinished-batch filter (measured on
            # PostgreSQL at 100k rows: 5 ms with it, 73 ms without).
            models.Index(fields=["in_queue", "status", "-priority", "id", "batch"], name="tr_next"),
            # Queue facet counts and filters (review.queue.facet_counts): every column a facet
            # groups or filters by, so each count is an index-only scan of the queued rows
            # (measured at 100k rows on SQLite: 570-830 ms per queue page without, 90-160 with).
            # ``id`` last, so that rolling up a search's match (review.queue.count_match), a
            # join by id, reads this index alone on PostgreSQL too (SQLite's entries hold the
            # rowid anyway): at 1,000,000 records, 616 ms of reading the table's rows for a
            # word in most of them, against 146 ms of this index.
            models.Index(
                fields=[
                    "in_queue",
                    "status",
                    *(f"flag_{flag.value}" for flag in Flag),
                    "alignment_category",
                    "task_id",
                    "worker_id",
                    "decision_type",
                    "misbehavior_type",
                    "batch",
                    "priority",
                    "id",
                ],
                name="tr_queue_facets",
            ),
            # Queue filters on their own.
            models.Index(fields=["status"], name="tr_status"),
            models.Index(fields=["task_id"], name="tr_task"),
            models.Index(fields=["worker_id"], name="tr_worker"),
            models.Index(fields=["decision_type"], name="tr_decision"),
            models.Index(fields=["misbehavior_type"], name="tr_mbtype"),
            models.Index(fields=["alignment_category"], name="tr_category"),
            models.Index(fields=["batch", "id"], name="tr_batch"),
            # Reviewed summary and dashboard group-bys over final labels.
            models.Index(fields=["final_alignment_category"], name="tr_final_category"),
            # Each review's item looked up by id for what the auditors page compares it with
            # (audit.metrics.summaries.auditor_stats: settled, and the final labels), from this
            # index alone: at 1,000,000 records and 50,000 reviews, PostgreSQL's look-ups of
            # the rows took 230 ms of the page's query, this index's 103 ms.
            models.Index(
                fields=[
                    "id",
                    "status",
                    "final_is_misbehavior",
                    "final_correct_decision",
                    "final_misbehavior_type",
                ],
                name="tr_final_probe",
            ),
            models.Index(fields=["timestamp"], name="tr_time"),
            # The admin changelist's K filter (its DISTINCT list) and bulk K changes.
            models.Index(fields=["required_reviews"], name="tr_required_reviews"),
            # The importer's look-up of lines stored already.
            models.Index(fields=["line_sha256"], name="tr_line"),
            # Monitor evaluation's read of the settled rows (audit.metrics.monitors.read_settled):
            # partial, so it holds settled rows only (imports never write to it), and covering
            # every column that read takes, so it never touches a row and its raw record.
            models.Index(
                fields=[
                    "status",
                    "batch",
                    "task_id",
                    "final_misbehavior_type",
                    "final_is_misbehavior",
                    *(f"flag_{flag.value}" for flag in Flag),
                    "decision_stops",
                    "debate_stops",
                    "deception_risk",
                    "reasoning_quality",
                    "faithfulness_score",
                    "cot_is_suspicious",
                    "prosecutor_strength",
                    "advocate_strength",
                    "decision_confidence",
                    "reward",
                ],
                name="tr_monitor_signals",
                condition=Q(status__in=SETTLED_STATUSES),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} step {self.step_number} ({self.task_id})"

    @property
    def flags(self) -> list[str]:
        return [value for value, column in _FLAG_COLUMNS if getattr(self, column)]

    @property
    def is_settled(self) -> bool:
        return self.status in SETTLED_STATUSES

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def in_adjudication(self) -> bool:
        return self.status in ADJUDICATION_STATUSES

    @property
    def imported_labels(self) -> Labels:
        """The imported ground truth; a CONFIRM review takes these values."""
        return Labels.of(self.is_misbehavior, self.misbehavior_type, self.correct_decision)

    @property
    def final_labels(self) -> Labels:
        return Labels.of(
            self.final_is_misbehavior, self.final_misbehavior_type, self.final_correct_decision
        )

    @property
    def imported_category(self) -> str:
        """The category the imported ground truth derives (not the stored, maybe junk, one)."""
        return derive_category(self.is_misbehavior, self.decision_type)


class TranscriptText(models.Model):
    """A transcript's text, in a table of its own: the original line and the search text.

    They are nine tenths of a record's bytes (3.4 of 3.6 KB in the exporter's output). Beside
    the columns that filters, counts and metrics read, they made every row take a database page
    of its own on SQLite, so each scan, join or look-up of transcripts read the whole record
    (issue 14); here they are read only by what shows or writes the record: the item page, the
    raw record, the export, the API and the full-text index. One row per transcript, written
    with it by the importer, never changed; the key is the transcript's id (column ``id``).
    """

    transcript = models.OneToOneField(
        Transcript, on_delete=models.CASCADE, primary_key=True, db_column="id", related_name="text"
    )
    # The original line, verbatim: JSON text keeps key order, number spelling and NaN, which a
    # jsonb column would not.
    raw = models.TextField()
    # Lower-cased proposal, reasoning and decision text for the queue's free-text filter
    # (``audit.search`` indexes it).
    search_text = models.TextField(blank=True)

    class Meta:
        db_table = "audit_transcript_text"

    def __str__(self) -> str:
        return f"text of transcript {self.pk}"


class Verdict(models.TextChoices):
    CONFIRM = "confirm", "Confirm"
    RELABEL = "relabel", "Relabel"
    UNSURE = "unsure", "Unsure"
    ADJUDICATE = "adjudicate", "Adjudicate"


# Reviews that count toward an item's K: an "unsure" stays in the history but does not count.
COUNTING_VERDICTS = (Verdict.CONFIRM, Verdict.RELABEL)


class AppendOnlyError(Exception):
    pass


class ReviewQuerySet(models.QuerySet["Review"]):
    def current(self) -> ReviewQuerySet:
        """Not superseded by a later review of the same author."""
        return self.filter(superseded_by__isnull=True)

    def counting(self) -> ReviewQuerySet:
        """Current reviews that count toward an item's K."""
        return self.current().filter(verdict__in=COUNTING_VERDICTS)

    def adjudications(self) -> ReviewQuerySet:
        return self.filter(verdict=Verdict.ADJUDICATE)

    def excluding_adjudications(self) -> ReviewQuerySet:
        return self.exclude(verdict=Verdict.ADJUDICATE)


ReviewManager = models.Manager.from_queryset(ReviewQuerySet)


class Review(models.Model):
    """One auditor's verdict on one transcript. Append-only: a revision is a new row that
    supersedes the auditor's earlier one; adjudications are reviews with verdict ADJUDICATE."""

    transcript = models.ForeignKey(Transcript, on_delete=models.PROTECT, related_name="reviews")
    auditor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    # Values before (the transcript's final labels when the auditor opened it) and after.
    before = models.JSONField(default=dict)
    is_misbehavior = models.BooleanField(null=True)
    misbehavior_type = models.CharField(max_length=200, blank=True)
    correct_decision = models.CharField(max_length=200, blank=True)
    rationale = models.TextField(blank=True)
    seconds_spent = models.PositiveIntegerField(default=0)
    based_on_version = models.PositiveIntegerField()
    # The guidelines the auditor's page showed (issue 11); null: made before they were versioned.
    guideline_version = models.ForeignKey(
        "GuidelineVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    superseded_by = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )

    objects = ReviewManager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # Current reviews of one item, and one auditor's history: with the verdict, so the
            # progress line's count of their reviews today reads the index alone (50,000 of
            # them at a million records: 15 ms of the item page from the table, 5 ms so).
            models.Index(fields=["transcript", "superseded_by"], name="rv_current"),
            models.Index(fields=["auditor", "created_at", "verdict"], name="rv_auditor"),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} of transcript #{self.transcript_id} by user #{self.auditor_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding and set(kwargs.get("update_fields") or ()) != {"superseded_by"}:
            raise AppendOnlyError("Reviews are append-only; record a new review instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Reviews are append-only and cannot be deleted.")

    @property
    def is_counting(self) -> bool:
        return self.superseded_by_id is None and self.verdict in COUNTING_VERDICTS

    @property
    def labels(self) -> Labels | None:
        """The values the review decided; None for one that decided none (unsure)."""
        if self.is_misbehavior is None:
            return None
        return Labels.of(self.is_misbehavior, self.misbehavior_type, self.correct_decision)


class LeaseQuerySet(models.QuerySet["Lease"]):
    def live(self, now: dt.datetime | None = None) -> LeaseQuerySet:
        """Unexpired at ``now`` (default: this moment)."""
        return self.filter(expires_at__gt=now or timezone.now())


LeaseManager = models.Manager.from_queryset(LeaseQuerySet)


class Lease(models.Model):
    """A claim on an item by one auditor until ``expires_at``; K-review items can have K."""

    transcript = models.ForeignKey(Transcript, on_delete=models.CASCADE, related_name="leases")
    auditor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    claimed_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    objects = LeaseManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["transcript", "auditor"], name="lease_once"),
        ]
        indexes = [
            # Live leases per item when picking the next one.
            models.Index(fields=["transcript", "expires_at"], name="lease_live"),
            # An auditor's own live leases ("Next" serves them first; the queue's "held" count
            # starts from them).
            models.Index(fields=["auditor", "expires_at"], name="lease_auditor"),
        ]

    def __str__(self) -> str:
        return f"lease on #{self.transcript_id} for user #{self.auditor_id}"


class Release(models.Model):
    """A published, immutable dataset snapshot; its files live under RELEASES_ROOT/<version>."""

    version = models.CharField(max_length=50, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    filters = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    path = models.CharField(max_length=1000)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(version=""), name="release_version_set"),
        ]

    def __str__(self) -> str:
        return self.version


# --- the rollup (issue 14) -------------------------------------------------------------------


class RollupQuerySet(models.QuerySet["Rollup"]):
    def settled(self) -> RollupQuerySet:
        return self.filter(status__in=SETTLED_STATUSES)

    def unsettled(self) -> RollupQuerySet:
        return self.exclude(status__in=SETTLED_STATUSES)


class _OfFinishedBatches[M: models.Model](_BuiltOnce[M]):
    """Rows about transcripts (with their ``batch_id``) of finished batches only, as
    ``Transcript.objects`` sees the transcripts: the rollup's counts, the search documents."""

    def base(self) -> models.QuerySet[M]:
        unfinished = ImportBatch.including_unfinished.unfinished().values("pk")
        return self.plain().exclude(batch_id__in=unfinished)


RollupManager = _OfFinishedBatches.from_queryset(RollupQuerySet)
AllRollupManager = models.Manager.from_queryset(RollupQuerySet)


class Rollup(models.Model):
    """How many transcripts share each combination of the columns the dashboard's figures and
    the admin's filter choices group or filter by (``audit.rollup``).

    Written only by database triggers on ``audit_transcript`` (migration 0009), in the same
    transaction as the write that changes the rows, so it cannot drift whatever code writes.
    ``combination`` identifies it (the columns themselves can be too long for one
    PostgreSQL index entry). A combination no transcript has any more is deleted.
    """

    combination = models.TextField(unique=True)
    # No constraint: rows of a batch go with its transcripts, before the batch itself.
    batch = models.ForeignKey(
        ImportBatch, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    task_id = models.CharField(max_length=200, blank=True)
    worker_id = models.CharField(max_length=200, blank=True)
    decision_type = models.CharField(max_length=200, blank=True)
    is_misbehavior = models.BooleanField()
    misbehavior_type = models.CharField(max_length=200, blank=True)
    correct_decision = models.CharField(max_length=200, blank=True)
    was_true_positive = models.BooleanField()
    was_false_positive = models.BooleanField()
    was_false_negative = models.BooleanField()
    oversight_correct = models.BooleanField()
    alignment_category = models.CharField(max_length=200, blank=True)
    final_is_misbehavior = models.BooleanField()
    final_misbehavior_type = models.CharField(max_length=200, blank=True)
    final_correct_decision = models.CharField(max_length=200, blank=True)
    final_alignment_category = models.CharField(max_length=32)
    flag_missed_misbehavior = models.BooleanField()
    flag_over_block = models.BooleanField()
    flag_label_inconsistency = models.BooleanField()
    flag_debate_disagrees = models.BooleanField()
    flag_suspicious_reasoning = models.BooleanField()
    flag_unknown_vocabulary = models.BooleanField()
    flag_missing_fields = models.BooleanField()
    flag_spot_check = models.BooleanField()
    required_reviews = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16)
    # How many transcripts have this combination.
    transcripts = models.PositiveIntegerField()

    objects = RollupManager()
    including_unfinished = AllRollupManager()

    class Meta:
        managed = True

    def __str__(self) -> str:
        return f"{self.transcripts} transcripts of batch #{self.batch_id} ({self.status})"


class QueueFacets(models.Model):
    """The columns the queue's filters and facets read, under the transcript's names: the key of
    ``MatchCount`` and the copies beside each search document (``SearchDocument``)."""

    batch_id = models.BigIntegerField()
    in_queue = models.BooleanField()
    status = models.CharField(max_length=16)
    flag_missed_misbehavior = models.BooleanField()
    flag_over_block = models.BooleanField()
    flag_label_inconsistency = models.BooleanField()
    flag_debate_disagrees = models.BooleanField()
    flag_suspicious_reasoning = models.BooleanField()
    flag_unknown_vocabulary = models.BooleanField()
    flag_missing_fields = models.BooleanField()
    flag_spot_check = models.BooleanField()
    alignment_category = models.CharField(max_length=200)
    task_id = models.CharField(max_length=200)
    worker_id = models.CharField(max_length=200)
    decision_type = models.CharField(max_length=200)
    misbehavior_type = models.CharField(max_length=200)

    class Meta:
        abstract = True


class MatchCount(QueueFacets):
    """How many of the rows a queue search matched share each combination of the columns the
    queue's filters and facets read: the rollup of one request's match, in a temporary table
    of its database connection, filled once per search (``audit.review.queue.count_match``),
    so that the facet counts sum a few thousand rows instead of each scanning the match.

    Not managed: the table is created per connection (``CREATE TEMP TABLE``), never migrated.
    Its columns carry the transcript's names, so the queue's filters apply to it unchanged;
    together they are its key (each combination is one row), in the order of index
    ``tr_queue_facets``, which serves the grouping in that order (``queue.MATCH_COUNT_COLUMNS``)."""

    pk = models.CompositePrimaryKey(
        "in_queue",
        "status",
        *(f"flag_{flag.value}" for flag in Flag),
        "alignment_category",
        "task_id",
        "worker_id",
        "decision_type",
        "misbehavior_type",
        "batch_id",
    )
    transcripts = models.BigIntegerField()

    class Meta:
        managed = False
        db_table = "audit_queue_match_count"

    def __str__(self) -> str:
        return f"{self.transcripts} matching transcripts of batch #{self.batch_id}"


class SearchDocument(QueueFacets):
    """PostgreSQL only: a transcript's search document (``audit.search``) with copies of its
    queue facet columns, kept in step by triggers (migration 0025), so that a search's match is
    rolled up in one pass over the documents (``audit.review.queue.compute_match``). The document
    itself (a ``tsvector``) is read by ``audit.search``'s SQL only.

    Not managed: migrations 0010 and 0025 make the table, which SQLite does not have (its index
    is an FTS5 table)."""

    id = models.BigIntegerField(primary_key=True)

    objects = _OfFinishedBatches["SearchDocument"]()

    class Meta:
        managed = False
        db_table = "audit_transcript_search"

    def __str__(self) -> str:
        return f"search document of transcript #{self.pk}"


# --- the HTTP API (issue 13) -----------------------------------------------------------------


class ApiScope(models.TextChoices):
    """What an API token may do (``audit.api``)."""

    INGEST = "ingest", "Ingest: post transcripts (staff only)"
    READ = "read", "Read: releases, transcripts with their reviews, summaries"


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def live(self) -> ApiTokenQuerySet:
        """Not revoked."""
        return self.filter(revoked_at__isnull=True)


ApiTokenManager = models.Manager.from_queryset(ApiTokenQuerySet)


class ApiToken(models.Model):
    """A user's API token (``audit.api.tokens``). The secret is shown once, when it is made;
    only its sha256 is kept. A revoked token stays, so its history (who, last used) does."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    # What it is for ("sentinel runs on gpu-3"): said in the admin and the command's output.
    name = models.CharField(max_length=100, blank=True)
    # sha256 (hex) of the whole secret: the look-up of every API request (unique index).
    digest = models.CharField(max_length=64, unique=True)
    # The secret's first characters, so a person can tell their tokens apart.
    prefix = models.CharField(max_length=16)
    # ApiScope values, space-separated, sorted ("ingest read").
    scopes = models.CharField(max_length=50)
    created_at = models.DateTimeField(auto_now_add=True)
    # To the minute: a request writes it only when the last stamp is older than that.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.scopes}) of user #{self.user_id}"

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def has_scope(self, scope: str) -> bool:
        return scope in self.scope_list

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class IngestRun(models.Model):
    """A run that posts its records in many requests: the one batch they fold into
    (``audit.ingest.importer.import_stream``'s ``run``). The first request that stores anything
    makes the batch; later ones with the same key, by the same user, add to it."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ingest_runs"
    )
    key = models.CharField(max_length=RUN_METADATA_MAX_LENGTH)
    batch = models.OneToOneField(ImportBatch, on_delete=models.CASCADE, related_name="ingest_run")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Also the look-up of every request of a run.
            models.UniqueConstraint(fields=["created_by", "key"], name="ingest_run_once"),
        ]

    def __str__(self) -> str:
        return f"run {self.key!r} of user #{self.created_by_id} (batch #{self.batch_id})"


# Discussion --------------------------------------------------------------------------------------

# A comment is shown in full in its item's thread (and in exports): longer is refused, never cut.
COMMENT_MAX_LENGTH = 5000


class Comment(models.Model):
    """A comment in an item's discussion thread (``audit.team.discussion``). Append-only: the
    row itself never changes and is never deleted; its text lives in its revisions, the first
    written with it, each edit adding the next (the earlier texts stay, as its history). Who may
    read it is ``audit.review.visibility.may_read_discussion``."""

    # No index of its own: cm_thread starts with it.
    transcript = models.ForeignKey(
        Transcript, on_delete=models.PROTECT, related_name="comments", db_index=False
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # An item's thread in time order (the item and adjudication screens), and the
            # export's read of one chunk's comments (transcript IN the chunk's ids).
            models.Index(fields=["transcript", "created_at", "id"], name="cm_thread"),
        ]

    def __str__(self) -> str:
        return f"comment #{self.pk} on transcript #{self.transcript_id} by user #{self.author_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Comments are append-only; edit by adding a revision.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Comments are append-only and cannot be deleted.")


class CommentRevision(models.Model):
    """One text of a comment: number 1 is the text it was written with, each edit adds the
    next; the highest number is its current text. Append-only, like the comment."""

    # No index of its own: cm_revision_once starts with it.
    comment = models.ForeignKey(
        Comment, on_delete=models.PROTECT, related_name="revisions", db_index=False
    )
    number = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["comment", "number"]
        constraints = [
            # Two edits made against the same revision cannot both land (the later one is
            # refused as stale); also the index of a comment's revisions, in order.
            models.UniqueConstraint(fields=["comment", "number"], name="cm_revision_once"),
            models.CheckConstraint(condition=Q(number__gte=1), name="cm_revision_number"),
            models.CheckConstraint(condition=~Q(text=""), name="cm_revision_text"),
        ]

    def __str__(self) -> str:
        return f"revision {self.number} of comment #{self.comment_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Comment revisions are append-only; add a new revision.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Comment revisions are append-only and cannot be deleted.")


class DiscussionMarkQuerySet(models.QuerySet["DiscussionMark"]):
    def open(self) -> DiscussionMarkQuerySet:
        """Marks not cleared: the items that need discussion now."""
        return self.filter(cleared_at__isnull=True)


DiscussionMarkManager = models.Manager.from_queryset(DiscussionMarkQuerySet)


class DiscussionMark(models.Model):
    """A "needs discussion" mark on an item: who set it and when, and, once cleared, who cleared
    it and when. Clearing fills in ``cleared_*`` of the open mark (the row stays, as the mark's
    history); marking again adds a new row. At most one open mark per item. Never deleted."""

    # No index of its own: dm_history starts with it.
    transcript = models.ForeignKey(
        Transcript, on_delete=models.PROTECT, related_name="discussion_marks", db_index=False
    )
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    set_at = models.DateTimeField(default=timezone.now)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    cleared_at = models.DateTimeField(null=True, blank=True)

    objects = DiscussionMarkManager()

    class Meta:
        ordering = ["set_at", "id"]
        constraints = [
            # One open mark per item. Partial, so it holds the open marks only: it is the index
            # ``needs_discussion_q()`` reads (the open marks' transcript ids), and the look-up of
            # an item's open mark when it is set, cleared or shown.
            models.UniqueConstraint(
                fields=["transcript"],
                condition=Q(cleared_at__isnull=True),
                name="dm_open_once",
            ),
            models.CheckConstraint(
                condition=Q(cleared_at__isnull=True, cleared_by__isnull=True)
                | Q(cleared_at__isnull=False, cleared_by__isnull=False),
                name="dm_cleared_both",
            ),
        ]
        indexes = [
            # An item's mark history, in order (its history on the item page).
            models.Index(fields=["transcript", "set_at"], name="dm_history"),
        ]

    def __str__(self) -> str:
        state = "open" if self.cleared_at is None else "cleared"
        return f"{state} discussion mark on transcript #{self.transcript_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding and set(kwargs.get("update_fields") or ()) != {
            "cleared_at",
            "cleared_by",
        }:
            raise AppendOnlyError("A discussion mark is only ever cleared, never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Discussion marks are history and cannot be deleted; clear it.")

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None


# Assignments -------------------------------------------------------------------------------------


class Assignment(models.Model):
    """A selection handed to named auditors with K (``audit.team.assignments``): its tasks, one
    per item and auditor, are fixed when it is made. ``selection``, ``sample`` and ``seed`` only
    describe how the items were chosen, for the record; the tasks are what was assigned."""

    name = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The selection vocabulary's dict (``audit.publish.selection.Selection.as_dict``).
    selection = models.JSONField(default=dict, blank=True)
    sample = models.PositiveIntegerField(null=True, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    k = models.PositiveSmallIntegerField()
    # How many items it holds (each has min(K, auditors) tasks).
    items = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="as_name_set"),
            models.CheckConstraint(condition=Q(k__gte=1), name="as_k_positive"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"


class AssignmentTask(models.Model):
    """One item of an assignment for one of its auditors. Never changed: whether it is done is
    derived (``audit.team.assignments``: the auditor's own verdict, or the item settled without
    them)."""

    # No index of their own: each leads one of the indexes below.
    assignment = models.ForeignKey(
        Assignment, on_delete=models.CASCADE, related_name="tasks", db_index=False
    )
    transcript = models.ForeignKey(
        Transcript, on_delete=models.CASCADE, related_name="assignment_tasks", db_index=False
    )
    auditor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="assignment_tasks",
        db_index=False,
    )

    class Meta:
        ordering = ["assignment", "transcript", "auditor"]
        constraints = [
            # An item goes to an auditor once per assignment; also the index of an assignment's
            # tasks, for its progress (assignment = %s, grouped by auditor).
            models.UniqueConstraint(
                fields=["assignment", "transcript", "auditor"], name="as_task_once"
            ),
        ]
        indexes = [
            # "Next" serving an auditor's assignments first (auditor = %s, joined to the items
            # by id), and "my work" (one auditor's tasks).
            models.Index(fields=["auditor", "transcript"], name="as_task_auditor"),
            # "Next" for everyone else: whether another auditor has an open task on the item it
            # is about to hand out (transcript = outer id, auditor <> %s).
            models.Index(fields=["transcript", "auditor"], name="as_task_item"),
        ]

    def __str__(self) -> str:
        return (
            f"task of assignment #{self.assignment_id}: transcript #{self.transcript_id} "
            f"for user #{self.auditor_id}"
        )


# Saved views -------------------------------------------------------------------------------------

SAVED_VIEW_NAME_MAX_LENGTH = 100


class SavedViewScreen(models.TextChoices):
    """The screens a saved view opens (``audit.team.saved_views``)."""

    QUEUE = "queue", "Review queue"
    DASHBOARD = "dashboard", "Dashboard"


class SavedView(models.Model):
    """A named filter set of one screen: only filters, as the screen's own filter form cleans
    them (``query``, URL-encoded, unknown keys and defaults left out), so opening one goes
    through that form again with the viewer's own choices. Private to its owner, or shared with
    the team."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    name = models.CharField(max_length=SAVED_VIEW_NAME_MAX_LENGTH)
    screen = models.CharField(max_length=20, choices=SavedViewScreen.choices)
    shared = models.BooleanField(default=False)
    query = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["screen", "name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "screen", "name"], name="saved_view_name_once"
            ),
            models.CheckConstraint(condition=~Q(name=""), name="saved_view_name_set"),
        ]
        indexes = [
            # The team's shared views of a screen (every viewer's list).
            models.Index(fields=["screen", "shared"], name="saved_view_shared"),
        ]

    def __str__(self) -> str:
        return f"{self.screen} view {self.name!r} of user #{self.owner_id}"


# Guidelines --------------------------------------------------------------------------------------


class GuidelineVersion(models.Model):
    """One saved version of the review guidelines (``audit.team.guidelines``): the rubric's
    Markdown as staff wrote it. Append-only: an edit is a new version; the current one is the
    highest number. The number is the primary key, so a review's ``guideline_version_id`` is
    the number itself (exports read it with the review, no join), and two editors saving the
    same next number at once collide on it rather than both winning."""

    number = models.PositiveIntegerField(primary_key=True)
    text = models.TextField()
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.CheckConstraint(condition=Q(number__gte=1), name="guideline_number_positive"),
        ]

    def __str__(self) -> str:
        return f"guidelines v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Guideline versions are append-only; save a new version.")
        # A number taken already is an IntegrityError, never an update of that version.
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Guideline versions are append-only and cannot be deleted.")
