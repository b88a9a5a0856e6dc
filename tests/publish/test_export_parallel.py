"""An export written by several processes (audit.publish.parallel): the same bytes as one
process writes, read in the exporting transaction's snapshot, and failures that surface."""

import gzip
import json
import pickle
import threading
from pathlib import Path

import pytest
from django.db import connection

from audit.models import Status, Transcript, Verdict
from audit.publish import export as exporters
from audit.publish import parallel
from audit.publish.release import publish_release
from audit.team import discussion
from tests.factories import import_records, make_record, review

# Every test here but the first needs rows other processes can read: committed ones, in a
# database they can open (the test databases are files or servers, never in memory).
pytestmark = pytest.mark.django_db(transaction=True)


def _records(tmp_path, count=24):
    """``count`` records over several sessions and tasks, in no particular order."""
    return import_records(
        [
            make_record(
                session_id=f"s{(n * 7) % 5}",
                task_id=("basic_oversight", "adversarial_worker")[n % 2],
                step_number=n,
            )
            for n in range(count)
        ],
        tmp_path,
    )


def _in_order(queryset=None):
    return list(exporters.ordered(queryset or Transcript.objects.all()))


@pytest.mark.django_db(transaction=False)
def test_inside_a_transaction_it_did_not_open_an_export_starts_no_helper(tmp_path, monkeypatch):
    """A test's transaction holds rows no other process sees: the export writes them alone."""
    _records(tmp_path, 6)

    def no_helper(*args, **kwargs):
        raise AssertionError("a helper process was started")

    monkeypatch.setattr(parallel.Helper, "__init__", no_helper)
    written = exporters.write_jsonl(Transcript.objects.all(), tmp_path / "out.jsonl", processes=3)
    assert written.records == 6


def test_several_processes_write_the_bytes_one_process_writes(tmp_path, auditor, settings):
    # A setting the export reads, overridden here: the helpers take this process's value.
    settings.AUDIT_PSEUDONYM_KEY = "a-key-only-this-test-knows"
    transcripts = _records(tmp_path)
    ordered = _in_order()
    # Reviews and comments in every third of the export order, each range's own.
    for t in (ordered[1], ordered[12], ordered[-1]):
        review(t, auditor, Verdict.CONFIRM)
        discussion.add_comment(t, author=auditor, text="checked </script> the target")
    assert len(transcripts) == 24
    out = tmp_path / "out"
    out.mkdir()
    one = exporters.write_jsonl(Transcript.objects.all(), out / "one.jsonl", processes=1)
    three = exporters.write_jsonl(
        Transcript.objects.all(), out / "three.jsonl", processes=3, chunk_size=3
    )
    assert (out / "three.jsonl").read_bytes() == (out / "one.jsonl").read_bytes()
    assert (three.records, three.size, three.sha256) == (one.records, one.size, one.sha256)
    lines = [json.loads(line) for line in (out / "three.jsonl").read_text().splitlines()]
    assert [
        line["review"]["reviews"][0]["auditor"] for line in lines if line["review"]["reviews"]
    ] == [exporters.pseudonym(auditor.pk)] * 3
    # Compressed alike, and the digest is of the JSONL bytes.
    gz = exporters.write_jsonl(
        Transcript.objects.all(), out / "three.jsonl.gz", processes=3, compress=True
    )
    assert (
        gzip.decompress((out / "three.jsonl.gz").read_bytes()) == (out / "one.jsonl").read_bytes()
    )
    assert gz.sha256 == one.sha256
    # A filtered selection splits by its own rows.
    settled = exporters.write_jsonl(
        Transcript.objects.all().settled(), out / "settled.jsonl", processes=2
    )
    assert settled.records == 3
    assert [json.loads(line)["review"]["status"] for line in (out / "settled.jsonl").open()] == [
        Status.CONFIRMED
    ] * 3
    # The parts are gone.
    assert sorted(p.name for p in out.iterdir()) == [
        "one.jsonl",
        "settled.jsonl",
        "three.jsonl",
        "three.jsonl.gz",
    ]


def test_the_ranges_cover_the_selection_once_in_order(tmp_path):
    _records(tmp_path, 10)
    with exporters.snapshot(connection.alias, processes=4) as current:
        assert len(current.helpers) == 3
        ranges = exporters._ranges(Transcript.objects.all(), current, 4)
    assert [len(part) for part in ranges] == [2, 3, 2, 3]
    assert sum((_in_order(part) for part in ranges), []) == _in_order()


def test_a_bound_inside_one_step_splits_it_by_fingerprint(tmp_path):
    """Records may share session, task and step (only the fingerprint is unique): a range
    bound among them still puts each in exactly one range, in order."""
    import_records(
        [make_record(timestamp=1795504945.0 + n) for n in range(9)]
        + [make_record(step_number=0), make_record(step_number=2)],
        tmp_path,
    )
    with exporters.snapshot(connection.alias, processes=3) as current:
        ranges = exporters._ranges(Transcript.objects.all(), current, 3)
    assert [len(part) for part in ranges] == [3, 4, 4]
    # Both bounds fall among the nine of step 1.
    assert all(part[0].step_number == 1 for part in ranges[1:])
    assert sum((_in_order(part) for part in ranges), []) == _in_order()
    one = exporters.write_jsonl(Transcript.objects.all(), tmp_path / "one.jsonl", processes=1)
    three = exporters.write_jsonl(Transcript.objects.all(), tmp_path / "three.jsonl", processes=3)
    assert (tmp_path / "three.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert three.sha256 == one.sha256


def test_helpers_read_the_snapshot_of_the_exporting_transaction(tmp_path, auditor):
    """An item settled after the snapshot began, by another connection, is exported as it was
    at its start, by the helper whose range holds it as by this process."""
    _records(tmp_path, 8)
    first, last = _in_order()[0], _in_order()[-1]

    def settle(transcript):  # another auditor, on a connection of their own
        try:
            review(Transcript.objects.get(pk=transcript.pk), auditor, Verdict.CONFIRM)
        finally:
            connection.close()

    with exporters.snapshot(connection.alias, processes=2) as current:
        assert len(current.helpers) == 1
        exporters.write_jsonl(Transcript.objects.all(), tmp_path / "before.jsonl", processes=1)
        for transcript in (first, last):
            thread = threading.Thread(target=settle, args=(transcript,))
            thread.start()
            thread.join()
        written = exporters.write_jsonl(
            Transcript.objects.all(), tmp_path / "during.jsonl", processes=2
        )
    assert Transcript.objects.get(pk=last.pk).status == Status.CONFIRMED  # it went in
    assert written.records == 8
    statuses = [json.loads(line)["review"]["status"] for line in (tmp_path / "during.jsonl").open()]
    assert statuses == [Status.UNREVIEWED] * 8
    assert (tmp_path / "during.jsonl").read_bytes() == (tmp_path / "before.jsonl").read_bytes()
    # Afterwards, a new snapshot sees both.
    after = exporters.write_jsonl(Transcript.objects.all(), tmp_path / "after.jsonl", processes=2)
    assert after.records == 8
    statuses = [json.loads(line)["review"]["status"] for line in (tmp_path / "after.jsonl").open()]
    assert (statuses[0], statuses[-1]) == (Status.CONFIRMED, Status.CONFIRMED)


def test_a_helper_that_dies_fails_the_export_and_leaves_no_part(tmp_path, monkeypatch):
    _records(tmp_path, 6)
    out = tmp_path / "out"
    out.mkdir()
    export = parallel.Helper.export

    def export_then_die(self, *args):
        export(self, *args)
        self.process.kill()

    monkeypatch.setattr(parallel.Helper, "export", export_then_die)
    with pytest.raises(parallel.HelperError, match=r"stopped answering: it exited with status -9"):
        exporters.write_jsonl(Transcript.objects.all(), out / "out.jsonl", processes=2)
    assert [p.name for p in out.iterdir()] == ["out.jsonl"]  # the caller's to remove, as before
    assert not connection.in_atomic_block
    monkeypatch.undo()
    assert exporters.write_jsonl(Transcript.objects.all(), out / "out.jsonl").records == 6


def test_a_helper_error_is_raised_with_its_traceback(tmp_path):
    _records(tmp_path, 2)
    with exporters.snapshot(connection.alias, processes=2) as current:
        [helper] = current.helpers
        helper.send("export", b"not a pickle", str(tmp_path / "part"), 10)
        with pytest.raises(pickle.UnpicklingError) as raised:
            helper.written()
    assert any("in an export helper process" in note for note in raised.value.__notes__)
    assert any("Traceback" in note for note in raised.value.__notes__)
    assert helper.process.poll() is not None  # it exited; the snapshot ended in order
    assert not connection.in_atomic_block


def test_export_processes_grow_with_the_records(settings):
    settings.AUDIT_EXPORT_PROCESSES = 3
    per = parallel.MIN_RECORDS_PER_PROCESS
    assert [parallel.export_processes(n) for n in (0, per - 1, 2 * per, 10 * per)] == [1, 1, 2, 3]
    settings.AUDIT_EXPORT_PROCESSES = 1
    assert parallel.export_processes(10 * per) == 1


def test_a_release_written_by_several_processes_has_the_same_files(
    tmp_path, auditor, settings, monkeypatch
):
    transcripts = _records(tmp_path, 12)
    for t in transcripts[::3]:
        review(t, auditor, Verdict.CONFIRM)
    releases = tmp_path / "releases"

    def publish(version):
        release = publish_release(
            Transcript.objects.all(),
            version=version,
            include_unreviewed=True,
            output_dir=releases,
        )
        return Path(release.path)

    settings.AUDIT_EXPORT_PROCESSES = 1
    alone = publish("1.0.0")
    settings.AUDIT_EXPORT_PROCESSES = 3
    monkeypatch.setattr(parallel, "MIN_RECORDS_PER_PROCESS", 2)
    started = []
    init = parallel.Helper.__init__

    def counted(self, *args):
        init(self, *args)
        started.append(self)

    monkeypatch.setattr(parallel.Helper, "__init__", counted)
    shared = publish("1.0.1")
    assert len(started) == 2
    for name in ("data/reviewed.jsonl", "data/unreviewed.jsonl", "summary.json"):
        assert (shared / name).read_bytes() == (alone / name).read_bytes(), name
    # The manifests list the same data files (the card and the like name their version).
    data = [
        [
            entry
            for entry in json.loads((root / "manifest.json").read_text())["files"]
            if entry["path"].startswith("data/")
        ]
        for root in (alone, shared)
    ]
    assert len(data[0]) == 2
    assert data[0] == data[1]
    assert all(helper.process.poll() == 0 for helper in started)


def test_a_release_whose_helper_dies_fails_naming_the_file_and_leaves_no_trace(
    tmp_path, auditor, settings, monkeypatch
):
    from audit.models import Release
    from audit.publish.release import ReleaseError

    transcripts = _records(tmp_path, 8)
    for t in transcripts[:4]:
        review(t, auditor, Verdict.CONFIRM)
    settings.AUDIT_EXPORT_PROCESSES = 2
    monkeypatch.setattr(parallel, "MIN_RECORDS_PER_PROCESS", 1)
    export = parallel.Helper.export

    def export_then_die(self, *args):
        export(self, *args)
        self.process.kill()

    monkeypatch.setattr(parallel.Helper, "export", export_then_die)
    releases = tmp_path / "releases"
    with pytest.raises(
        ReleaseError,
        match=r"^could not write data/reviewed\.jsonl of release 1\.0\.0 "
        r"in .*: an export helper process \(pid \d+\) stopped answering",
    ):
        publish_release(
            Transcript.objects.all(), version="1.0.0", include_unreviewed=True, output_dir=releases
        )
    assert list(releases.iterdir()) == []
    assert not Release.objects.exists()
    assert not connection.in_atomic_block


def test_an_in_memory_sqlite_database_gets_no_helpers():
    from django.db.backends.sqlite3.base import DatabaseWrapper

    def sqlite(name):
        return DatabaseWrapper({"NAME": name, "OPTIONS": {}}, "other")

    assert not parallel.can_share(sqlite(":memory:"))
    assert not parallel.can_share(sqlite("file:memorydb_other?mode=memory&cache=shared"))
    assert parallel.can_share(sqlite(str(Path("var") / "some.sqlite3")))
