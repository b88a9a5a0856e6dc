"""Publishing releases: their files, checksums and snapshot, filters, and the archive download."""

import hashlib
import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from audit.models import Release, Transcript, Verdict
from audit.publish.release import ReleaseError, publish_release
from audit.publish.verify import verify_release
from audit.review.workflow import submit_review

FILES = {
    "README.md",
    "SHA256SUMS",
    "croissant.json",
    "data/reviewed.jsonl",
    "manifest.json",
    "summary.json",
}


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.django_db
def test_publish_writes_every_file_and_a_release_row(release, tmp_path, staff_user):
    root = tmp_path / "releases" / "1.0.0"
    assert Path(release.path) == root.resolve()
    assert tree(root) == FILES
    assert release.created_by == staff_user
    assert release.counts == {"reviewed": 3, "records": 3, "selection": 6}
    manifest = json.loads((root / "manifest.json").read_text())
    assert release.manifest == manifest
    assert manifest["version"] == "1.0.0" and manifest["created"]
    assert manifest["records"] == {"data/reviewed.jsonl": 3}
    for entry in manifest["files"]:
        data = (root / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data)
    assert len((root / "data/reviewed.jsonl").read_text().splitlines()) == 3
    assert verify_release(root) == []


@pytest.mark.django_db
def test_sha256sums_lists_every_other_file_in_sha256sum_format(release, tmp_path):
    root = tmp_path / "releases" / "1.0.0"
    lines = (root / "SHA256SUMS").read_text().splitlines()
    names = [line.split("  ", 1)[1] for line in lines]
    assert names == sorted(FILES - {"SHA256SUMS"})
    for line in lines:
        digest, name = line.split("  ", 1)
        assert digest == hashlib.sha256((root / name).read_bytes()).hexdigest()


@pytest.mark.django_db
def test_release_files_are_read_only(release, tmp_path):
    root = tmp_path / "releases" / "1.0.0"
    for name in FILES:
        assert not (root / name).stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


@pytest.mark.django_db
def test_same_reviewed_data_gives_byte_identical_data_files(release, tmp_path):
    again = publish_release(
        Transcript.objects.all(), version="1.0.1", output_dir=tmp_path / "releases"
    )
    first, second = Path(release.path), Path(again.path)
    for name in ("data/reviewed.jsonl", "summary.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


@pytest.mark.django_db
def test_include_unreviewed_adds_the_unreviewed_file(reviewed_data, tmp_path):
    release = publish_release(
        Transcript.objects.all(),
        version="2.0.0",
        include_unreviewed=True,
        output_dir=tmp_path,
    )
    root = Path(release.path)
    assert tree(root) == FILES | {"data/unreviewed.jsonl"}
    assert release.counts == {"reviewed": 3, "unreviewed": 3, "records": 6, "selection": 6}
    for line in (root / "data/unreviewed.jsonl").read_text().splitlines():
        assert json.loads(line)["review"]["manually_reviewed"] is False
    assert verify_release(root) == []


@pytest.mark.django_db
def test_existing_version_is_refused(release, tmp_path):
    with pytest.raises(ReleaseError, match="1.0.0 already exists"):
        publish_release(Transcript.objects.all(), version="1.0.0", output_dir=tmp_path / "x")
    (tmp_path / "other" / "3.0.0").mkdir(parents=True)
    with pytest.raises(ReleaseError, match="already exists"):
        publish_release(Transcript.objects.all(), version="3.0.0", output_dir=tmp_path / "other")
    assert Release.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "version", ["1.0", "v1.0.0", "1.0.0-rc1", "01.0.0", "", "../1.0.0", "1.0.0\n"]
)
def test_version_must_be_semver(version, tmp_path):
    with pytest.raises(ReleaseError, match="X.Y.Z"):
        publish_release(Transcript.objects.all(), version=version, output_dir=tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.django_db
def test_failed_publish_leaves_nothing_behind(reviewed_data, tmp_path, monkeypatch):
    from audit.publish import release as releases

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(releases, "dataset_card", boom)
    with pytest.raises(RuntimeError):
        publish_release(Transcript.objects.all(), version="1.0.0", output_dir=tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert not Release.objects.exists()


@pytest.mark.django_db
def test_publish_release_command_with_filters(reviewed_data, tmp_path, capsys):
    call_command(
        "publish_release",
        "--version",
        "1.2.3",
        "--filter",
        "task=basic_oversight",
        "--include-unreviewed",
        "--output",
        str(tmp_path),
    )
    release = Release.objects.get()
    assert release.filters == {"task": ["basic_oversight"]}
    assert release.counts["records"] == 3 and release.counts["selection"] == 3
    assert Path(release.path) == (tmp_path / "1.2.3").resolve()
    assert "release 1.2.3" in capsys.readouterr().out
    call_command("verify_release", str(tmp_path / "1.2.3"))
    with pytest.raises(CommandError, match="already exists"):
        call_command("publish_release", "--version", "1.2.3", "--output", str(tmp_path))
    with pytest.raises(CommandError, match="unknown filter"):
        call_command(
            "publish_release", "--version", "1.2.4", "--filter", "x=y", "--output", str(tmp_path)
        )


# --- download -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_download_release_as_zip(release, staff_client, root):
    response = staff_client.get(reverse("release_download", args=["1.0.0"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert 'filename="release-1.0.0.zip"' in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert {n.removeprefix("release-1.0.0/") for n in archive.namelist()} == FILES
    assert (
        archive.read("release-1.0.0/data/reviewed.jsonl")
        == (root / "data/reviewed.jsonl").read_bytes()
    )


@pytest.mark.django_db
def test_staff_download_release_as_tar_gz(release, staff_client, root):
    url = reverse("release_download", args=["1.0.0"]) + "?format=tar.gz"
    response = staff_client.get(url)
    assert response.status_code == 200
    data = io.BytesIO(b"".join(response.streaming_content))
    with tarfile.open(fileobj=data, mode="r:gz") as archive:
        names = {m.name.removeprefix("release-1.0.0/") for m in archive.getmembers()}
        assert names == FILES
        member = archive.extractfile("release-1.0.0/summary.json")
        assert member.read() == (root / "summary.json").read_bytes()


@pytest.mark.django_db
def test_download_requires_staff(release, auditor_client, client):
    url = reverse("release_download", args=["1.0.0"])
    assert auditor_client.get(url).status_code == 403
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.django_db
def test_download_rejects_post_unknown_release_and_format(release, staff_client):
    url = reverse("release_download", args=["1.0.0"])
    assert staff_client.post(url).status_code == 405
    assert staff_client.get(reverse("release_download", args=["9.9.9"])).status_code == 404
    assert staff_client.get(url + "?format=rar").status_code == 404


# --- one snapshot for every file ----------------------------------------------------------------


def _spy_on_reads(monkeypatch):
    """Record, for each data file and the summary, whether it ran inside a transaction and (on
    PostgreSQL) at what isolation level."""
    from django.db import connection

    from audit.publish import export as exporters

    seen = []

    def state(what):
        isolation = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SHOW transaction_isolation")
                isolation = cursor.fetchone()[0]
        seen.append((what, connection.in_atomic_block, isolation))

    write_jsonl, build_summary = exporters.write_jsonl, exporters.build_summary

    def spy_write(queryset, path, **kwargs):
        written = write_jsonl(queryset, path, **kwargs)
        state(Path(path).name)
        return written

    def spy_summary(queryset, **kwargs):
        summary = build_summary(queryset, **kwargs)
        state("summary")
        return summary

    monkeypatch.setattr(exporters, "write_jsonl", spy_write)
    monkeypatch.setattr(exporters, "build_summary", spy_summary)
    return seen


@pytest.mark.django_db(transaction=True)
def test_release_files_are_read_in_one_transaction(reviewed_data, tmp_path, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    seen = _spy_on_reads(monkeypatch)
    with CaptureQueriesContext(connection) as captured:
        publish_release(
            Transcript.objects.all(), version="1.0.0", include_unreviewed=True, output_dir=tmp_path
        )
    assert [what for what, _, _ in seen] == ["reviewed.jsonl", "unreviewed.jsonl", "summary"]
    assert all(in_transaction for _, in_transaction, _ in seen)
    if connection.vendor == "postgresql":
        # PostgreSQL refuses SET TRANSACTION after any other statement in the transaction, so
        # publishing at all shows it came first; READ COMMITTED would snapshot per query.
        sets = [q["sql"] for q in captured if q["sql"].startswith("SET TRANSACTION")]
        assert sets == [
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL jit = off"
        ]
        assert {isolation for _, _, isolation in seen} == {"repeatable read"}


@pytest.mark.django_db(transaction=True)
def test_item_settled_while_publishing_lands_in_exactly_one_file(
    reviewed_data, tmp_path, monkeypatch, auditor
):
    import threading

    from django.db import connection

    from audit.publish import export as exporters

    write_jsonl = exporters.write_jsonl
    late = reviewed_data[5]

    def settle_late_item():
        try:
            t = Transcript.objects.get(pk=late.pk)
            submit_review(t, auditor=auditor, verdict=Verdict.CONFIRM, based_on_version=t.version)
        finally:
            connection.close()

    def write_then_settle(queryset, path, **kwargs):
        written = write_jsonl(queryset, path, **kwargs)
        if Path(path).name == "reviewed.jsonl":
            # Another auditor settles an item between the two data files.
            thread = threading.Thread(target=settle_late_item)
            thread.start()
            thread.join()
        return written

    monkeypatch.setattr(exporters, "write_jsonl", write_then_settle)
    release = publish_release(
        Transcript.objects.all(), version="1.0.0", include_unreviewed=True, output_dir=tmp_path
    )
    assert Transcript.objects.get(pk=late.pk).status == "confirmed"  # the write went through
    root = Path(release.path)
    reviewed = (root / "data/reviewed.jsonl").read_text().splitlines()
    unreviewed = (root / "data/unreviewed.jsonl").read_text().splitlines()
    assert (len(reviewed), len(unreviewed)) == (3, 3)
    summary = json.loads((root / "summary.json").read_text())
    assert summary["review_status"]["confirmed"] == 3
    assert summary["review_status"]["unreviewed"] == 3


# --- selections (background publishing) --------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("license", ["MIT", "mit\nevil: yes", "", "cc by", "<b>"])
def test_license_must_be_a_license_id(reviewed_data, tmp_path, license):
    with pytest.raises(ReleaseError, match="license must be"):
        publish_release(
            Transcript.objects.all(), version="1.0.0", output_dir=tmp_path, license=license
        )
    assert not Release.objects.exists()
