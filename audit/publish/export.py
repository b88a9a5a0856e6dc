"""Exported records and summaries: the reviewed dataset as JSONL, streamed.

An exported record is the original line (``json.loads(transcript.text.raw)``: every key, in its
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
  a file with no reviews exports as its input plus a ``review`` and a ``malt`` block.
- A ``review`` block is appended: ``manually_reviewed``, ``status``, ``original_ground_truth``,
  ``original_labels``, ``flags``, ``problems``, ``required_reviews``, every review in order
  (superseded ones too, marked), and the current adjudication or null. Auditors appear only as
  a stable pseudonym: "auditor-" + 12 hex digits of HMAC-SHA256(AUDIT_PSEUDONYM_KEY, user id).
  Each review says the ``guideline_version`` (number) it was made under, null for reviews made
  before guidelines were versioned (issue 11).
  The block also carries the item's discussion (issue 11): ``comments``, in time order, each
  ``{author (pseudonym), created_at, text (current), edited, history: [{text, created_at}]}``
  (the earlier texts, oldest first), and ``needs_discussion`` (whether it is marked now).
- A ``malt`` block is appended after it, with the per-run fields of METR's MALT under MALT's
  names and types (the exporter's own keys, its ``labels`` dict included, stay as they are):

  - ``run_id`` (string): the transcript's fingerprint, the sha256 of the canonical original
    record; the same in every database and across re-imports, and unique;
  - ``manually_reviewed`` (bool): true exactly for settled records (as ``review``'s);
  - ``labels`` (list of strings), from the ``ground_truth`` the record carries in the export
    (final for settled records, as imported otherwise): ``[misbehavior_type]`` for a
    misbehavior with a type, ``["misbehavior"]`` for one without a type, ``["normal"]`` for
    no misbehavior;
  - ``run_source``, ``model`` (string or null): what staff gave for the import batch
    (``import_transcripts --run-source S --model M``, the upload form); null when not given;
  - ``has_chain_of_thought`` (bool): whether the record carries the worker's reasoning, i.e.
    ``proposal.worker_reasoning`` is a non-blank string. That is the worker's own reasoning
    (the seed exporter fills it from the worker proposal's ``reasoning``), and the worker's
    action is what the labels judge, as MALT's labels judge the agent whose run it is.
    ``cot_analysis.thinking_text`` is not: it is the overseer's (SENTINEL's) thinking, which
    ``cot_analysis`` scores (its ``answer_text`` is SENTINEL's decision), so
    ``cot_analysis.has_thinking`` says whether the monitor reasoned, not whether the run
    carries its chain of thought.

Re-importing an export works (``review`` and ``malt`` are unknown keys to the importer and are
kept verbatim in ``raw``), but it does not recreate Review rows: the new database holds the
exported labels as its imported ground truth, with the earlier review history carried along in
the record. The importer identifies an exported record by its original form
(``records.original_record``, which drops ``malt`` with ``review``), so an export imported into
the database it came from adds nothing. When an already-exported record is exported again, its
earlier blocks are kept under ``review.earlier`` and ``review.earlier_malt`` (so is a source's
own key named ``review`` or ``malt``), and its ``malt`` block is made anew.

Lines are strict RFC 8259 JSON, which any JSON reader takes, in UTF-8 and compact (no spaces
between tokens: orjson's spelling, written some ten times faster than ``json.dumps``, which cost
a third of an export; ``jsontext.dumps_line``), in a deterministic order: session, task, step,
fingerprint. The values are the record's, key order included; only the spelling differs from
the exporter's ``json.dumps`` (``1e-07`` is ``1e-7``, ``é`` is itself, not ``\u00e9``). NEL,
LINE SEPARATOR and PARAGRAPH SEPARATOR stay escaped, so a reader that splits decoded text with
``str.splitlines`` still sees one record per line. JSON has no NaN or infinities, which
Python's json (and so the exporter) writes as bare ``NaN`` and ``Infinity`` tokens, and which a
valid input such as ``1e400`` reads as. Such a number is written as null, and the review block
lists each one under ``non_finite``, with its place as a JSON Pointer (RFC 6901) and its value as
text::

    "reward":null,...,"review":{...,"non_finite":[{"path":"/reward","value":"NaN"}]}

Values are "NaN", "Infinity" and "-Infinity"; a record without such a number has no
``non_finite`` key. The importer puts each number back (``records.decode_non_finite``), so
re-importing an export reads the records exported, with the same fingerprints; a reader that
ignores the list sees a missing number, which is how pandas and pyarrow, and so datasets and
mlcroissant, treat NaN anyway. ``summary.json`` is strict JSON as well.

Records stream in chunks, their batches joined and their reviews and comments prefetched per
chunk, so memory stays flat and the number of queries grows with the number of chunks only.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from itertools import batched, pairwise
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Exists, F, OuterRef, TextField
from django.db.models.base import ModelState
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThanOrEqual, TupleLessThan
from django.db.models.functions import Cast

from audit import jsontext
from audit.ingest.records import (
    EARLIER_MALT_KEY,
    EARLIER_REVIEW_KEY,
    MALT_KEY,
    NON_FINITE_KEY,
    REVIEW_KEY,
    decode_non_finite,
    encode_non_finite,
)
from audit.labels import NO_LABELS_EXPORT
from audit.metrics import monitors
from audit.metrics import summaries as metrics
from audit.metrics.summaries import Countable
from audit.models import (
    Flag,
    ImportBatch,
    Review,
    RollupQuerySet,
    Transcript,
    TranscriptQuerySet,
    Verdict,
)
from audit.publish import parallel
from audit.team import discussion
from audit.team import guidelines as guideline_versions

CHUNK_SIZE = 2000
WRITE_BUFFER = 1024 * 1024
EXPORT_ORDER = ("session_id", "task_id", "step_number", "fingerprint")
# MALT's ``labels`` for a record without misbehavior, and for a misbehavior without a type.
MALT_NORMAL = "normal"
MALT_UNTYPED_MISBEHAVIOR = "misbehavior"
# The transcript's columns an exported record is built from (with the line, ``text__raw``);
# the search text and the rest stay in the database.
EXPORT_FIELDS = (
    "status",
    "decision_type",
    "final_is_misbehavior",
    "final_misbehavior_type",
    "final_correct_decision",
    "problems",
    "required_reviews",
    *(f"flag_{flag.value}" for flag in Flag),
    # The run_id; the order's other keys sort the rows, and no record reads them.
    "fingerprint",
    "batch",
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
        # The guidelines version the review was made under (null: before versioning).
        # The version's number is its primary key, so the review row holds it (no join).
        "guideline_version": review.guideline_version_id,
    }


def _comment_entry(comment: discussion.ThreadComment) -> dict[str, Any]:
    """A comment as the review block carries it (issue 11: discussion)."""
    return {
        "author": pseudonym(comment.author_id),
        "created_at": comment.created_at.isoformat(),
        "text": comment.text,
        "edited": comment.edited,
        "history": [
            {"text": r.text, "created_at": r.created_at.isoformat()} for r in comment.earlier
        ],
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
    transcript: Transcript,
    reviews: Iterable[Review] | None = None,
    *,
    batch: ImportBatch | None = None,
    comments: Iterable[discussion.ThreadComment] | None = None,
    needs_discussion: bool | None = None,
    raw: str | None = None,
) -> dict[str, Any]:
    """The exported form of one transcript (see the module docstring).

    ``reviews`` defaults to ``transcript.reviews.all()``; they must be in (created_at, id)
    order. ``batch`` (its ``run_source`` and ``model``) defaults to ``transcript.batch``.
    ``comments`` (in time order) and ``needs_discussion`` default to the item's own, ``raw``
    (its line) to ``transcript.text.raw``.
    """
    return _exported(
        transcript,
        reviews=transcript.reviews.all() if reviews is None else reviews,
        batch=batch or transcript.batch,
        comments=discussion.thread(transcript) if comments is None else comments,
        needs_discussion=transcript.discussion_marks.open().exists()
        if needs_discussion is None
        else needs_discussion,
        raw=transcript.text.raw if raw is None else raw,
    )[0]


def _exported(
    transcript: Transcript,
    *,
    reviews: Iterable[Review],
    batch: ImportBatch,
    comments: Iterable[discussion.ThreadComment],
    needs_discussion: bool,
    raw: str,
) -> tuple[dict[str, Any], bool]:
    """``export_record``'s record (every argument given), and whether it is known to hold no
    NaN or infinity (so ``jsontext.dumps_line`` may write it by orjson): its line was read by
    orjson, which refuses them, and lists none to put back. What the export adds holds none:
    labels, strings, booleans, integers and times, from the app's own columns."""
    record, finite = jsontext.loads_checked(raw)
    if finite:
        earlier = record.get(REVIEW_KEY)
        finite = not (isinstance(earlier, dict) and NON_FINITE_KEY in earlier)
    # A re-imported export's line lists the numbers it wrote as null: the record has them back.
    record = decode_non_finite(record)
    rows = list(reviews)
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
        "comments": [_comment_entry(c) for c in comments],
        "needs_discussion": needs_discussion,
    }
    # What the record already held under these keys (an export of an export, or a source's
    # own key of that name) moves into the new review block, whence ``original_record`` puts
    # it back: nothing is lost, and the identity stays that of the original.
    if REVIEW_KEY in record:
        block[EARLIER_REVIEW_KEY] = record.pop(REVIEW_KEY)
    if MALT_KEY in record:
        block[EARLIER_MALT_KEY] = record.pop(MALT_KEY)
    record[REVIEW_KEY] = block
    record[MALT_KEY] = _malt_block(transcript, record, batch=batch)
    return record, finite


def malt_labels(ground_truth: Any) -> list[str]:
    """MALT's ``labels`` for an exported ground truth: ``[misbehavior_type]`` for a
    misbehavior with a type, ``["misbehavior"]`` for one without, ``["normal"]`` otherwise
    (with the exporter's truthiness, and a type on a non-misbehavior meaning nothing)."""
    truth = ground_truth if isinstance(ground_truth, dict) else {}
    if not truth.get("is_misbehavior"):
        return [MALT_NORMAL]
    mb_type = truth.get("misbehavior_type")
    return [mb_type] if isinstance(mb_type, str) and mb_type else [MALT_UNTYPED_MISBEHAVIOR]


def has_chain_of_thought(record: dict[str, Any]) -> bool:
    """Whether the record carries the worker's reasoning: a non-blank
    ``proposal.worker_reasoning`` (see the module docstring for why not ``cot_analysis``)."""
    proposal = record.get("proposal")
    reasoning = proposal.get("worker_reasoning") if isinstance(proposal, dict) else None
    return isinstance(reasoning, str) and bool(reasoning.strip())


def _malt_block(
    transcript: Transcript, record: dict[str, Any], *, batch: ImportBatch
) -> dict[str, Any]:
    """MALT's per-run fields for an exported ``record`` (its final ``ground_truth`` in place)."""
    return {
        "run_id": transcript.fingerprint,
        "manually_reviewed": transcript.is_settled,
        "labels": malt_labels(record.get("ground_truth")),
        "run_source": batch.run_source or None,
        "model": batch.model or None,
        "has_chain_of_thought": has_chain_of_thought(record),
    }


def ordered(queryset: TranscriptQuerySet) -> TranscriptQuerySet:
    return queryset.order_by(*EXPORT_ORDER)


@dataclass(frozen=True, slots=True)
class _Row:
    """A transcript to export with its line, whether it is marked "needs discussion" now, and
    whether any review or comment of it exists (only those are looked up)."""

    transcript: Transcript
    raw: str
    marked: bool
    reviewed: bool
    discussed: bool


def _export_rows(queryset: TranscriptQuerySet, *, chunk_size: int) -> Iterator[_Row]:
    """The transcripts of ``queryset`` in export order with the columns an export reads
    (``EXPORT_FIELDS``), each with its line, whether it is marked "needs discussion", and
    whether it has reviews and comments, one query (joined to the text table; the three are
    EXISTS probes of an index) read a chunk at a time.

    Read as value tuples (the same database converters apply) and set straight onto
    instances, rather than through ``only()``: building a model instance with deferred fields
    walks every one of the model's 50-odd columns per row and cost about as much as parsing
    the record's JSON (issue 14's export goal). The instances behave as loaded ones (their
    properties, ``final_labels`` and ``flags``, read the same attributes); a column left out
    would load on access like a deferred one. No ``post_init`` signal is sent: the app
    connects none to transcripts."""
    names = [
        field.attname
        for field in Transcript._meta.concrete_fields
        if (field.primary_key or field.name in EXPORT_FIELDS) and field.name != "problems"
    ]
    values = (
        ordered(queryset)
        .annotate(
            # As text: most records have none, and "[]" needs no JSON parse (the JSON field's
            # own conversion was some 5% of an export).
            problems_text=Cast("problems", output_field=TextField()),
            needs_discussion=discussion.marked_now(),
            has_reviews=Exists(Review.objects.filter(transcript=OuterRef("pk"))),
            has_comments=discussion.commented(),
        )
        .values_list(
            *names, "problems_text", "text__raw", "needs_discussion", "has_reviews", "has_comments"
        )
        .iterator(chunk_size=chunk_size)
    )
    db = queryset.db
    for *columns, problems, raw, marked, reviewed, discussed in values:
        transcript = Transcript.__new__(Transcript)
        transcript.__dict__.update(zip(names, columns, strict=True))
        transcript.problems = [] if problems == "[]" else jsontext.loads(problems)
        transcript._state = ModelState()
        transcript._state.adding = False
        transcript._state.db = db
        yield _Row(transcript, raw, marked, reviewed, discussed)


def iter_records(
    queryset: TranscriptQuerySet, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[dict[str, Any]]:
    """Exported records in export order, streamed: the transcripts in one query read a chunk
    at a time (with whether each is marked "needs discussion", has reviews and has comments,
    EXISTS probes in that query), and per chunk one query for the reviews of those that have
    any, one for the comments (with their revisions) of those that have any and, for batches
    not seen before, one for their run source and model. A chunk with no reviews or no
    comments skips that query.

    The reviews are grouped by hand rather than with ``prefetch_related`` and the batches kept
    in a dict rather than joined with ``select_related``: both did per-row ORM work (a related
    manager and its filter per transcript, a batch instance per row) that cost more than the
    JSON itself (issue 14's export goal). Nothing in a chunk points back at its transcripts,
    so each chunk is freed when it is done and memory stays flat. (Looking up only the rows
    that have reviews or comments matters when few do: 2,000 ids bound to a query cost about
    as much as the rows' JSON.)
    """
    for record, _ in _iter_exported(queryset, chunk_size=chunk_size):
        yield record


def _iter_exported(
    queryset: TranscriptQuerySet, *, chunk_size: int
) -> Iterator[tuple[dict[str, Any], bool]]:
    """``iter_records``'s records, each with whether it is known to hold no NaN or infinity
    (``_exported``), read in one snapshot (``snapshot``).

    On PostgreSQL the snapshot's transaction also lets the transcripts' cursor stream: outside
    a transaction Django declares it WITH HOLD, and PostgreSQL then runs the whole query and
    stores every row (the lines: gigabytes at a million) before the first fetch."""
    with snapshot(queryset.db):
        yield from _iter_exported_now(queryset, chunk_size=chunk_size)


def _iter_exported_now(
    queryset: TranscriptQuerySet, *, chunk_size: int
) -> Iterator[tuple[dict[str, Any], bool]]:
    batches: dict[int, ImportBatch] = {}
    for chunk in batched(_export_rows(queryset, chunk_size=chunk_size), chunk_size):
        wanted = {row.transcript.batch_id for row in chunk} - batches.keys()
        if wanted:
            batches.update(
                ImportBatch.including_unfinished.only("run_source", "model").in_bulk(wanted)
            )
        reviews: dict[int, list[Review]] = {}
        reviewed = [row.transcript.pk for row in chunk if row.reviewed]
        if reviewed:
            for review in Review.objects.filter(transcript_id__in=reviewed).order_by(
                "created_at", "id"
            ):
                reviews.setdefault(review.transcript_id, []).append(review)
        comments = discussion.threads_for(row.transcript.pk for row in chunk if row.discussed)
        for row in chunk:
            yield _exported(
                row.transcript,
                reviews=reviews.get(row.transcript.pk, ()),
                batch=batches[row.transcript.batch_id],
                comments=comments.get(row.transcript.pk, ()),
                needs_discussion=row.marked,
                raw=row.raw,
            )


@dataclass(frozen=True)
class Snapshot:
    """An open ``snapshot``, and the helper processes that read it too (``audit.publish.
    parallel``): none unless it was opened for several processes, and none for a transaction
    the export did not open itself (a test's, whose uncommitted rows no other process sees)."""

    helpers: list[parallel.Helper]


# The snapshot each connection has open (a connection belongs to one thread).
_open_snapshots: weakref.WeakKeyDictionary[BaseDatabaseWrapper, Snapshot] = (
    weakref.WeakKeyDictionary()
)


@contextmanager
def snapshot(using: str, *, processes: int = 1) -> Iterator[Snapshot]:
    """Run the enclosed queries against one consistent snapshot of database ``using``, which
    ``processes - 1`` helper processes read too (``audit.publish.parallel``: ``write_jsonl``
    hands them parts of a file), when other processes can open the database.

    Inside an open snapshot, that one is all there is (``processes`` is ignored); inside
    another transaction (the bench, tests) that transaction's view is, with no helpers: its
    isolation level can no longer be changed.

    On PostgreSQL JIT is off for the snapshot's transaction: an export's query is planned as
    costly enough for it, and compiling took some 0.4 s (a tenth of the server's work for
    100,000 records) for a query whose time goes to reading and sending the lines, which
    compiled code does not speed up."""
    connection = connections[using]
    if (current := _open_snapshots.get(connection)) is not None:
        yield current
        return
    if connection.in_atomic_block:
        yield Snapshot(helpers=[])
        return
    wanted = processes - 1 if parallel.can_share(connection) else 0
    with ExitStack() as stack:
        helpers = stack.enter_context(parallel.helpers_for(connection, wanted))
        if connection.vendor == "sqlite":
            if helpers:
                parallel.await_boot(helpers)  # before the lock: writers wait for none of it
            with parallel.write_lock(connection) if helpers else nullcontext():
                _begin_deferred(stack, connection)
                if helpers:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT count(*) FROM sqlite_master")  # it begins here
                    parallel.begin(helpers, None, wait=True)
        else:
            stack.enter_context(transaction.atomic(using=using))
        if connection.vendor == "postgresql":
            # Must be the transaction's first statement; READ COMMITTED would give every
            # query (each data file, each summary aggregate) its own snapshot.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
                    "SET LOCAL jit = off"
                )
                if helpers:
                    # Valid while this transaction is open: the helpers adopt it as they start.
                    cursor.execute("SELECT pg_export_snapshot()")
                    [(snapshot_id,)] = cursor.fetchall()
                    parallel.begin(helpers, snapshot_id, wait=False)
        current = _open_snapshots[connection] = Snapshot(helpers=helpers)
        try:
            yield current
        finally:
            del _open_snapshots[connection]


def _begin_deferred(stack: ExitStack, connection: BaseDatabaseWrapper) -> None:
    """Enter a deferred transaction on SQLite: a read snapshot from the first SELECT, without
    the write lock that the configured BEGIN IMMEDIATE would hold for the whole export."""
    connection.ensure_connection()
    # transaction_mode exists on the SQLite wrapper only (the stubs know the base).
    configured = getattr(connection, "transaction_mode")  # noqa: B009
    setattr(connection, "transaction_mode", "DEFERRED")  # noqa: B010
    try:
        stack.enter_context(transaction.atomic(using=connection.alias))
    finally:
        setattr(connection, "transaction_mode", configured)  # noqa: B010


def encode_record(record: dict[str, Any], *, finite: bool = False) -> bytes:
    """An exported record as one line of strict JSON in UTF-8, without its newline
    (``jsontext.dumps_line``; see the module docstring for the numbers JSON cannot write).
    ``finite``: the record is known to hold no NaN or infinity."""
    try:
        return jsontext.dumps_line(record, finite=finite)
    except ValueError:  # a NaN or an infinity: rare, so only then walk the record for them
        return jsontext.dumps_line(encode_non_finite(record), finite=True)


def dump_record(record: dict[str, Any]) -> str:
    """``encode_record`` as text."""
    return encode_record(record).decode()


def iter_encoded_lines(
    queryset: TranscriptQuerySet, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """JSONL lines ("\\n"-terminated), strict JSON in UTF-8, read in one snapshot."""
    with snapshot(queryset.db):
        yield from encoded_lines_now(queryset, chunk_size=chunk_size)


def encoded_lines_now(
    queryset: TranscriptQuerySet, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """``iter_encoded_lines`` in the transaction open now (a helper process's)."""
    for record, finite in _iter_exported_now(queryset, chunk_size=chunk_size):
        yield encode_record(record, finite=finite) + b"\n"


def iter_lines(queryset: TranscriptQuerySet, *, chunk_size: int = CHUNK_SIZE) -> Iterator[str]:
    """``iter_encoded_lines`` as text."""
    for line in iter_encoded_lines(queryset, chunk_size=chunk_size):
        yield line.decode()


@dataclass(frozen=True)
class WrittenFile:
    path: str
    records: int
    size: int
    sha256: str


class _Sink:
    """A binary handle that counts the lines and bytes written to it, and digests them."""

    def __init__(self, handle: IO[bytes] | gzip.GzipFile) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.count = self.size = 0

    def write_lines(self, lines: Iterable[bytes]) -> None:
        handle, digest = self.handle, self.digest
        for data in lines:
            handle.write(data)
            digest.update(data)
            self.count += 1
            self.size += len(data)

    def append(self, path: Path, *, records: int, size: int) -> None:
        """Append the ``records`` lines of ``size`` bytes another process wrote to ``path``."""
        appended = 0
        with path.open("rb") as part:
            while block := part.read(WRITE_BUFFER):
                self.handle.write(block)
                self.digest.update(block)
                appended += len(block)
        if appended != size:
            raise parallel.HelperError(
                f"an export helper wrote {size} bytes to {path.name}, which holds {appended}"
            )
        self.count += records
        self.size += size


def write_lines(lines: Iterable[bytes], handle: IO[bytes] | gzip.GzipFile) -> tuple[int, int, str]:
    """Write encoded lines to a binary handle; return (lines, bytes, sha256 of the bytes)."""
    sink = _Sink(handle)
    sink.write_lines(lines)
    return sink.count, sink.size, sink.digest.hexdigest()


def write_jsonl(
    queryset: TranscriptQuerySet,
    path: str | Path,
    *,
    compress: bool = False,
    chunk_size: int = CHUNK_SIZE,
    processes: int | None = None,
) -> WrittenFile:
    """Export ``queryset`` to a file (gzip when ``compress``); the sha256 is of the JSONL bytes.

    ``processes``: how many processes write it (``audit.publish.parallel``), in contiguous
    ranges of the export order that this process joins in order: the same bytes as one process
    writes. None: ``parallel.export_processes`` of its size. Within an open ``snapshot``, at
    most as many as that snapshot has (its helpers and this process)."""
    path = Path(path)
    opened = processes_for(queryset) if processes is None else processes
    with snapshot(queryset.db, processes=opened) as current:
        ranges = _ranges(queryset, current, processes)
        helpers = current.helpers[: len(ranges) - 1]
        parts: list[Path] = []
        try:
            for helper, records in zip(helpers, ranges[1:], strict=True):
                # Beside the file (one file system), hidden, and named afresh.
                fd, name = tempfile.mkstemp(
                    dir=path.parent, prefix=f".{path.name}.", suffix=".part"
                )
                os.close(fd)
                parts.append(Path(name))
                helper.export(parallel.pickled(records), parts[-1], chunk_size)
            # A megabyte of buffer: a line is a few KB, so the default 8 KB buffer wrote every
            # other line.
            with path.open("wb", buffering=WRITE_BUFFER) as raw, ExitStack() as stack:
                handle: IO[bytes] | gzip.GzipFile = raw
                if compress:
                    # mtime=0 and no file name: the same records give the same .gz bytes.
                    handle = stack.enter_context(
                        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
                    )
                sink = _Sink(handle)
                sink.write_lines(encoded_lines_now(ranges[0], chunk_size=chunk_size))
                for helper, part in zip(helpers, parts, strict=True):
                    count, size = helper.written()
                    sink.append(part, records=count, size=size)
        except BaseException:
            # A helper still writing would answer this part's request after the next one's.
            for helper in helpers:
                if helper.busy:
                    helper.kill()
                    current.helpers.remove(helper)
            raise
        finally:
            for part in parts:
                part.unlink(missing_ok=True)
    return WrittenFile(
        path=str(path), records=sink.count, size=sink.size, sha256=sink.digest.hexdigest()
    )


def processes_for(queryset: TranscriptQuerySet) -> int:
    """The processes for a snapshot opened to export ``queryset`` (``write_jsonl``, a release):
    by its size now (within an open transaction no snapshot with helpers is opened, so nothing
    is counted)."""
    if connections[queryset.db].in_atomic_block:
        return 1
    return parallel.export_processes(queryset.count())


def _ranges(
    queryset: TranscriptQuerySet, current: Snapshot, processes: int | None
) -> list[TranscriptQuerySet]:
    """``queryset`` split into contiguous ranges of the export order of about the same number
    of records, one for this process and one for each of the snapshot's helpers at most: as
    many as ``processes``, or (None) as ``parallel.export_processes`` says for its size; the
    queryset itself when it is one. The bounds are the export order's keys (unique: the
    fingerprint is the last) at the quantiles, counted in the snapshot, each range a row-value
    comparison that an index on the order's leading columns serves (Django's own tuple
    lookups, those of composite primary keys)."""
    if not current.helpers or queryset.query.is_sliced:
        return [queryset]
    total = queryset.count()
    wanted = parallel.export_processes(total) if processes is None else processes
    parts = max(1, min(wanted, len(current.helpers) + 1, total))
    if parts == 1:
        return [queryset]
    in_order = ordered(queryset).values_list(*EXPORT_ORDER)
    bounds = [tuple(in_order[total * n // parts]) for n in range(1, parts)]

    def key() -> Tuple:
        return Tuple(*(F(name) for name in EXPORT_ORDER))

    ranges = [queryset.filter(TupleLessThan(key(), bounds[0]))]
    for lower, upper in pairwise(bounds):
        ranges.append(
            queryset.filter(TupleGreaterThanOrEqual(key(), lower), TupleLessThan(key(), upper))
        )
    ranges.append(queryset.filter(TupleGreaterThanOrEqual(key(), bounds[-1])))
    return ranges


def build_summary(
    selection: TranscriptQuerySet,
    *,
    files: Mapping[str, TranscriptQuerySet],
    counts: RollupQuerySet | None = None,
    file_counts: Mapping[str, RollupQuerySet] | None = None,
) -> dict[str, Any]:
    """summary.json for ``selection``, of which ``files`` ({file name: records}) were written.

    - ``published``: ``export_summary()`` over every written record together, and ``files`` the
      same per file: what the seed exporter computes from the data files themselves (each
      record as exported: settled labels for settled records, the rest as imported);
    - ``as_imported``, ``current``, ``settled_before``, ``settled_after``: the summary of the
      whole selection on each basis (``metrics.VIEWS``), and ``confusion_matrix`` likewise;
    - ``label_changes`` (what auditors changed, settled records), ``label_fixes`` (corrected
      versus only filled in), ``inconsistent_labels`` (stored labels contradicting their own
      ground truth), ``agreement``, ``review_status`` and ``estimated_error_rate``;
    - ``monitors``: each monitor signal against the settled labels, naive and weighted for the
      whole selection (``audit.metrics.monitors``).
    - ``guideline_versions`` (issue 11): which guideline versions the labels followed: the
      current confirm, relabel and adjudicate reviews of the selection per version, with n.

    ``counts`` (and ``file_counts``, the same keys as ``files``): the selection's (and each
    file's) rows of the rollup, when the caller has them (``rollup.scope``): every count is
    then a sum over the rollup's few thousand rows instead of a scan of the wide transcript
    rows, some twenty of them (at a million records the scans took minutes). The figures are
    the same either way (tests compare them); reviews, sessions and monitor scores are read
    from the records.
    """
    selection = selection.order_by()
    tallied: Countable = selection if counts is None else counts
    written = list(files.items())
    published = written[0][1] if written else selection.none()
    for _, more in written[1:]:
        published = published | more

    def tally_of(name: str, records: TranscriptQuerySet) -> Countable:
        return records.order_by() if file_counts is None else file_counts[name]

    published_tally: Countable = published.order_by()
    if file_counts is not None and written:
        published_tally = file_counts[written[0][0]]
        for name, _ in written[1:]:
            published_tally = published_tally | file_counts[name]
    return {
        "published": metrics.summarize(
            published_tally, basis=metrics.CURRENT, records=published.order_by()
        ),
        "files": {
            name: metrics.summarize(
                tally_of(name, records), basis=metrics.CURRENT, records=records.order_by()
            )
            for name, records in files.items()
        },
        **metrics.summaries(tallied, records=selection),
        "confusion_matrix": metrics.confusion_matrices(tallied),
        "label_changes": metrics.label_change_matrix(tallied),
        "label_fixes": metrics.label_fixes(tallied),
        "inconsistent_labels": metrics.inconsistent_labels(tallied),
        "agreement": metrics.agreement(selection),
        "review_status": metrics.status_counts(tallied),
        "estimated_error_rate": metrics.estimated_error_rate(tallied),
        "monitors": monitors.evaluate(selection, population=monitors.count_population(tallied)),
        # Which guideline versions the labels followed (current reviews per version).
        "guideline_versions": guideline_versions.version_counts(selection),
    }


def dump_summary(summary: dict[str, Any]) -> str:
    """Deterministic, strict JSON text for a summary: the same data gives the same bytes."""
    return json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n"


def selection_counts(queryset: TranscriptQuerySet) -> dict[str, int]:
    """How many records a selection has, and how many of them are settled (the reviewed ones
    a release publishes)."""
    total = queryset.count()
    reviewed = queryset.settled().count()
    return {"total": total, "reviewed": reviewed, "unreviewed": total - reviewed}
