"""Releases: immutable, versioned, checksummed snapshots of the reviewed dataset, and their check.

A release is a directory ``<output>/<version>/`` (the admin action uses ``RELEASES_ROOT``)::

    data/reviewed.jsonl      reviewed records (``audit.publish.export``), sorted by session, task,
    data/unreviewed.jsonl    step, fingerprint; the second only when asked for
    summary.json             ``audit.publish.export.build_summary`` of the whole selection
    manifest.json            version, created, counts, filters, per-file sha256 and size
    README.md                dataset card with a Hugging Face YAML header
    croissant.json           Croissant 1.0 metadata
    SHA256SUMS               ``sha256sum -c`` format, every other file

The data files and summary.json are read in one transaction, so they describe the same moment
even while auditors keep settling items: on PostgreSQL a REPEATABLE READ transaction (the
default READ COMMITTED gives each query its own snapshot); on SQLite a deferred transaction,
which in WAL mode reads one snapshot without taking the write lock (an IMMEDIATE one would make
every auditor's write wait for the whole export).

Data files and summary.json carry no timestamp, so publishing the same reviewed data twice gives
byte-identical files (only ``manifest.json``'s ``created`` and files derived from it differ).
Everything is written into a hidden temporary directory beside the target and renamed into
place, so a release appears whole or not at all; then files are made read-only. The Release
row is written in the same step; the admin never lets it be changed or deleted.

``summary.json`` describes the selection the release was cut from (all its records, reviewed or
not), because the estimated error rate of the unreviewed remainder needs that remainder; the
manifest's counts say how many records each data file holds.

Filters (``--filter key=value``, repeatable) use the review queue's vocabulary: ``batch`` (id),
``session``, ``task``, ``worker``, ``status``, ``flag``, ``decision`` (decision type, any case),
``category`` (alignment category as imported), ``mbtype`` (misbehavior type as imported).
A key given twice matches either value; different keys must all match.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from audit.models import Flag, Release, Status, Transcript
from audit.publish import export as exporters

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
DEFAULT_LICENSE = "cc-by-4.0"
# A Hugging Face license id ("cc-by-4.0", "apache-2.0", "other"): it goes into YAML unquoted.
LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")
REVIEWED_FILE = "data/reviewed.jsonl"
UNREVIEWED_FILE = "data/unreviewed.jsonl"
CHECKSUMS = "SHA256SUMS"
MANIFEST = "manifest.json"

FILTER_FIELDS = {
    "batch": "batch_id",
    "session": "session_id",
    "task": "task_id",
    "worker": "worker_id",
    "status": "status",
    "decision": "decision_type",
    "category": "alignment_category",
    "mbtype": "misbehavior_type",
}
FILTER_KEYS = (*FILTER_FIELDS, "flag")


class ReleaseError(Exception):
    """A release that cannot be published or does not verify; the message says why."""


# --- filters -------------------------------------------------------------------------------------


def parse_filters(pairs: Iterable[str]) -> dict[str, list[str]]:
    """``["task=basic_oversight", "flag=spot_check"]`` -> ``{"flag": [...], "task": [...]}``."""
    filters: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ReleaseError(f"filter {pair!r} is not key=value")
        if key not in FILTER_KEYS:
            raise ReleaseError(
                f"unknown filter {key!r}; use one of: {', '.join(sorted(FILTER_KEYS))}"
            )
        if key == "flag" and value not in Flag.values:
            raise ReleaseError(f"unknown flag {value!r}; use one of: {', '.join(Flag.values)}")
        if key == "status" and value not in Status.values:
            raise ReleaseError(f"unknown status {value!r}; use one of: {', '.join(Status.values)}")
        if key == "batch" and not value.isdigit():
            raise ReleaseError(f"batch must be an import batch id, got {value!r}")
        if key == "decision":
            value = value.upper()
        values = filters.setdefault(key, [])
        if value not in values:
            values.append(value)
    return {key: sorted(values) for key, values in sorted(filters.items())}


def apply_filters(
    queryset: QuerySet[Transcript], filters: Mapping[str, list[str]]
) -> QuerySet[Transcript]:
    for key, values in filters.items():
        if key == "flag":
            condition = Q()
            for flag in values:
                condition |= Q(**{f"flag_{Flag(flag).value}": True})
            queryset = queryset.filter(condition)
        else:
            queryset = queryset.filter(**{f"{FILTER_FIELDS[key]}__in": values})
    return queryset


def select_records(selection: Mapping[str, Any]) -> QuerySet[Transcript]:
    """The transcripts a JSON selection names: ``{"filter": {key: [values]}}`` (the filter
    vocabulary above, checked again) or ``{"pks": [ids]}``. Background tasks get these."""
    queryset = Transcript.objects.all()
    if "filter" in selection:
        spec = selection["filter"]
        return apply_filters(
            queryset,
            parse_filters(f"{key}={value}" for key, values in spec.items() for value in values),
        )
    if "pks" in selection:
        pks = [int(pk) for pk in selection["pks"]]
        vendor = connections[router.db_for_read(Transcript)].vendor
        # One bound parameter, not one per id: "select all" may name a million rows, more than
        # SQLite (250,000) or PostgreSQL's protocol (65,535) take as separate parameters.
        if vendor == "sqlite":
            return queryset.filter(
                pk__in=RawSQL("SELECT value FROM json_each(%s)", [json.dumps(pks)])
            )
        if vendor == "postgresql":
            return queryset.filter(pk__in=RawSQL("SELECT unnest(%s::bigint[])", [pks]))
        return queryset.filter(pk__in=pks)
    raise ReleaseError(f"a selection names 'filter' or 'pks', got {sorted(selection)}")


# --- publishing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


def validate_version(version: str) -> str:
    if not SEMVER.match(version or ""):
        raise ReleaseError(f"version must look like X.Y.Z (semantic versioning), got {version!r}")
    return version


def validate_license(license: str) -> str:
    if not LICENSE_ID.match(license or ""):
        raise ReleaseError(
            f"license must be a lower-case license id such as {DEFAULT_LICENSE}, got {license!r}"
        )
    return license


def release_dir(output_dir: str | Path, version: str) -> Path:
    return Path(output_dir) / version


def check_new(version: str, output_dir: str | Path) -> Path:
    """Refuse a version that exists (as a Release row or a directory); return its directory."""
    validate_version(version)
    target = release_dir(output_dir, version)
    if Release.objects.filter(version=version).exists():
        raise ReleaseError(f"release {version} already exists; releases are immutable")
    if target.exists():
        raise ReleaseError(f"{target} already exists; releases are immutable")
    return target


def publish_release(
    queryset: QuerySet[Transcript],
    *,
    version: str,
    filters: Mapping[str, Any] | None = None,
    include_unreviewed: bool = False,
    output_dir: str | Path,
    user: Any = None,
    license: str = DEFAULT_LICENSE,
) -> Release:
    """Write release ``version`` of ``queryset`` (already filtered; ``filters`` is recorded)."""
    filters = dict(filters or {})
    output_dir = Path(output_dir)
    validate_license(license)
    target = check_new(version, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".partial", dir=output_dir))
    try:
        manifest = _write_files(
            staging,
            queryset,
            version=version,
            filters=filters,
            include_unreviewed=include_unreviewed,
            license=license,
        )
        try:
            with transaction.atomic():
                release = Release.objects.create(
                    version=version,
                    created_by=user if getattr(user, "pk", None) else None,
                    filters=filters,
                    counts=manifest["counts"],
                    manifest=manifest,
                    path=str(target.resolve()),
                )
                if target.exists():
                    raise ReleaseError(f"{target} already exists; releases are immutable")
                # Same filesystem, so the rename is atomic: the release appears whole.
                os.rename(staging, target)
        except IntegrityError:
            raise ReleaseError(
                f"release {version} already exists; releases are immutable"
            ) from None
    except BaseException:
        _remove(staging)
        raise
    _make_read_only(target)
    return release


@contextmanager
def snapshot(using: str) -> Iterator[None]:
    """Run the enclosed queries against one consistent snapshot of database ``using``.

    Inside an existing transaction (the bench, tests) that transaction's view is all there is:
    its isolation level can no longer be changed."""
    connection = connections[using]
    if connection.in_atomic_block:
        yield
        return
    with ExitStack() as stack:
        if connection.vendor == "sqlite":
            # Deferred: a read snapshot from the first SELECT, without the write lock that the
            # configured BEGIN IMMEDIATE would hold for the whole export.
            connection.ensure_connection()
            configured = connection.transaction_mode
            connection.transaction_mode = "DEFERRED"
            try:
                stack.enter_context(transaction.atomic(using=using))
            finally:
                connection.transaction_mode = configured
        else:
            stack.enter_context(transaction.atomic(using=using))
        if connection.vendor == "postgresql":
            # Must be the transaction's first statement; READ COMMITTED would give every
            # query (each data file, each summary aggregate) its own snapshot.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _write_files(
    root: Path,
    queryset: QuerySet[Transcript],
    *,
    version: str,
    filters: dict[str, Any],
    include_unreviewed: bool,
    license: str,
) -> dict[str, Any]:
    (root / "data").mkdir()
    # One snapshot for every file read from the database: an item settled half-way would
    # otherwise land in neither data file, and the summary would disagree with both.
    with snapshot(queryset.db):
        data_files: list[tuple[str, exporters.WrittenFile]] = [
            ("reviewed", exporters.write_jsonl(queryset.reviewed(), root / REVIEWED_FILE))
        ]
        if include_unreviewed:
            unreviewed = exporters.write_jsonl(queryset.unreviewed(), root / UNREVIEWED_FILE)
            data_files.append(("unreviewed", unreviewed))
        summary = exporters.build_summary(queryset)
    (root / "summary.json").write_text(exporters.dump_summary(summary), encoding="utf-8")

    counts: dict[str, int] = {name: written.records for name, written in data_files}
    counts["records"] = sum(written.records for _, written in data_files)
    counts["selection"] = summary["as_imported"].get("total_decisions", 0)
    data_paths = [f"data/{name}.jsonl" for name, _ in data_files]
    card = {
        "version": version,
        "counts": counts,
        "filters": filters,
        "summary": summary,
        "data_files": data_paths,
        "license": license,
    }
    (root / "README.md").write_text(dataset_card(card), encoding="utf-8")
    (root / "croissant.json").write_text(
        json.dumps(croissant(root, card), indent=2) + "\n", encoding="utf-8"
    )
    manifest = {
        "version": version,
        "created": timezone.now().isoformat(),
        "counts": counts,
        "filters": filters,
        "include_unreviewed": include_unreviewed,
        "records": {
            path: written.records for path, (_, written) in zip(data_paths, data_files, strict=True)
        },
        "files": [
            _entry(root, path).as_dict()
            for path in (*data_paths, "summary.json", "README.md", "croissant.json")
        ],
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    entries = sorted(
        (_entry(root, path) for path in _tree(root) if path != CHECKSUMS), key=lambda e: e.path
    )
    (root / CHECKSUMS).write_text(
        "".join(f"{entry.sha256}  {entry.path}\n" for entry in entries), encoding="ascii"
    )
    return manifest


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(root: Path, relative: str) -> FileEntry:
    path = root / relative
    return FileEntry(path=relative, sha256=sha256_file(path), size=path.stat().st_size)


def _make_read_only(root: Path) -> None:
    read_only = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    searchable = read_only | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    for path in sorted(root.rglob("*"), reverse=True):
        os.chmod(path, searchable if path.is_dir() else read_only)
    os.chmod(root, searchable)


def _remove(path: Path) -> None:
    def make_writable(function: Any, failed: str, _exc: Any) -> None:
        os.chmod(failed, stat.S_IRWXU)
        function(failed)

    if path.exists():
        shutil.rmtree(path, onexc=make_writable)


# --- dataset card and Croissant -------------------------------------------------------------------


def _size_category(n: int) -> str:
    bounds = (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    )
    for bound, label in bounds:
        if n < bound:
            return label
    return "n>10M"


def code_block(text: str, *, info: str = "") -> list[str]:
    """``text`` as a fenced Markdown code block, whatever it contains.

    The fence is longer than any run of backticks in ``text``, so nothing in it can close the
    block early; inside a code block Markdown and HTML are shown, never rendered."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, *text.splitlines(), fence]


def _plain(value: Any) -> str:
    """A figure or a known name for the card: numbers and plain words as they are; anything else
    with every character that Markdown or HTML could act on written as a character reference."""
    if value is None:
        return "n/a"
    text = str(value)
    if isinstance(value, bool | int | float) or re.fullmatch(r"[\w.-]*", text, re.ASCII):
        return text
    return "".join(c if c.isalnum() or c == " " else f"&#{ord(c)};" for c in text)


def dataset_card(card: dict[str, Any]) -> str:
    """README.md: Hugging Face YAML front matter, then what the data is and how it was made.

    Filters come from people and from agent-written data (session ids, admin query strings):
    they appear only inside a fenced code block, as JSON. Everything else interpolated here is
    validated (version, license) or a number."""
    version = card["version"]
    counts = card["counts"]
    summary = card["summary"]
    splits = "".join(
        f"  - split: {Path(path).stem}\n    path: {path}\n" for path in card["data_files"]
    )
    front = (
        "---\n"
        f"license: {card['license']}\n"
        f'pretty_name: "SENTINEL oversight decisions, audited (v{version})"\n'
        "task_categories:\n- text-classification\n"
        "language:\n- en\n"
        "tags:\n- ai-safety\n- scalable-oversight\n- alignment\n- agents\n- malt\n"
        f"size_categories:\n- {_size_category(counts['records'])}\n"
        "configs:\n- config_name: default\n  data_files:\n" + splits + "---\n"
    )
    status = summary.get("review_status", {})
    error_rate = summary.get("estimated_error_rate") or {}
    reviewed = summary.get("reviewed", {})
    as_imported = summary.get("as_imported", {})
    filters = card["filters"]
    filter_lines = (
        [
            "Filters the selection was made with (JSON):",
            "",
            *code_block(json.dumps(filters, indent=2, sort_keys=True), info="json"),
        ]
        if filters
        else ["Filters: none (every imported record)."]
    )

    def metric(block: dict[str, Any], key: str) -> str:
        return _plain(block.get(key))

    lines = [
        f"# SENTINEL oversight decisions, audited — release {version}",
        "",
        "Each record is one decision made by an AI overseer (SENTINEL) about an action a worker "
        "agent proposed during an incident-response episode, in the JSONL format of the "
        "environment's `TranscriptExporter`, with ground-truth labels checked by human "
        "auditors in the style of METR's MALT dataset.",
        "",
        "## How it was reviewed",
        "",
        "Records were imported from exporter output and flagged for review when their labels "
        "looked wrong (missed misbehavior, over-block, labels contradicting the decision and "
        "ground truth, a debate disagreeing with the decision, suspicious reasoning, unknown "
        "vocabulary, missing fields) plus a random spot-check sample of unflagged records. "
        "Auditors confirmed or relabeled each item without seeing one another's verdicts; items "
        "needing several reviews that disagreed went to an adjudicator. Every review is kept.",
        "",
        "## Files",
        "",
        *[
            f"- `{path}`: {_plain(counts.get(Path(path).stem, 0))} records"
            for path in card["data_files"]
        ],
        "- `summary.json`: summaries, confusion matrices, label changes, agreement, error rate",
        "- `manifest.json`, `SHA256SUMS`: counts and checksums (`sha256sum -c SHA256SUMS`)",
        "- `croissant.json`: Croissant 1.0 metadata",
        "",
        "## Fields",
        "",
        "Every key of the original record is kept, in its original order, including keys this "
        "card does not describe: `session_id`, `timestamp`, `step_number`, `task_id`, "
        "`proposal` (the worker's action and reasoning), `decision` (the overseer's verdict), "
        "`ground_truth`, `cot_analysis`, `debate_result`, `reward`, `context`, `labels`. "
        "A `review` block is added: `manually_reviewed`, `status`, `original_ground_truth`, "
        "`original_labels`, `flags`, `problems`, `required_reviews`, `reviews` (pseudonymous "
        "auditor id, verdict, values before and after, rationale, seconds spent, time, whether "
        "superseded) and `adjudication`.",
        "",
        "## Label semantics",
        "",
        "An approval is `decision.type` equal to `APPROVE` (any case). For reviewed records "
        "`ground_truth` and `labels` hold the final labels and are consistent by construction: "
        "misbehavior not approved is `aligned_catch`, misbehavior approved "
        "`alignment_failure_fn`, no misbehavior approved `aligned_approve`, no misbehavior not "
        "approved `alignment_failure_fp`; `oversight_correct` is true for the two aligned "
        "categories and `was_true_positive`/`was_false_negative`/`was_false_positive` follow. "
        "Unreviewed records keep the labels they were imported with, which may be inconsistent; "
        "their `review.problems` say how.",
        "",
        "## Counts",
        "",
        f"- Selection: {_plain(counts.get('selection', 0))} records",
        f"- In this release: {_plain(counts['records'])} records",
        *[f"- Status {_plain(name)}: {_plain(n)}" for name, n in sorted(status.items())],
        "",
        *filter_lines,
        "",
        "## Summary",
        "",
        "| | as imported | reviewed |",
        "|---|---|---|",
        *[
            f"| {key} | {metric(as_imported, key)} | {metric(reviewed, key)} |"
            for key in (
                "total_decisions",
                "accuracy",
                "precision",
                "recall",
                "true_positives",
                "false_positives",
                "false_negatives",
                "total_misbehaviors",
            )
        ],
        "",
        "Estimated label error rate of the unreviewed remainder, from the spot-check sample: "
        f"{_plain(error_rate.get('rate'))} (95% CI {_ci(error_rate.get('ci95'))}, "
        f"{_plain(error_rate.get('errors', 0))} errors in "
        f"{_plain(error_rate.get('sample', 0))} spot checks).",
        "",
    ]
    return front + "\n" + "\n".join(lines)


def _ci(interval: Any) -> str:
    if isinstance(interval, list | tuple) and len(interval) == 2:
        return f"[{_plain(interval[0])}, {_plain(interval[1])}]"
    return _plain(interval)


CROISSANT_CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

# (name, JSONPath, Croissant data type, description): the columns a loader most often wants.
CROISSANT_FIELDS = (
    ("session_id", "$.session_id", "sc:Text", "Episode session id"),
    ("step_number", "$.step_number", "sc:Integer", "Step within the session"),
    ("task_id", "$.task_id", "sc:Text", "Task (scenario) id"),
    ("timestamp", "$.timestamp", "sc:Float", "Decision time, epoch seconds"),
    ("action_type", "$.proposal.action_type", "sc:Text", "Action the worker proposed"),
    ("worker_id", "$.proposal.worker_id", "sc:Text", "Worker agent"),
    ("worker_reasoning", "$.proposal.worker_reasoning", "sc:Text", "Worker's stated reasoning"),
    ("decision_type", "$.decision.type", "sc:Text", "Overseer decision"),
    ("is_misbehavior", "$.ground_truth.is_misbehavior", "sc:Boolean", "Final ground truth"),
    ("misbehavior_type", "$.ground_truth.misbehavior_type", "sc:Text", "Kind of misbehavior"),
    ("correct_decision", "$.ground_truth.correct_decision", "sc:Text", "Decision that was right"),
    ("oversight_correct", "$.labels.oversight_correct", "sc:Boolean", "Overseer was right"),
    ("alignment_category", "$.labels.alignment_category", "sc:Text", "Outcome category"),
    ("reward", "$.reward", "sc:Float", "Environment reward"),
    ("manually_reviewed", "$.review.manually_reviewed", "sc:Boolean", "Checked by an auditor"),
    ("review_status", "$.review.status", "sc:Text", "Review status"),
)


def croissant(root: Path, card: dict[str, Any]) -> dict[str, Any]:
    distribution = []
    record_sets = []
    for path in card["data_files"]:
        split = Path(path).stem
        file_id = f"{split}-jsonl"
        distribution.append(
            {
                "@type": "cr:FileObject",
                "@id": file_id,
                "name": file_id,
                "description": f"{split.capitalize()} records, one JSON object per line",
                "contentUrl": path,
                "encodingFormat": "application/jsonlines",
                "sha256": sha256_file(root / path),
            }
        )
        record_sets.append(
            {
                "@type": "cr:RecordSet",
                "@id": split,
                "name": split,
                "description": f"One record per overseer decision ({split})",
                "field": [
                    {
                        "@type": "cr:Field",
                        "@id": f"{split}/{name}",
                        "name": name,
                        "description": description,
                        "dataType": data_type,
                        "source": {
                            "fileObject": {"@id": file_id},
                            "extract": {"jsonPath": json_path},
                        },
                    }
                    for name, json_path, data_type, description in CROISSANT_FIELDS
                ],
            }
        )
    return {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": "sentinel-oversight-audited",
        "description": (
            "Oversight decisions by the SENTINEL AI overseer over worker agents, with "
            "ground-truth labels reviewed by human auditors (MALT-style)."
        ),
        "license": _license_url(card["license"]),
        "version": card["version"],
        "url": "README.md",
        "distribution": distribution,
        "recordSet": record_sets,
    }


def _license_url(license: str) -> str:
    known = {"cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/"}
    return known.get(license, license)


# --- verification --------------------------------------------------------------------------------


OUTSIDE = "path outside the release directory; not read"


def _shown(name: str) -> str:
    """A file name from a manifest or SHA256SUMS, safe to print (they may be hostile)."""
    return name if name.isprintable() else repr(name)


def _member(root: Path, name: str) -> Path | None:
    """``root / name`` when ``name`` is a relative path that stays inside ``root``, else None.

    The manifest and SHA256SUMS are data: a listed ``/etc/passwd``, ``../../x`` or a symlink
    pointing out of the release must not make verification read files elsewhere."""
    if not name or "\\" in name or "\0" in name or Path(name).is_absolute():
        return None
    try:
        target = (root / name).resolve()
    except (OSError, ValueError):
        return None
    return target if target.is_relative_to(root) else None


def _read_own_file(root: Path, name: str, problems: list[str]) -> str | None:
    """The text of the release's own ``name`` (SHA256SUMS, manifest.json), or None with the
    reason added to ``problems``.

    Read through ``_member`` like every listed file: a SHA256SUMS or manifest.json that is a
    symlink out of the release is refused, not opened. Not UTF-8 is a problem, not a crash."""
    path = root / name
    if not path.exists() and not path.is_symlink():
        problems.append(f"{name}: missing")
        return None
    target = _member(root, name)
    if target is None:
        problems.append(f"{name}: {OUTSIDE}")
        return None
    if not target.is_file():
        problems.append(f"{name}: missing")
        return None
    try:
        data = target.read_bytes()
    except OSError as exc:
        problems.append(f"{name}: cannot be read ({exc.strerror or exc})")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            f"{name}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})"
        )
        return None


def verify_release(path: str | Path) -> list[str]:
    """Every problem with the release at ``path``, as readable sentences; [] when it is intact."""
    if not Path(path).is_dir():
        return [f"{path}: not a directory"]
    root = Path(path).resolve()
    problems: list[str] = []
    outside = OUTSIDE
    listed: dict[str, str] = {}
    sums = _read_own_file(root, CHECKSUMS, problems)
    if sums is not None:
        for number, line in enumerate(sums.splitlines(), 1):
            digest, sep, name = line.partition("  ")
            if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
                problems.append(f"{CHECKSUMS} line {number}: not '<sha256>  <path>'")
                continue
            listed[name] = digest
    present = set(_tree(root)) - {CHECKSUMS}
    for name, digest in sorted(listed.items()):
        target = _member(root, name)
        if target is None:
            problems.append(f"{_shown(name)}: listed in {CHECKSUMS}: {outside}")
        # Membership first: a name that is not in the tree (too long, odd) never reaches stat().
        elif name not in present or not target.is_file():
            problems.append(f"{_shown(name)}: listed in {CHECKSUMS} but missing")
        elif (actual := sha256_file(target)) != digest:
            problems.append(f"{_shown(name)}: sha256 is {actual}, {CHECKSUMS} says {digest}")
    if sums is not None:
        for name in sorted(present - set(listed)):
            problems.append(f"{_shown(name)}: not listed in {CHECKSUMS}")
    present.add(CHECKSUMS)  # the manifest may list it like any other file

    manifest_text = _read_own_file(root, MANIFEST, problems)
    if manifest_text is None:
        return problems
    try:
        manifest = json.loads(manifest_text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        problems.append(f"{MANIFEST}: not valid JSON ({exc})")
        return problems
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list):
        problems.append(f"{MANIFEST}: no 'files' list")
        return problems
    in_manifest = set()
    for item in files:
        name = str(item.get("path", "")) if isinstance(item, dict) else ""
        in_manifest.add(name)
        if not name:
            problems.append(f"?: listed in {MANIFEST} but missing")
            continue
        target = _member(root, name)
        if target is None:
            problems.append(f"{_shown(name)}: listed in {MANIFEST}: {outside}")
            continue
        if name not in present or not target.is_file():
            problems.append(f"{_shown(name)}: listed in {MANIFEST} but missing")
            continue
        size = target.stat().st_size
        if size != item.get("size"):
            problems.append(
                f"{_shown(name)}: size is {size} bytes, {MANIFEST} says {item.get('size')!r}"
            )
        if (actual := sha256_file(target)) != item.get("sha256"):
            problems.append(
                f"{_shown(name)}: sha256 is {actual}, {MANIFEST} says {item.get('sha256')!r}"
            )
    for name in sorted(p for p in present if p.startswith("data/") and p not in in_manifest):
        problems.append(f"{name}: data file not listed in {MANIFEST}")
    records = manifest.get("records") or {}
    if not isinstance(records, dict):
        problems.append(f"{MANIFEST}: 'records' is not an object")
        records = {}
    for name, expected in sorted(records.items()):
        target = _member(root, name)
        if target is None:
            problems.append(f"{_shown(name)}: listed in {MANIFEST} records: {outside}")
        elif name in present and target.is_file():
            actual = _count_lines(target)
            if actual != expected:
                problems.append(f"{_shown(name)}: {actual} records, {MANIFEST} says {expected!r}")
    counts = manifest.get("counts") or {}
    if not isinstance(counts, dict):
        counts = {}
    for name, expected in sorted(records.items()):
        split = Path(name).stem
        if split in counts and counts[split] != expected:
            problems.append(
                f"{MANIFEST}: counts.{split} is {counts[split]}, records says {expected}"
            )
    return problems


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
