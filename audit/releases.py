"""Releases: immutable, versioned, checksummed snapshots of the reviewed dataset, and their check.

A release is a directory ``<output>/<version>/`` (the admin action uses ``RELEASES_ROOT``)::

    data/reviewed.jsonl      reviewed records (``audit.exporters``), sorted by session, task,
    data/unreviewed.jsonl    step, fingerprint; the second only when asked for
    summary.json             ``audit.exporters.build_summary`` of the whole selection
    manifest.json            version, created, counts, filters, per-file sha256 and size
    README.md                dataset card with a Hugging Face YAML header
    croissant.json           Croissant 1.0 metadata
    SHA256SUMS               ``sha256sum -c`` format, every other file

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit import exporters
from audit.models import Flag, Release, Status, Transcript

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
DEFAULT_LICENSE = "cc-by-4.0"
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
    data_files: list[tuple[str, exporters.WrittenFile]] = [
        ("reviewed", exporters.write_jsonl(queryset.reviewed(), root / REVIEWED_FILE))
    ]
    if include_unreviewed:
        data_files.append(
            ("unreviewed", exporters.write_jsonl(queryset.unreviewed(), root / UNREVIEWED_FILE))
        )
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


def dataset_card(card: dict[str, Any]) -> str:
    """README.md: Hugging Face YAML front matter, then what the data is and how it was made."""
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
    filter_text = (
        ", ".join(f"`{key}={value}`" for key, value in sorted(filters.items()))
        if filters
        else "none (every imported record)"
    )

    def metric(block: dict[str, Any], key: str) -> str:
        return str(block.get(key, "n/a"))

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
        *[f"- `{path}`: {counts.get(Path(path).stem, 0)} records" for path in card["data_files"]],
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
        f"- Selection: {counts.get('selection', 0)} records (filters: {filter_text})",
        f"- In this release: {counts['records']} records",
        *[f"- Status {name}: {n}" for name, n in sorted(status.items())],
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
        f"{error_rate.get('rate', 'n/a')} (95% CI {error_rate.get('ci95', 'n/a')}, "
        f"{error_rate.get('errors', 0)} errors in {error_rate.get('sample', 0)} spot checks).",
        "",
    ]
    return front + "\n" + "\n".join(lines)


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


def verify_release(path: str | Path) -> list[str]:
    """Every problem with the release at ``path``, as readable sentences; [] when it is intact."""
    root = Path(path)
    if not root.is_dir():
        return [f"{root}: not a directory"]
    problems: list[str] = []
    checksums = root / CHECKSUMS
    listed: dict[str, str] = {}
    if not checksums.is_file():
        problems.append(f"{CHECKSUMS}: missing")
    else:
        for number, line in enumerate(checksums.read_text(encoding="utf-8").splitlines(), 1):
            digest, sep, name = line.partition("  ")
            if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
                problems.append(f"{CHECKSUMS} line {number}: not '<sha256>  <path>'")
                continue
            listed[name] = digest
    present = set(_tree(root)) - {CHECKSUMS}
    for name, digest in sorted(listed.items()):
        target = root / name
        if not target.is_file() or name not in present:
            problems.append(f"{name}: listed in {CHECKSUMS} but missing")
        elif (actual := sha256_file(target)) != digest:
            problems.append(f"{name}: sha256 is {actual}, {CHECKSUMS} says {digest}")
    if checksums.is_file():
        for name in sorted(present - set(listed)):
            problems.append(f"{name}: not listed in {CHECKSUMS}")

    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{MANIFEST}: missing")
        return problems
    except (ValueError, UnicodeDecodeError) as exc:
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
        target = root / name
        if not name or not target.is_file():
            problems.append(f"{name or '?'}: listed in {MANIFEST} but missing")
            continue
        size = target.stat().st_size
        if size != item.get("size"):
            problems.append(f"{name}: size is {size} bytes, {MANIFEST} says {item.get('size')}")
        if (actual := sha256_file(target)) != item.get("sha256"):
            problems.append(f"{name}: sha256 is {actual}, {MANIFEST} says {item.get('sha256')}")
    for name in sorted(p for p in present if p.startswith("data/") and p not in in_manifest):
        problems.append(f"{name}: data file not listed in {MANIFEST}")
    for name, expected in sorted((manifest.get("records") or {}).items()):
        target = root / name
        if target.is_file():
            actual = _count_lines(target)
            if actual != expected:
                problems.append(f"{name}: {actual} records, {MANIFEST} says {expected}")
    counts = manifest.get("counts") or {}
    for name, expected in sorted((manifest.get("records") or {}).items()):
        split = Path(name).stem
        if split in counts and counts[split] != expected:
            problems.append(
                f"{MANIFEST}: counts.{split} is {counts[split]}, records says {expected}"
            )
    return problems


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
