"""Releases: immutable, versioned, checksummed snapshots of the reviewed dataset.

A release is a directory ``<output>/<version>/`` (the admin action uses ``RELEASES_ROOT``)::

    data/reviewed.jsonl      reviewed records (``audit.publish.export``), sorted by session, task,
    data/unreviewed.jsonl    step, fingerprint; the second only when asked for
    summary.json             ``audit.publish.export.build_summary`` of the whole selection
    manifest.json            version, created, counts, filters, per-file sha256 and size
    README.md                dataset card with a Hugging Face YAML header (``audit.publish.card``)
    croissant.json           Croissant 1.0 metadata (``audit.publish.card``)
    SHA256SUMS               ``sha256sum -c`` format, every other file

``audit.publish.verify`` checks a release against its manifest and SHA256SUMS.

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
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from audit.models import Release, TranscriptQuerySet
from audit.publish import export as exporters
from audit.publish.card import croissant, dataset_card

if TYPE_CHECKING:
    from django.contrib.auth.models import User

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
DEFAULT_LICENSE = "cc-by-4.0"
# A Hugging Face license id ("cc-by-4.0", "apache-2.0", "other"): it goes into YAML unquoted.
LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")
REVIEWED_FILE = "data/reviewed.jsonl"
UNREVIEWED_FILE = "data/unreviewed.jsonl"
CHECKSUMS = "SHA256SUMS"
MANIFEST = "manifest.json"


class ReleaseError(Exception):
    """A release that cannot be published or does not verify; the message says why."""


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
    queryset: TranscriptQuerySet,
    *,
    version: str,
    filters: Mapping[str, Any] | None = None,
    include_unreviewed: bool = False,
    output_dir: str | Path,
    user: User | None = None,
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
                    created_by=user if user is not None and user.pk else None,
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
            # transaction_mode exists on the SQLite wrapper only (the stubs know the base).
            configured = getattr(connection, "transaction_mode")  # noqa: B009
            setattr(connection, "transaction_mode", "DEFERRED")  # noqa: B010
            try:
                stack.enter_context(transaction.atomic(using=using))
            finally:
                setattr(connection, "transaction_mode", configured)  # noqa: B010
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
    queryset: TranscriptQuerySet,
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
            ("reviewed", exporters.write_jsonl(queryset.settled(), root / REVIEWED_FILE))
        ]
        if include_unreviewed:
            unreviewed = exporters.write_jsonl(queryset.unsettled(), root / UNREVIEWED_FILE)
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
    digests = {path: sha256_file(root / path) for path in data_paths}
    (root / "croissant.json").write_text(
        json.dumps(croissant(card, sha256=digests), indent=2) + "\n", encoding="utf-8"
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
        (_entry(root, path) for path in release_files(root) if path != CHECKSUMS),
        key=lambda e: e.path,
    )
    (root / CHECKSUMS).write_text(
        "".join(f"{entry.sha256}  {entry.path}\n" for entry in entries), encoding="ascii"
    )
    return manifest


def release_files(root: Path) -> list[str]:
    """Every file under ``root`` as a sorted path relative to it: what SHA256SUMS must list."""
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
