"""A release's data files read back: in one pass, or in parts by processes of their own
(``audit.publish.release._read_back``), the same profile, digest and size."""

import hashlib
import json
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from django.core.management import call_command

from audit.publish import release as releases
from audit.publish.card import DataProfile, line_parts, profile_lines, profile_part
from audit.publish.verify import verify_release
from tests.publish.test_card import _shape_tree


def ordered(profile: DataProfile) -> list:
    """The profile with every order that the card shows (keys first seen, MALT rows)."""
    return [
        profile.records,
        _shape_tree(profile.shape),
        list(profile.malt.items()),
        profile.without_malt,
        profile.unsettled,
        profile.flagged_unsettled,
    ]


def records() -> list:
    """Records whose keys, kinds and MALT rows vary from line to line, so that the order in
    which a profile first sees them shows."""
    found = []
    for n in range(40):
        record: dict = {"n": n, f"only_{n % 7}": [n, {"deep": n % 3 or None}]}
        if n % 5:
            record["review"] = {
                "manually_reviewed": n % 2 == 0,
                "flags": ["spot_check", "x"][: n % 3],
            }
        if n % 4:
            record["malt"] = {
                "labels": [f"l{n % 3}"],
                "manually_reviewed": n % 2,
                "run_source": None,
            }
        record["when"] = "2026-12-01" if n % 9 else "later"
        found.append(record)
    return found


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(record) for record in records()]
    lines.insert(10, "")  # a blank line, skipped as the record counts skip it
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 40, 500])
def test_line_parts_cover_the_file_from_line_starts(data_file, parts):
    data = data_file.read_bytes()
    ranges = line_parts(data_file, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(end == start for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False))
    assert all(start < end for start, end in ranges)
    assert all(data[start - 1 : start] == b"\n" for start, _ in ranges[1:])
    assert len(ranges) <= min(parts, data.count(b"\n"))


def test_a_file_without_a_final_newline_splits_too(tmp_path):
    path = tmp_path / "short.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": 3}')
    ranges = line_parts(path, 3)
    assert [path.read_bytes()[s:e] for s, e in ranges] == [
        b'{"a": 1}\n',
        b'{"b": 2}\n',
        b'{"c": 3}',
    ]


@pytest.mark.parametrize("parts", [2, 3, 7, 40])
def test_parts_merged_in_order_are_the_profile_of_one_pass(data_file, parts):
    whole = profile_lines(data_file.read_bytes().splitlines())
    merged = DataProfile()
    for start, end in line_parts(data_file, parts):
        merged.merge(profile_part(str(data_file), start, end))
    assert ordered(merged) == ordered(whole)
    assert whole.records == 40


def test_read_back_in_processes_gives_what_one_pass_gives(data_file, monkeypatch):
    monkeypatch.setattr(releases, "_read_processes", lambda: 3)
    monkeypatch.setattr(releases, "PARALLEL_READ_BYTES", 1)
    one_pass = releases._read_back_in_one

    def not_in_one(*args):
        raise AssertionError("read in one pass: the processes failed")

    monkeypatch.setattr(releases, "_read_back_in_one", not_in_one)
    in_parts, entry = releases._read_back(data_file.parent, data_file.name)
    monkeypatch.setattr(releases, "_read_back_in_one", one_pass)
    in_one, one_entry = releases._read_back_in_one(data_file.parent, data_file.name)
    assert ordered(in_parts) == ordered(in_one)
    data = data_file.read_bytes()
    assert entry == one_entry
    assert entry.sha256 == hashlib.sha256(data).hexdigest() and entry.size == len(data)


def test_a_failed_process_pool_falls_back_to_one_pass(data_file, monkeypatch):
    """A pool whose processes cannot start (spawn re-imports the main module, which some
    callers cannot bear) costs the speed, not the release."""
    monkeypatch.setattr(releases, "_read_processes", lambda: 2)
    monkeypatch.setattr(releases, "PARALLEL_READ_BYTES", 1)

    def broken(*args):
        raise BrokenProcessPool("a process died")

    monkeypatch.setattr(releases, "_read_back_in_parts", broken)
    profile, entry = releases._read_back(data_file.parent, data_file.name)
    in_one, one_entry = releases._read_back_in_one(data_file.parent, data_file.name)
    assert ordered(profile) == ordered(in_one) and entry == one_entry


@pytest.mark.django_db
def test_a_release_read_back_in_parts_is_the_release_read_in_one(
    reviewed_data, tmp_path, monkeypatch
):
    """The same release (card, Croissant, manifest and sums but for the version and date)
    whichever way its data files are read back."""

    def publish(version: str, *, parallel: bool) -> Path:
        with monkeypatch.context() as patch:
            if parallel:
                patch.setattr(releases, "_read_processes", lambda: 2)
                patch.setattr(releases, "PARALLEL_READ_BYTES", 1)
            call_command(
                "publish_release",
                f"--version={version}",
                "--include-unreviewed",
                f"--output={tmp_path / 'releases'}",
            )
        return tmp_path / "releases" / version

    one, parts = publish("1.0.0", parallel=False), publish("1.0.1", parallel=True)
    assert verify_release(parts) == []
    for name in ("data/reviewed.jsonl", "data/unreviewed.jsonl", "summary.json"):
        assert (one / name).read_bytes() == (parts / name).read_bytes()
    for name in ("README.md", "croissant.json"):
        text = (parts / name).read_text().replace("1.0.1", "1.0.0")
        created = json.loads((parts / "manifest.json").read_text())["created"]
        original = json.loads((one / "manifest.json").read_text())["created"]
        assert text.replace(created, original) == (one / name).read_text()
