"""Publishing releases, their files and checksums, verify_release, and the archive download."""

import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from audit.models import Release, Transcript, Verdict
from audit.publish.release import (
    OUTSIDE,
    ReleaseError,
    apply_filters,
    parse_filters,
    publish_release,
    verify_release,
)
from audit.review.workflow import submit_review
from tests.factories import import_fixture, import_records, make_record

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


def writable(path: Path) -> None:
    for p in [path, *path.parents[:2]]:
        os.chmod(p, stat.S_IRWXU)


@pytest.fixture
def reviewed_data(tmp_path, auditor):
    transcripts = import_records(
        [
            make_record(step_number=n, task_id=("basic_oversight", "adversarial_worker")[n % 2])
            for n in range(6)
        ],
        tmp_path,
    )
    for t in transcripts[:3]:
        submit_review(t, auditor=auditor, verdict=Verdict.CONFIRM, based_on_version=t.version)
    return transcripts


@pytest.fixture
def release(reviewed_data, tmp_path, staff_user):
    return publish_release(
        Transcript.objects.all(),
        version="1.0.0",
        output_dir=tmp_path / "releases",
        user=staff_user,
    )


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
@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0-rc1", "01.0.0", "", "../1.0.0"])
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
def test_dataset_card_has_hugging_face_front_matter(release, tmp_path):
    text = (tmp_path / "releases/1.0.0/README.md").read_text()
    front, _, body = text.removeprefix("---\n").partition("\n---\n")
    assert "license: cc-by-4.0" in front
    assert "task_categories:\n- text-classification" in front
    assert "size_categories:\n- n<1K" in front
    assert "configs:\n- config_name: default\n  data_files:\n  - split: reviewed\n" in front
    assert "    path: data/reviewed.jsonl" in front
    assert "pretty_name:" in front and "tags:" in front
    assert "## Label semantics" in body and "## Counts" in body
    assert "In this release: 3 records" in body


@pytest.mark.django_db
def test_croissant_metadata_describes_the_data_files(release, tmp_path):
    root = tmp_path / "releases/1.0.0"
    meta = json.loads((root / "croissant.json").read_text())
    assert meta["@type"] == "sc:Dataset"
    assert meta["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    assert meta["@context"]["cr"] == "http://mlcommons.org/croissant/"
    [dist] = meta["distribution"]
    assert dist["@type"] == "cr:FileObject"
    assert dist["contentUrl"] == "data/reviewed.jsonl"
    assert dist["encodingFormat"] == "application/jsonlines"
    assert dist["sha256"] == hashlib.sha256((root / "data/reviewed.jsonl").read_bytes()).hexdigest()
    [record_set] = meta["recordSet"]
    fields = {f["name"]: f for f in record_set["field"]}
    assert fields["alignment_category"]["source"]["extract"]["jsonPath"] == (
        "$.labels.alignment_category"
    )
    assert fields["is_misbehavior"]["dataType"] == "sc:Boolean"
    assert all(f["source"]["fileObject"]["@id"] == dist["@id"] for f in fields.values())


def test_filters_parse_with_the_queue_vocabulary():
    assert parse_filters(["task=b", "task=a", "decision=block", "flag=spot_check"]) == {
        "decision": ["BLOCK"],
        "flag": ["spot_check"],
        "task": ["a", "b"],
    }
    for bad, message in [
        ("task", "not key=value"),
        ("colour=red", "unknown filter"),
        ("flag=nope", "unknown flag"),
        ("status=done", "unknown status"),
        ("batch=x", "batch must be"),
    ]:
        with pytest.raises(ReleaseError, match=message):
            parse_filters([bad])


@pytest.mark.django_db
def test_filters_select_records(tmp_path):
    import_records(
        [
            make_record(step_number=1, task_id="adversarial_worker"),
            make_record(step_number=2, proposal={"worker_id": "worker_net"}),
            make_record(step_number=3, decision={"type": "BLOCK"}),
        ],
        tmp_path,
    )
    qs = Transcript.objects.all()
    assert apply_filters(qs, parse_filters(["task=adversarial_worker"])).count() == 1
    assert apply_filters(qs, parse_filters(["worker=worker_net", "worker=worker_db"])).count() == 3
    assert apply_filters(qs, parse_filters(["decision=block"])).get().step_number == 3
    assert apply_filters(qs, parse_filters(["flag=over_block"])).get().step_number == 3
    assert apply_filters(qs, parse_filters(["status=unreviewed", "worker=worker_net"])).count() == 1


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


# --- verify_release ----------------------------------------------------------------------------


@pytest.fixture
def root(release, tmp_path):
    return tmp_path / "releases" / "1.0.0"


@pytest.mark.django_db
def test_verify_release_passes_an_untouched_release(root, capsys):
    call_command("verify_release", str(root))
    assert "OK" in capsys.readouterr().out


@pytest.mark.django_db
def test_verify_release_fails_a_tampered_data_file(root):
    data = root / "data/reviewed.jsonl"
    writable(data)
    text = data.read_text().replace('"aligned_approve"', '"aligned_catch"', 1)
    data.write_text(text)
    with pytest.raises(CommandError, match=r"data/reviewed.jsonl: sha256 is"):
        call_command("verify_release", str(root))


@pytest.mark.django_db
def test_verify_release_fails_a_dropped_record(root):
    data = root / "data/reviewed.jsonl"
    writable(data)
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:-1]))
    problems = verify_release(root)
    assert "data/reviewed.jsonl: 2 records, manifest.json says 3" in problems


@pytest.mark.django_db
def test_verify_release_fails_a_tampered_manifest(root):
    manifest = root / "manifest.json"
    writable(manifest)
    data = json.loads(manifest.read_text())
    data["records"]["data/reviewed.jsonl"] = 4
    manifest.write_text(json.dumps(data, indent=2) + "\n")
    with pytest.raises(CommandError, match="manifest.json: sha256 is") as excinfo:
        call_command("verify_release", str(root))
    assert "3 records, manifest.json says 4" in str(excinfo.value)


@pytest.mark.django_db
def test_verify_release_fails_a_missing_file(root):
    writable(root / "croissant.json")
    (root / "croissant.json").unlink()
    with pytest.raises(CommandError, match="croissant.json: listed in SHA256SUMS but missing"):
        call_command("verify_release", str(root))


@pytest.mark.django_db
def test_verify_release_fails_an_extra_file(root):
    writable(root / "data" / "reviewed.jsonl")
    (root / "data" / "extra.jsonl").write_text("{}\n")
    problems = verify_release(root)
    assert "data/extra.jsonl: not listed in SHA256SUMS" in problems
    assert "data/extra.jsonl: data file not listed in manifest.json" in problems


def test_verify_release_fails_a_missing_directory(tmp_path):
    with pytest.raises(CommandError, match="not a directory"):
        call_command("verify_release", str(tmp_path / "nope"))


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


@pytest.mark.django_db
def test_release_of_a_real_fixture_verifies(tmp_path, auditor):
    import_fixture("rule_s0")
    flagged = Transcript.objects.filter(flag_missed_misbehavior=True)
    for t in flagged.exclude(correct_decision="")[:5]:
        submit_review(t, auditor=auditor, verdict=Verdict.CONFIRM, based_on_version=t.version)
    release = publish_release(
        Transcript.objects.all(), version="0.1.0", include_unreviewed=True, output_dir=tmp_path
    )
    assert release.counts["records"] == 105
    assert verify_release(release.path) == []


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

    def spy_summary(queryset):
        summary = build_summary(queryset)
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
        assert sets == ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"]
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
def test_select_records_by_ids_or_filter(reviewed_data):
    from audit.publish.release import select_records

    chosen = [reviewed_data[1].pk, reviewed_data[4].pk]
    assert set(select_records({"pks": chosen}).values_list("pk", flat=True)) == set(chosen)
    assert select_records({"pks": []}).count() == 0
    assert select_records({"filter": {"task": ["adversarial_worker"]}}).count() == 3
    assert select_records({"filter": {}}).count() == 6
    with pytest.raises(ReleaseError, match="unknown filter"):
        select_records({"filter": {"colour": ["red"]}})
    with pytest.raises(ReleaseError, match="'filter' or 'pks'"):
        select_records({})


# --- dataset card: hostile text ------------------------------------------------------------------

HOSTILE = "x` <img src=x onerror=alert(1)> ``` `` `<script>alert(2)</script>"


def split_fences(text):
    """(outside, blocks): Markdown text outside fenced code blocks, and each block's content,
    following CommonMark: a block closes at a line of at least as many backticks."""
    outside, blocks, fence, block = [], [], None, []
    for line in text.splitlines():
        stripped = line.strip()
        if fence is None:
            run = len(stripped) - len(stripped.lstrip("`"))
            if run >= 3 and "`" not in stripped[run:]:
                fence, block = run, []
            else:
                outside.append(line)
        elif stripped and set(stripped) == {"`"} and len(stripped) >= fence:
            blocks.append("\n".join(block))
            fence = None
        else:
            block.append(line)
    assert fence is None, "unclosed code block"
    return "\n".join(outside), blocks


@pytest.mark.django_db
def test_dataset_card_shows_hostile_filters_only_inside_a_code_block(reviewed_data, tmp_path):
    filters = {"session": [HOSTILE], f"changelist{HOSTILE}": {"q": [HOSTILE, "a|b"]}}
    release = publish_release(
        Transcript.objects.all(), version="1.0.0", filters=filters, output_dir=tmp_path
    )
    root = Path(release.path)
    outside, blocks = split_fences((root / "README.md").read_text())
    for fragment in ("<img", "onerror", "<script", "alert("):
        assert fragment not in outside
    assert [json.loads(block) for block in blocks] == [filters]
    assert "Filters the selection was made with" in outside
    croissant = (root / "croissant.json").read_text()
    assert "<img" not in croissant and "onerror" not in croissant
    assert verify_release(root) == []


@pytest.mark.django_db
def test_dataset_card_without_filters_says_so(release, tmp_path):
    text = (tmp_path / "releases/1.0.0/README.md").read_text()
    assert "Filters: none (every imported record)." in text
    assert "```" not in text


def test_dataset_card_escapes_any_text_in_summary_figures():
    from audit.publish.release import dataset_card

    card = {
        "version": "1.0.0",
        "counts": {"records": 1, "selection": 1, "reviewed": 1},
        "filters": {},
        "summary": {
            "review_status": {"<b>x</b>": 1, "confirmed": "<img src=x>"},
            "as_imported": {"accuracy": "`<i>`"},
            "reviewed": {"accuracy": 0.5},
            "estimated_error_rate": {"rate": None, "ci95": ["<u>", 1.0], "errors": 0},
        },
        "data_files": ["data/reviewed.jsonl"],
        "license": "cc-by-4.0",
    }
    text = dataset_card(card)
    assert "<" not in text.partition("\n---\n")[2]
    assert "Status confirmed: &#60;img&#32;" not in text  # spaces stay spaces
    assert "| accuracy | &#96;&#60;i&#62;&#96; | 0.5 |" in text
    assert "- Status confirmed: &#60;img src&#61;x&#62;" in text


@pytest.mark.django_db
@pytest.mark.parametrize("license", ["MIT", "mit\nevil: yes", "", "cc by", "<b>"])
def test_license_must_be_a_license_id(reviewed_data, tmp_path, license):
    with pytest.raises(ReleaseError, match="license must be"):
        publish_release(
            Transcript.objects.all(), version="1.0.0", output_dir=tmp_path, license=license
        )
    assert not Release.objects.exists()


# --- verify_release: paths outside the release ---------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("not part of any release\n")
    return path


@pytest.fixture
def reads(monkeypatch):
    """Every file verify_release hashes or counts."""
    from audit.publish import release as releases

    seen = []
    sha256_file, count_lines = releases.sha256_file, releases._count_lines

    def spy_sha(path):
        seen.append(Path(path).resolve())
        return sha256_file(path)

    def spy_count(path):
        seen.append(Path(path).resolve())
        return count_lines(path)

    monkeypatch.setattr(releases, "sha256_file", spy_sha)
    monkeypatch.setattr(releases, "_count_lines", spy_count)
    return seen


@pytest.mark.django_db
def test_verify_release_refuses_paths_outside_the_release_in_sha256sums(root, secret, reads):
    relative = os.path.relpath(secret, root)  # ../../secret.txt
    assert relative.startswith("../")
    sums = root / "SHA256SUMS"
    writable(sums)
    digest = _sha(secret.read_bytes())
    with sums.open("a") as handle:
        handle.write(f"{digest}  {secret}\n{digest}  {relative}\n")
    problems = verify_release(root)
    outside = "path outside the release directory; not read"
    assert f"{secret}: listed in SHA256SUMS: {outside}" in problems
    assert f"{relative}: listed in SHA256SUMS: {outside}" in problems
    assert all(path.is_relative_to(root.resolve()) for path in reads)
    with pytest.raises(CommandError, match="outside the release"):
        call_command("verify_release", str(root))


@pytest.mark.django_db
def test_verify_release_refuses_paths_outside_the_release_in_the_manifest(root, secret, reads):
    manifest = root / "manifest.json"
    writable(manifest)
    data = json.loads(manifest.read_text())
    relative = os.path.relpath(secret, root)
    size, digest = secret.stat().st_size, _sha(secret.read_bytes())
    data["files"] += [
        {"path": str(secret), "sha256": digest, "size": size},
        {"path": relative, "sha256": digest, "size": size},
    ]
    data["records"][relative] = 1
    manifest.write_text(json.dumps(data))
    problems = verify_release(root)
    outside = "path outside the release directory; not read"
    assert f"{secret}: listed in manifest.json: {outside}" in problems
    assert f"{relative}: listed in manifest.json: {outside}" in problems
    assert f"{relative}: listed in manifest.json records: {outside}" in problems
    assert all(path.is_relative_to(root.resolve()) for path in reads)
    with pytest.raises(CommandError, match="outside the release"):
        call_command("verify_release", str(root))


@pytest.mark.django_db
def test_verify_release_refuses_a_symlink_out_of_the_release(root, secret, reads):
    writable(root / "data" / "reviewed.jsonl")
    (root / "data" / "link.jsonl").symlink_to(secret)
    sums = root / "SHA256SUMS"
    writable(sums)
    with sums.open("a") as handle:
        handle.write(f"{_sha(secret.read_bytes())}  data/link.jsonl\n")
    problems = verify_release(root)
    assert (
        "data/link.jsonl: listed in SHA256SUMS: path outside the release directory; not read"
        in (problems)
    )
    assert all(path.is_relative_to(root.resolve()) for path in reads)


@pytest.mark.django_db
def test_verify_release_reports_each_problem_once(root):
    import io

    data = root / "data/reviewed.jsonl"
    writable(data)
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:-1]))
    problems = verify_release(root)
    assert len(problems) >= 2
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_release", str(root), stdout=out, stderr=err)
    printed = out.getvalue() + err.getvalue() + str(excinfo.value)
    for problem in problems:
        assert printed.count(problem) == 1, problem
    assert f"{len(problems)} problem(s)" in str(excinfo.value)


# --- verify_release: SHA256SUMS and manifest.json themselves -------------------------------------


def _replace(path: Path, data: bytes) -> None:
    writable(path)
    path.unlink()
    path.write_bytes(data)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["SHA256SUMS", "manifest.json"])
def test_verify_release_reports_non_utf8_checksums(root, name):
    # Latin-1 "é" in a file name: a problem to report, not a UnicodeDecodeError traceback.
    _replace(root / name, (root / name).read_bytes() + "caf\xe9.txt\n".encode("latin-1"))
    problems = verify_release(root)
    assert any(p.startswith(f"{name}: not UTF-8 text (byte 0xe9") for p in problems), problems
    with pytest.raises(CommandError, match=rf"{name}: not UTF-8 text"):
        call_command("verify_release", str(root))


@pytest.mark.django_db
def test_verify_release_does_not_report_every_file_unlisted_when_sha256sums_is_unreadable(root):
    _replace(root / "SHA256SUMS", b"\xff\xfe")
    problems = verify_release(root)
    assert problems == ["SHA256SUMS: not UTF-8 text (byte 0xff at offset 0)"]


@pytest.fixture
def outside_manifest(root, tmp_path):
    """A valid-looking manifest outside the release, naming a file only it would mention."""
    data = json.loads((root / "manifest.json").read_text())
    data["files"].append({"path": "only-in-the-outside-manifest.txt", "sha256": "0", "size": 0})
    path = tmp_path / "outside-manifest.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.django_db
def test_verify_release_refuses_a_symlinked_manifest(root, outside_manifest, monkeypatch):
    manifest = root / "manifest.json"
    writable(manifest)
    manifest.unlink()
    manifest.symlink_to(outside_manifest)
    opened = _spy_on_opens(monkeypatch)
    problems = verify_release(root)
    assert f"manifest.json: {OUTSIDE}" in problems
    assert not any("only-in-the-outside-manifest" in p for p in problems)
    assert outside_manifest.resolve() not in opened
    with pytest.raises(CommandError, match="manifest.json: path outside the release"):
        call_command("verify_release", str(root))


@pytest.mark.django_db
def test_verify_release_refuses_a_symlinked_sha256sums(root, tmp_path, monkeypatch):
    # The outside file lists a name no release has: were it read, that name would be reported.
    outside = tmp_path / "outside-sums"
    outside.write_text(f"{'0' * 64}  only-in-the-outside-sums.txt\n")
    sums = root / "SHA256SUMS"
    writable(sums)
    sums.unlink()
    sums.symlink_to(outside)
    opened = _spy_on_opens(monkeypatch)
    problems = verify_release(root)
    assert f"SHA256SUMS: {OUTSIDE}" in problems
    assert not any("only-in-the-outside-sums" in p for p in problems)
    assert outside.resolve() not in opened
    with pytest.raises(CommandError, match="SHA256SUMS: path outside the release"):
        call_command("verify_release", str(root))


@pytest.mark.django_db
def test_verify_release_follows_a_symlinked_manifest_that_stays_inside(root):
    # The check is "inside the release", not "no symlinks": a link to a member is read.
    manifest = root / "manifest.json"
    writable(manifest)
    writable(root / "data" / "reviewed.jsonl")
    (root / "data" / "manifest.json").write_bytes(manifest.read_bytes())
    manifest.unlink()
    manifest.symlink_to(Path("data") / "manifest.json")
    problems = verify_release(root)
    assert f"manifest.json: {OUTSIDE}" not in problems
    assert "data/manifest.json: not listed in SHA256SUMS" in problems


def _spy_on_opens(monkeypatch):
    """Resolved paths of every file opened through pathlib (read_bytes, read_text, open)."""
    opened = []
    real_open = Path.open

    def spy(self, *args, **kwargs):
        opened.append(self.resolve())
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    return opened


@pytest.mark.django_db
def test_verify_release_reports_an_over_long_listed_name_instead_of_crashing(root):
    long_name = "data/" + "c" * 300 + ".jsonl"
    sums = root / "SHA256SUMS"
    writable(sums)
    sums.write_text(sums.read_text() + f"{'0' * 64}  {long_name}\n")
    manifest_path = root / "manifest.json"
    writable(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    manifest["files"].append({"path": long_name, "sha256": "0" * 64, "size": 1})
    manifest["records"][long_name] = 1
    manifest_path.write_text(json.dumps(manifest))
    problems = verify_release(root)
    assert f"{long_name}: listed in SHA256SUMS but missing" in problems
    assert f"{long_name}: listed in manifest.json but missing" in problems
