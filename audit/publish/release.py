"""Releases: immutable, versioned, checksummed snapshots of the reviewed dataset.

A release is a directory ``<output>/<version>/`` (the admin action uses ``RELEASES_ROOT``)::

    data/reviewed.jsonl      reviewed records (``audit.publish.export``), sorted by session, task,
    data/unreviewed.jsonl    step, fingerprint; the second only when asked for
    summary.json             ``audit.publish.export.build_summary``: the data files' and the
                             whole selection's figures
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
The admin never lets a Release row be changed or deleted.

Crash atomicity. A crash at any point of ``publish_release`` (a kill, an out-of-memory, a lost
database, a full disk) leaves either no trace or a complete, registered, read-only release, and
never burns a version. A publish, in order:

1. takes an exclusive lock on the output directory for the whole publish (publishes into one
   directory take turns): an ``flock`` on the directory itself, which the kernel releases when
   its holder dies. So whatever a publish finds there that no committed Release row accounts
   for was left by a dead one;
2. reconciles that debris (``reconcile_releases``, below), then refuses a version that is taken;
3. writes every file into a hidden staging folder ``.X.Y.Z.<random>.partial`` beside the target,
   makes it read-only and flushes it to disk (so the release is read-only the moment it appears);
4. writes a marker ``.X.Y.Z.pending``: "release X.Y.Z is being committed";
5. in one transaction creates the Release row and renames the staging folder to ``X.Y.Z`` (one
   filesystem, so the rename is atomic), then commits;
6. removes the marker.

Reconciling, at the start of every publish, after a failed step and in ``manage.py cleanup``,
needs nothing but the lock and the database: a staging folder is removed (its publisher is
dead); a marker whose version has a Release row is removed (the commit happened, only step 6
did not), and a marker without one is removed with its ``X.Y.Z`` folder (the commit never
happened, so neither did the release). When step 5 fails the outcome of the commit may be
unknown (the database went away while committing), so the failed publish reconciles at once,
asking the database, and, when the database cannot answer, leaves the marker for the next one.
A release folder with neither a row nor a marker was not left by a crash of this code (it was
copied in, belongs to another database, or is what a crash of the app before markers left): it
stays, and its version is refused; ``manage.py cleanup --register-orphans`` registers it when
it verifies and its manifest names that version. ``check_new`` (also the admin form's check)
does not count a folder that has a marker as taken: the publish reconciles it first.

A failure to write (disk full, permission) is a ReleaseError naming the file and the cause, as
the command and the admin show it. KeyboardInterrupt and SystemExit are handled like a kill: no
clean-up runs, and the next publish reconciles. Crash atomicity needs ``publish_release``
called outside a transaction (inside one, the caller's commit decides; tests do that), and an
output directory on a filesystem with ``flock`` and an atomic rename (a local one).

``summary.json`` describes the selection the release was cut from (all its records, reviewed or
not), because the estimated error rate of the unreviewed remainder needs that remainder; the
manifest's counts say how many records each data file holds.

Filters (``--filter key=value``, repeatable) use the review queue's vocabulary: ``batch`` (id),
``session``, ``task``, ``worker``, ``status``, ``flag``, ``decision`` (decision type, any case),
``category`` (alignment category as imported), ``mbtype`` (misbehavior type as imported).
A key given twice matches either value; different keys must all match.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from audit.models import Release, RollupQuerySet, TranscriptQuerySet
from audit.publish import export as exporters
from audit.publish import parallel
from audit.publish.card import (
    DataProfile,
    croissant,
    dataset_card,
    line_parts,
    profile_lines,
    profile_part,
)

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
# What a publish leaves in the output directory while it runs (module docstring): its staging
# folder (tempfile.mkdtemp's random part in the middle) and, while it commits, its marker.
STAGING = re.compile(r"^\.(?P<version>\d+\.\d+\.\d+)\.[^/]+\.partial$")
MARKER = re.compile(r"^\.(?P<version>\d+\.\d+\.\d+)\.pending$")

logger = logging.getLogger(__name__)


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
    if not SEMVER.fullmatch(version or ""):
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


def marker_path(output_dir: str | Path, version: str) -> Path:
    """The marker a publish of ``version`` keeps while it commits (module docstring, step 4)."""
    return Path(output_dir) / f".{version}.pending"


def check_new(version: str, output_dir: str | Path) -> Path:
    """Refuse a version that is taken (a Release row, or a directory that no crashed publish
    left); return its directory."""
    validate_version(version)
    target = release_dir(output_dir, version)
    if Release.objects.filter(version=version).exists():
        raise ReleaseError(f"release {version} already exists; releases are immutable")
    if os.path.lexists(target) and not marker_path(output_dir, version).exists():
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
    rollup_counts: RollupQuerySet | None = None,
) -> Release:
    """Write release ``version`` of ``queryset`` (already filtered; ``filters`` is recorded).
    ``rollup_counts``: the same selection's rows of the rollup, when it answers it
    (``rollup.scope``): the summary's counts are then read from it (``export.build_summary``).

    Crash-atomic (module docstring). A refusal or a failure to write is a ReleaseError with a
    readable message, and leaves no trace."""
    filters = dict(filters or {})
    output_dir = Path(output_dir)
    validate_version(version)
    validate_license(license)
    with _disk_errors(f"create the releases directory {output_dir}"):
        output_dir.mkdir(parents=True, exist_ok=True)
    with _publish_lock(output_dir):
        _reconcile(output_dir)
        target = check_new(version, output_dir)
        staged = _stage(
            queryset,
            output_dir=output_dir,
            version=version,
            filters=filters,
            include_unreviewed=include_unreviewed,
            license=license,
            rollup_counts=rollup_counts,
        )
        return _commit(staged, target, filters=filters, user=user)


def _stage(
    queryset: TranscriptQuerySet,
    *,
    output_dir: Path,
    version: str,
    filters: dict[str, Any],
    include_unreviewed: bool,
    license: str,
    rollup_counts: RollupQuerySet | None,
) -> tuple[Path, dict[str, Any]]:
    """Step 3: the complete release in a staging folder, read-only and on disk, with its
    manifest. On a failure the folder is removed (after a kill, the next publish removes it)."""
    with _disk_errors(f"create a staging folder in {output_dir}"):
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".partial", dir=output_dir))
    try:
        manifest = _write_files(
            staging,
            queryset,
            version=version,
            filters=filters,
            include_unreviewed=include_unreviewed,
            license=license,
            rollup_counts=rollup_counts,
        )
        with _disk_errors(f"make release {version} read-only in {output_dir}"):
            _make_read_only(staging)
        with _disk_errors(f"flush release {version} to disk in {output_dir}"):
            _flush(staging)
    except Exception:
        _tidy_up_after_failure(output_dir)
        raise
    return staging, manifest


def _commit(
    staged: tuple[Path, dict[str, Any]],
    target: Path,
    *,
    filters: dict[str, Any],
    user: User | None,
) -> Release:
    """Steps 4 to 6: register the staged release and move it into place, in one transaction."""
    staging, manifest = staged
    output_dir, version = target.parent, target.name
    marker = marker_path(output_dir, version)
    try:
        with _disk_errors(f"write {marker.name} in {output_dir}"):
            marker.write_text(json.dumps({"version": version, "pid": os.getpid()}) + "\n")
            _flush_file(marker)
            _flush_file(output_dir)
        with transaction.atomic():
            release = Release.objects.create(
                version=version,
                created_by=user if user is not None and user.pk else None,
                filters=filters,
                counts=manifest["counts"],
                manifest=manifest,
                path=str(target.resolve()),
            )
            # Under the lock, after check_new: only a hand-made folder can be here now (a
            # rename onto an empty folder would replace it).
            if os.path.lexists(target):
                raise ReleaseError(f"{target} already exists; releases are immutable")
            with _disk_errors(f"move release {version} into place in {output_dir}"):
                os.rename(staging, target)
    except IntegrityError:
        # The version was registered meanwhile, from another output directory.
        _tidy_up_after_failure(output_dir)
        raise ReleaseError(f"release {version} already exists; releases are immutable") from None
    except Exception:
        _tidy_up_after_failure(output_dir)
        raise
    # Committed: the release is published. A marker left behind is harmless (reconciling finds
    # the row and removes it), so a failure here is only logged.
    try:
        _flush_file(output_dir)
        marker.unlink()
    except OSError:
        logger.warning("release %s is published; could not remove %s", version, marker)
    return release


# --- recovering from crashes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciled:
    """What reconciling found in an output directory, and did (or would do, in a dry run)."""

    # Staging folders of publishes that died before committing: removed.
    staging: tuple[str, ...] = ()
    # Versions whose publish died while committing and did not commit: marker and folder removed.
    uncommitted: tuple[str, ...] = ()
    # Versions whose publish committed and died before removing its marker: marker removed.
    committed: tuple[str, ...] = ()
    # Release folders with neither a Release row nor a marker: left alone (module docstring).
    orphans: tuple[str, ...] = ()
    # Orphans registered (``register_orphans``), and the problems of those that were not.
    registered: tuple[str, ...] = ()
    not_registered: tuple[tuple[str, tuple[str, ...]], ...] = ()


def reconcile_releases(
    output_dir: str | Path, *, dry_run: bool = False, register_orphans: bool = False
) -> Reconciled:
    """Clear what interrupted publishes left in ``output_dir`` (module docstring), waiting for a
    publish that runs there to finish; with ``register_orphans``, register every orphan that
    verifies. A failure to remove or register is a ReleaseError naming the path."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return Reconciled()
    with _publish_lock(output_dir):
        return _reconcile(output_dir, dry_run=dry_run, register_orphans=register_orphans)


def _reconcile(
    output_dir: Path, *, dry_run: bool = False, register_orphans: bool = False
) -> Reconciled:
    """``reconcile_releases`` for a caller that holds the lock."""
    staging: list[Path] = []
    markers: list[str] = []
    folders: list[str] = []
    with _disk_errors(f"list {output_dir}"):
        entries = sorted(output_dir.iterdir())
    for entry in entries:
        if STAGING.match(entry.name) and entry.is_dir() and not entry.is_symlink():
            staging.append(entry)
        elif match := MARKER.match(entry.name):
            markers.append(match["version"])
        elif SEMVER.fullmatch(entry.name) and entry.is_dir():
            folders.append(entry.name)
    # First what needs no database, so a failure to reach it still frees the disk.
    if not dry_run:
        for path in staging:
            with _disk_errors(f"remove {path}, left by an interrupted publish"):
                _remove(path)
    registered = set(
        Release.objects.filter(version__in=[*markers, *folders]).values_list("version", flat=True)
    )
    uncommitted = [version for version in markers if version not in registered]
    if not dry_run:
        for version in uncommitted:
            folder = release_dir(output_dir, version)
            with _disk_errors(f"remove {folder}, left by a publish that did not commit"):
                _remove(folder)
        for version in markers:
            marker = marker_path(output_dir, version)
            with _disk_errors(f"remove {marker}, left by an interrupted publish"):
                marker.unlink(missing_ok=True)
        if staging or markers:
            with _disk_errors(f"flush {output_dir} to disk"):
                _flush_file(output_dir)
    orphans = [v for v in folders if v not in registered and v not in markers]
    done: list[str] = []
    refused: list[tuple[str, tuple[str, ...]]] = []
    if register_orphans and not dry_run:
        for version in orphans:
            problems = _register_orphan(release_dir(output_dir, version))
            if problems:
                refused.append((version, tuple(problems)))
            else:
                done.append(version)
    return Reconciled(
        staging=tuple(path.name for path in staging),
        uncommitted=tuple(uncommitted),
        committed=tuple(version for version in markers if version in registered),
        orphans=tuple(orphans),
        registered=tuple(done),
        not_registered=tuple(refused),
    )


def _register_orphan(root: Path) -> list[str]:
    """Register the release folder ``root``, which has no Release row, when it verifies and its
    manifest names its version; else the reasons it was not."""
    from audit.publish.verify import verify_release  # verify reads this module's constants

    problems = verify_release(root)
    if problems:
        return problems
    # verify_release read it: it is UTF-8 JSON with a files list.
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("version") != root.name:
        return [f"{MANIFEST}: version is {manifest.get('version')!r}, the folder is {root.name}"]
    # Read-only before it is registered: a registered release is never writable.
    with _disk_errors(f"make {root} read-only"):
        _make_read_only(root)
    try:
        with transaction.atomic():
            Release.objects.create(
                version=root.name,
                filters=manifest.get("filters") or {},
                counts=manifest.get("counts") or {},
                manifest=manifest,
                path=str(root.resolve()),
            )
    except IntegrityError:
        return [f"release {root.name} is registered already, published elsewhere"]
    return []


def _tidy_up_after_failure(output_dir: Path) -> None:
    """After a failed step, leave no trace now if the database can say what was committed; if
    it cannot, the next publish or ``manage.py cleanup`` does. The step's own error is the one
    to report, so this one's is only logged."""
    try:
        _reconcile(output_dir)
    except (DatabaseError, ReleaseError):
        logger.exception("could not clear what the failed publish left in %s", output_dir)


@contextmanager
def _publish_lock(output_dir: Path) -> Iterator[None]:
    """Hold the exclusive lock every publish and reconcile of ``output_dir`` takes, waiting for
    it: an ``flock`` on the directory itself (no lock file to leave behind), which the kernel
    releases when the holder dies. Separate opens exclude each other, threads included."""
    with _disk_errors(f"lock the releases directory {output_dir}"):
        fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with _disk_errors(f"lock the releases directory {output_dir}"):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _disk_errors(what: str) -> Iterator[None]:
    """Report an OSError (disk full, permission denied), or an export helper process that
    died, as a ReleaseError saying what could not be done and why, instead of a traceback."""
    try:
        yield
    except OSError as exc:
        raise ReleaseError(f"could not {what}: {exc.strerror or exc}") from exc
    except parallel.HelperError as exc:
        raise ReleaseError(f"could not {what}: {exc}") from exc


def _write_files(
    root: Path,
    queryset: TranscriptQuerySet,
    *,
    version: str,
    filters: dict[str, Any],
    include_unreviewed: bool,
    license: str,
    rollup_counts: RollupQuerySet | None,
) -> dict[str, Any]:
    def on(verb: str, name: str) -> AbstractContextManager[None]:
        # Names the file a disk error hit: an error while writing carries no file name itself.
        return _disk_errors(f"{verb} {name} of release {version} in {root.parent}")

    with on("create", "data/"):
        (root / "data").mkdir()
    # One snapshot for every file read from the database: an item settled half-way would
    # otherwise land in neither data file, and the summary would disagree with both. Its helper
    # processes write parts of the large files (audit.publish.parallel).
    with exporters.snapshot(queryset.db, processes=exporters.processes_for(queryset)):
        with on("write", REVIEWED_FILE):
            reviewed = exporters.write_jsonl(queryset.settled(), root / REVIEWED_FILE)
        data_files: list[tuple[str, exporters.WrittenFile]] = [("reviewed", reviewed)]
        if include_unreviewed:
            with on("write", UNREVIEWED_FILE):
                unreviewed = exporters.write_jsonl(queryset.unsettled(), root / UNREVIEWED_FILE)
            data_files.append(("unreviewed", unreviewed))
        written = {REVIEWED_FILE: queryset.settled()}
        if include_unreviewed:
            written[UNREVIEWED_FILE] = queryset.unsettled()
        file_counts = None
        if rollup_counts is not None:
            file_counts = {
                REVIEWED_FILE: rollup_counts.settled(),
                UNREVIEWED_FILE: rollup_counts.unsettled(),
            }
            file_counts = {name: file_counts[name] for name in written}
        summary = exporters.build_summary(
            queryset, files=written, counts=rollup_counts, file_counts=file_counts
        )
    with on("write", "summary.json"):
        (root / "summary.json").write_text(exporters.dump_summary(summary), encoding="utf-8")

    counts: dict[str, int] = {name: written.records for name, written in data_files}
    counts["records"] = sum(written.records for _, written in data_files)
    counts["selection"] = summary["as_imported"].get("total_decisions", 0)
    data_paths = [f"data/{name}.jsonl" for name, _ in data_files]
    created = timezone.now().isoformat()
    profiles: dict[str, DataProfile] = {}
    # Each file's digest and size, read once: a data file's while its profile reads it back.
    known: dict[str, FileEntry] = {}
    for path in data_paths:
        with on("read back", path):
            profiles[path], known[path] = _read_back(root, path)
    digests = {path: known[path].sha256 for path in data_paths}
    sizes = {path: known[path].size for path in data_paths}
    card = {
        "version": version,
        "created": created,
        "counts": counts,
        "filters": filters,
        "summary": summary,
        "data_files": data_paths,
        "license": license,
        # Read back from the files as written: the card's features, the Croissant fields and
        # the MALT count table describe exactly what the data files hold.
        "profiles": profiles,
    }
    with on("write", "README.md"):
        (root / "README.md").write_text(dataset_card(card), encoding="utf-8")
    with on("write", "croissant.json"):
        (root / "croissant.json").write_text(
            json.dumps(croissant(card, sha256=digests, sizes=sizes), indent=2) + "\n",
            encoding="utf-8",
        )
    with on("read back", "the files"):
        files = [
            _entry(root, path, known).as_dict()
            for path in (*data_paths, "summary.json", "README.md", "croissant.json")
        ]
    manifest = {
        "version": version,
        "created": created,
        "counts": counts,
        "filters": filters,
        "include_unreviewed": include_unreviewed,
        "records": {
            path: written.records for path, (_, written) in zip(data_paths, data_files, strict=True)
        },
        "files": files,
    }
    with on("write", MANIFEST):
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    with on("read back", "the files"):
        entries = sorted(
            (_entry(root, path, known) for path in release_files(root) if path != CHECKSUMS),
            key=lambda e: e.path,
        )
    with on("write", CHECKSUMS):
        (root / CHECKSUMS).write_text(
            "".join(f"{entry.sha256}  {entry.path}\n" for entry in entries), encoding="ascii"
        )
    return manifest


# A data file at least this large is profiled by several processes, a range of its lines each,
# while this one hashes it: the profile parses every record and walks its values (some 60 µs a
# record), the better part of a release of a million records (issue 14). Smaller files, or a
# machine of one core, are read in one pass here.
PARALLEL_READ_BYTES = 64 * 1024 * 1024
MAX_READ_PROCESSES = 4


def _read_processes() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_READ_PROCESSES, cores))


def _read_back(root: Path, relative: str) -> tuple[DataProfile, FileEntry]:
    """A data file's profile with its digest and size, read back from the file as written."""
    path = root / relative
    processes = _read_processes()
    if processes > 1 and path.stat().st_size >= PARALLEL_READ_BYTES:
        try:
            return _read_back_in_parts(path, relative, processes)
        except BrokenProcessPool:
            logger.warning("profiling %s in parts failed; reading it in one pass", path)
    return _read_back_in_one(root, relative)


def _read_back_in_parts(path: Path, relative: str, processes: int) -> tuple[DataProfile, FileEntry]:
    """The profile from ``processes`` processes, a range of lines each (``line_parts``),
    merged in file order, which gives the profile of one pass; the digest and size are this
    process's, read meanwhile. Processes are spawned, not forked: they need only the card module,
    nothing of this process (its database connections included)."""
    parts = line_parts(path, processes)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(parts), mp_context=context) as pool:
        futures = [pool.submit(profile_part, str(path), start, end) for start, end in parts]
        entry = FileEntry(path=relative, sha256=sha256_file(path), size=path.stat().st_size)
        profile = DataProfile()
        for future in futures:
            profile.merge(future.result())
    return profile, entry


def _read_back_in_one(root: Path, relative: str) -> tuple[DataProfile, FileEntry]:
    """A data file's profile with its digest and size, from one read of the file."""
    digest = hashlib.sha256()
    size = 0

    def lines(handle: IO[bytes]) -> Iterator[bytes]:
        nonlocal size
        for line in handle:
            digest.update(line)
            size += len(line)
            yield line

    with (root / relative).open("rb") as handle:
        profile = profile_lines(lines(handle))
    return profile, FileEntry(path=relative, sha256=digest.hexdigest(), size=size)


def release_files(root: Path) -> list[str]:
    """Every file under ``root`` as a sorted path relative to it: what SHA256SUMS must list."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(root: Path, relative: str, known: dict[str, FileEntry]) -> FileEntry:
    """The file's entry, read once per publication: ``known`` keeps each file read."""
    entry = known.get(relative)
    if entry is None:
        path = root / relative
        entry = known[relative] = FileEntry(
            path=relative, sha256=sha256_file(path), size=path.stat().st_size
        )
    return entry


def _make_read_only(root: Path) -> None:
    read_only = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    searchable = read_only | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    for path in sorted(root.rglob("*"), reverse=True):
        os.chmod(path, searchable if path.is_dir() else read_only)
    os.chmod(root, searchable)


def _flush(root: Path) -> None:
    """fsync every file and folder of ``root``: a registered release outlives a power cut too."""
    for path in sorted(root.rglob("*"), reverse=True):
        _flush_file(path)
    _flush_file(root)


def _flush_file(path: Path) -> None:
    """fsync one file or folder (a folder's entries: the renames and removals in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a release or staging folder, read-only as publishing leaves them, if it is there."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.is_dir():
        return
    # Top down, so each folder is writable before its entries go (and readable, to list them).
    for folder, _, _ in os.walk(path):
        os.chmod(folder, stat.S_IRWXU)
    shutil.rmtree(path)
