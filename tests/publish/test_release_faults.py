"""Faults while publishing: a failure or a kill at each step leaves either no trace or a complete,
registered, read-only release, and publishing the same version again then works (D9, D12).

A kill is injected in-process as ``Killed``, a BaseException nothing in the app catches, so no
clean-up code runs, while the database rolls back the open transaction and the directory lock
is released, as when the process dies. An error (a full disk, a lost database) is an ordinary
exception, which the app handles."""

import errno
import os
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError

from audit.models import Release, Transcript
from audit.publish import release as releases
from audit.publish.release import (
    ReleaseError,
    check_new,
    publish_release,
    reconcile_releases,
)
from audit.publish.verify import verify_release

VERSION = "1.0.0"
FILES = (
    "data/reviewed.jsonl",
    "data/unreviewed.jsonl",
    "summary.json",
    "README.md",
    "croissant.json",
    "manifest.json",
    "SHA256SUMS",
)
FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Killed(BaseException):
    """The process dies here."""


def publish(out: Path, version: str = VERSION) -> Release:
    return publish_release(
        Transcript.objects.all(), version=version, include_unreviewed=True, output_dir=out
    )


def entries(out: Path) -> list[str]:
    return sorted(os.listdir(out)) if out.exists() else []


def assert_published(out: Path, version: str = VERSION) -> None:
    """A complete, registered, read-only release, and nothing else in ``out`` from it."""
    root = out / version
    release = Release.objects.get(version=version)
    assert Path(release.path) == root.resolve()
    assert verify_release(root) == []
    for path in [root, *root.rglob("*")]:
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    assert not [name for name in entries(out) if name.endswith(".partial")]


# --- injecting faults ---------------------------------------------------------------------------


class _FailingHandle:
    """A file whose write lands in part, then fails: a disk that fills up, or a kill mid-write."""

    def __init__(self, handle, error: BaseException) -> None:
        self._handle = handle
        self._error = error

    def write(self, data):
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise self._error

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._handle.close()
        return False


def fail_writing(monkeypatch, name: str, error: BaseException) -> None:
    """Writing the release file (or marker) ``name`` fails with ``error``."""
    real_open = Path.open

    def open_(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        inside = self.parent.name if "/" not in name else self.parent.parent.name
        is_it = self.as_posix().endswith("/" + name) and (
            name.startswith(".") or inside.endswith(".partial")
        )
        if is_it and any(flag in mode for flag in "wax"):
            return _FailingHandle(handle, error)
        return handle

    monkeypatch.setattr(Path, "open", open_)


def fail_once(monkeypatch, target, attribute: str, error, *, when=None, work_first=False):
    """``target.attribute`` fails the first time it is called with arguments ``when`` accepts
    (any, by default), having done its work first when ``work_first``; every later call (the
    clean-up, the next publish) works."""
    real = getattr(target, attribute)
    armed = [True]

    def wrapper(*args, **kwargs):
        if armed[0] and (when is None or when(*args)):
            armed[0] = False
            if work_first:
                real(*args, **kwargs)
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(target, attribute, wrapper)


def on_staging(*args) -> bool:
    return any(str(arg).endswith(".partial") or ".partial/" in str(arg) for arg in args)


def inject(step: str, monkeypatch, error: BaseException) -> None:
    killed = isinstance(error, Killed)
    if step.startswith("write "):
        fail_writing(monkeypatch, step.removeprefix("write "), error)
    elif step == "create the staging folder":
        # Killed just after it, a folder is left; an error creates none.
        fail_once(monkeypatch, tempfile, "mkdtemp", error, work_first=killed)
    elif step == "make it read-only":
        fail_once(monkeypatch, os, "chmod", error, when=on_staging)
    elif step == "flush it to disk":
        fail_once(monkeypatch, os, "fsync", error)
    elif step == "create the Release row":
        lost = error if killed else DatabaseError("server closed the connection unexpectedly")
        fail_once(monkeypatch, Release.objects, "create", lost)
    elif step == "rename into place":
        fail_once(monkeypatch, os, "rename", error, when=on_staging)
    elif step == "commit (after the rename)":
        # D9's window: the folder is in place, its row not committed.
        fail_once(monkeypatch, os, "rename", error, when=on_staging, work_first=True)
    else:
        raise AssertionError(step)


STEPS = [
    "create the staging folder",
    *(f"write {name}" for name in FILES),
    "make it read-only",
    "flush it to disk",
    f"write .{VERSION}.pending",
    "create the Release row",
    "rename into place",
    "commit (after the rename)",
]


# --- a step fails: no trace ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("step", STEPS)
def test_a_failed_step_leaves_no_trace_and_the_version_stays_free(
    reviewed_data, tmp_path, monkeypatch, step
):
    out = tmp_path / "releases"
    with monkeypatch.context() as patch:
        inject(step, patch, FULL)
        with pytest.raises((ReleaseError, DatabaseError)):
            publish(out)
    assert entries(out) == []
    assert not Release.objects.exists()
    publish(out)
    assert_published(out)
    assert entries(out) == [VERSION]


@pytest.mark.django_db
@pytest.mark.parametrize("name", FILES)
def test_a_full_disk_is_reported_naming_the_file_and_the_cause(
    reviewed_data, tmp_path, monkeypatch, name
):
    out = tmp_path / "releases"
    fail_writing(monkeypatch, name, FULL)
    with pytest.raises(ReleaseError) as refused:
        publish(out)
    assert str(refused.value) == (
        f"could not write {name} of release {VERSION} in {out}: No space left on device"
    )


@pytest.mark.django_db
def test_an_unwritable_releases_directory_is_reported_with_the_cause(
    reviewed_data, tmp_path, monkeypatch
):
    out = tmp_path / "releases"
    out.mkdir()
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out))
    fail_once(monkeypatch, tempfile, "mkdtemp", denied)
    with pytest.raises(ReleaseError) as refused:
        publish(out)
    assert str(refused.value) == f"could not create a staging folder in {out}: Permission denied"


@pytest.mark.django_db
def test_the_command_reports_a_write_error_without_a_traceback(
    reviewed_data, tmp_path, monkeypatch
):
    out = tmp_path / "releases"
    fail_writing(monkeypatch, "data/reviewed.jsonl", FULL)
    with pytest.raises(CommandError) as refused:
        call_command("publish_release", "--version", VERSION, "--output", str(out))
    assert str(refused.value) == (
        f"could not write data/reviewed.jsonl of release {VERSION} in {out}: "
        "No space left on device"
    )
    assert entries(out) == []


# --- the process is killed at a step: debris that the next publish clears ------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_before_the_commit_never_burns_the_version(
    reviewed_data, tmp_path, monkeypatch, step
):
    out = tmp_path / "releases"
    with monkeypatch.context() as patch:
        inject(step, patch, Killed())
        with pytest.raises(Killed):
            publish(out)
    assert not Release.objects.exists()
    # Only hidden debris, or (killed between the rename and the commit) the folder beside its
    # marker; neither makes the version taken.
    left = entries(out)
    assert all(name.startswith(".") for name in left if name != VERSION)
    if VERSION in left:
        assert f".{VERSION}.pending" in left
    assert check_new(VERSION, out) == out / VERSION
    publish(out)
    assert_published(out)
    assert entries(out) == [VERSION]


@pytest.mark.django_db
def test_a_kill_between_the_rename_and_the_commit_leaves_a_folder_the_next_publish_removes(
    reviewed_data, tmp_path, monkeypatch
):
    """The window of D9: the release folder is complete and in place, its row never committed."""
    out = tmp_path / "releases"
    with monkeypatch.context() as patch:
        inject("commit (after the rename)", patch, Killed())
        with pytest.raises(Killed):
            publish(out)
    assert entries(out) == [f".{VERSION}.pending", VERSION]
    assert not Release.objects.exists()
    # Never writable, even unregistered.
    assert not (out / VERSION / "manifest.json").stat().st_mode & stat.S_IWUSR
    found = reconcile_releases(out)
    assert found.uncommitted == (VERSION,)
    assert entries(out) == []


@pytest.mark.django_db
@pytest.mark.parametrize("error", [Killed(), FULL], ids=["kill", "error"])
def test_a_fault_after_the_commit_leaves_the_release_published(
    reviewed_data, tmp_path, monkeypatch, error
):
    out = tmp_path / "releases"
    with monkeypatch.context() as patch:
        marker = out / f".{VERSION}.pending"
        fail_once(patch, Path, "unlink", error, when=lambda path, *_: path == marker)
        if isinstance(error, Killed):
            with pytest.raises(Killed):
                publish(out)
        else:
            publish(out)  # published; the marker is only logged as left behind
    assert_published(out)
    assert entries(out) == [f".{VERSION}.pending", VERSION]
    with pytest.raises(ReleaseError, match="already exists"):
        publish(out)
    assert entries(out) == [VERSION]  # that publish reconciled first
    publish(out, "1.0.1")
    assert_published(out, "1.0.1")


@pytest.mark.django_db
def test_staging_left_by_a_killed_process_is_removed_by_the_next_publish(reviewed_data, tmp_path):
    """D9 (b): a SIGKILL mid-write left a hidden partial folder, read-only in part."""
    out = tmp_path / "releases"
    debris = out / f".{VERSION}.g93vy_ks.partial"
    (debris / "data").mkdir(parents=True)
    (debris / "data/reviewed.jsonl").write_text('{"half": ')
    (debris / "data").chmod(0o555)
    older = out / ".0.9.0.a1b2c3d4.partial"
    older.mkdir()
    publish(out)
    assert_published(out)
    assert entries(out) == [VERSION]


@pytest.mark.django_db
def test_a_folder_no_crash_left_still_takes_its_version(reviewed_data, tmp_path):
    """Copied in, or another database's: not ours to remove, so the version is refused."""
    out = tmp_path / "releases"
    (out / VERSION).mkdir(parents=True)
    with pytest.raises(ReleaseError, match="already exists"):
        publish(out)
    assert reconcile_releases(out).orphans == (VERSION,)
    assert entries(out) == [VERSION]


@pytest.mark.django_db
def test_cleanup_reconciles_and_registers_an_orphan_that_verifies(
    reviewed_data, tmp_path, monkeypatch, capsys
):
    """An orphan as the crash of the app before markers left it: complete, writable, no row."""
    out = tmp_path / "releases"
    publish(out)
    Release.objects.all().delete()
    for path in [out / VERSION, *(out / VERSION).rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (out / ".2.0.0.zz.partial").mkdir()
    call_command("cleanup", "--releases", str(out), "--dry-run")
    printed = capsys.readouterr().out
    assert "2.0.0.zz.partial: staging of an interrupted publish; would be removed" in printed
    assert "--register-orphans registers it" in printed
    assert entries(out) == [".2.0.0.zz.partial", VERSION]

    call_command("cleanup", "--releases", str(out), "--register-orphans")
    assert f"release {VERSION}: registered (it verifies)" in capsys.readouterr().out
    assert_published(out)
    assert entries(out) == [VERSION]


@pytest.mark.django_db
def test_cleanup_does_not_register_an_orphan_that_does_not_verify(reviewed_data, tmp_path, capsys):
    out = tmp_path / "releases"
    publish(out)
    Release.objects.all().delete()
    data = out / VERSION / "data/reviewed.jsonl"
    data.chmod(0o644)
    data.write_text("tampered\n")
    call_command("cleanup", "--releases", str(out), "--register-orphans")
    assert f"release {VERSION}: not registered:" in capsys.readouterr().err
    assert not Release.objects.exists()
    assert entries(out) == [VERSION]


@pytest.mark.django_db(transaction=True)
def test_a_publish_never_removes_the_staging_of_one_that_is_running(
    reviewed_data, tmp_path, monkeypatch
):
    """Publishes in one directory take turns, so reconciling only ever meets a dead one's debris."""
    from django.db import connection

    from audit.publish import export as exporters

    out = tmp_path / "releases"
    write_jsonl = exporters.write_jsonl
    writing = threading.Event()

    def slow_write(queryset, path, **kwargs):
        writing.set()
        time.sleep(0.3)
        return write_jsonl(queryset, path, **kwargs)

    monkeypatch.setattr(exporters, "write_jsonl", slow_write)
    errors = []

    def first():
        try:
            publish(out, "1.0.0")
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert writing.wait(5)
    publish(out, "1.0.1")
    thread.join()
    assert errors == []
    assert_published(out, "1.0.0")
    assert_published(out, "1.0.1")
    assert entries(out) == ["1.0.0", "1.0.1"]


@pytest.mark.django_db
def test_reconcile_of_a_missing_directory_finds_nothing(tmp_path):
    assert reconcile_releases(tmp_path / "nowhere") == releases.Reconciled()
