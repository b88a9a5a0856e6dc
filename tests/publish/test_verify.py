"""verify_release: what it reports about a tampered release, and what it refuses to read."""

import hashlib
import io
import json
import os
import re
import stat
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import Transcript, Verdict
from audit.publish.release import publish_release
from audit.publish.verify import OUTSIDE, verify_release
from audit.review.workflow import submit_review
from tests.factories import import_fixture


def writable(path: Path) -> None:
    for p in [path, *path.parents[:2]]:
        os.chmod(p, stat.S_IRWXU)


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
    from audit.publish import verify

    seen = []
    sha256_file, count_lines = verify.sha256_file, verify._count_lines

    def spy_sha(path):
        seen.append(Path(path).resolve())
        return sha256_file(path)

    def spy_count(path):
        seen.append(Path(path).resolve())
        return count_lines(path)

    monkeypatch.setattr(verify, "sha256_file", spy_sha)
    monkeypatch.setattr(verify, "_count_lines", spy_count)
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


ONLY_OUTSIDE = "only-in-the-outside-file.txt"


def _outside_manifest(root: Path) -> str:
    """A valid-looking manifest, naming a file only it would mention."""
    data = json.loads((root / "manifest.json").read_text())
    data["files"].append({"path": ONLY_OUTSIDE, "sha256": "0", "size": 0})
    return json.dumps(data)


def _outside_sums(root: Path) -> str:
    return f"{'0' * 64}  {ONLY_OUTSIDE}\n"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "outside_text"),
    [("manifest.json", _outside_manifest), ("SHA256SUMS", _outside_sums)],
    ids=["manifest", "sha256sums"],
)
def test_verify_release_refuses_its_own_file_symlinked_out_of_the_release(
    root, tmp_path, monkeypatch, name, outside_text
):
    # The outside file names a file no release has: were it read, that name would be reported.
    outside = tmp_path / f"outside-{name}"
    outside.write_text(outside_text(root))
    own = root / name
    writable(own)
    own.unlink()
    own.symlink_to(outside)
    opened = _spy_on_opens(monkeypatch)
    problems = verify_release(root)
    assert f"{name}: {OUTSIDE}" in problems
    assert not any(ONLY_OUTSIDE in p for p in problems)
    assert outside.resolve() not in opened
    with pytest.raises(CommandError, match=rf"{re.escape(name)}: path outside the release"):
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


# --- verify_release: every copy of the data's hashes and counts ----------------------------------


def _resign(root: Path) -> None:
    """Rewrite manifest.json and SHA256SUMS to match the files as they now are: what someone
    changing a data file would do to pass a checksum check."""
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for item in manifest["files"]:
        data = (root / item["path"]).read_bytes()
        item["sha256"], item["size"] = _sha(data), len(data)
    for name in manifest["records"]:
        n = sum(1 for line in (root / name).read_text().splitlines() if line.strip())
        manifest["records"][name] = n
        manifest["counts"][Path(name).stem] = n
    manifest["counts"]["records"] = sum(manifest["records"].values())
    _replace(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    sums = "".join(
        f"{_sha((root / name).read_bytes())}  {name}\n" for name in names if name != "SHA256SUMS"
    )
    _replace(root / "SHA256SUMS", sums.encode())


def _edit(path: Path, change) -> None:
    _replace(path, change(path.read_text()).encode())


@pytest.mark.django_db
def test_verify_release_fails_a_resigned_data_change_naming_croissant(root):
    data = root / "data/reviewed.jsonl"
    # Same length: only the digest tells.
    _edit(data, lambda text: text.replace('"session_test"', '"session_tesT"', 1))
    _resign(root)
    problems = verify_release(root)
    actual = _sha(data.read_bytes())
    assert [p for p in problems if "croissant.json" in p] == [
        f"data/reviewed.jsonl: sha256 is {actual}, croissant.json says "
        f"{json.loads((root / 'croissant.json').read_text())['distribution'][0]['sha256']!r}"
    ]
    assert not any("SHA256SUMS" in p or "manifest.json" in p for p in problems), problems
    with pytest.raises(CommandError, match="croissant.json says"):
        call_command("verify_release", str(root))


@pytest.mark.django_db
def test_verify_release_fails_a_resigned_dropped_record_naming_croissant_and_the_card(root):
    data = root / "data/reviewed.jsonl"
    _edit(data, lambda text: "".join(text.splitlines(keepends=True)[:-1]))
    _resign(root)
    problems = verify_release(root)
    size = data.stat().st_size
    assert any(
        p.startswith("data/reviewed.jsonl: sha256 is ") and "croissant.json" in p for p in problems
    )
    assert any(
        p.startswith(f"data/reviewed.jsonl: size is {size} bytes, croissant.json says")
        for p in problems
    )
    assert "data/reviewed.jsonl: 2 records, README.md says 3" in problems
    assert "README.md: says 3 records in this release, the data files hold 2" in problems
    assert not any("SHA256SUMS" in p or "manifest.json" in p for p in problems), problems


@pytest.mark.django_db
def test_verify_release_fails_a_resigned_croissant_with_a_wrong_digest_or_size(root):
    def tamper(text):
        meta = json.loads(text)
        meta["distribution"][0]["sha256"] = "0" * 64
        meta["distribution"][0]["contentSize"] = "1 B"
        return json.dumps(meta)

    _edit(root / "croissant.json", tamper)
    _resign(root)
    problems = verify_release(root)
    size = (root / "data/reviewed.jsonl").stat().st_size
    assert any(p.endswith(f"croissant.json says {'0' * 64!r}") for p in problems), problems
    assert (
        f"data/reviewed.jsonl: size is {size} bytes, croissant.json says contentSize '1 B'"
        in problems
    )


@pytest.mark.django_db
def test_verify_release_fails_a_croissant_that_leaves_out_a_data_file(root):
    def drop(text):
        meta = json.loads(text)
        meta["distribution"] = []
        return json.dumps(meta)

    _edit(root / "croissant.json", drop)
    _resign(root)
    assert verify_release(root) == [
        "data/reviewed.jsonl: data file not listed in croissant.json distribution"
    ]


@pytest.mark.django_db
def test_verify_release_fails_a_croissant_that_is_not_json(root):
    _edit(root / "croissant.json", lambda text: text[:-10])
    _resign(root)
    [problem] = verify_release(root)
    assert problem.startswith("croissant.json: not valid JSON")


@pytest.mark.django_db
def test_verify_release_fails_a_resigned_card_with_other_counts(root):
    def tamper(text):
        text = text.replace(
            "- `data/reviewed.jsonl`: 3 records", "- `data/reviewed.jsonl`: 4 records"
        )
        text = text.replace("- In this release: 3 records", "- In this release: 4 records")
        return text.replace("size_categories:\n- n<1K", "size_categories:\n- 1K<n<10K")

    _edit(root / "README.md", tamper)
    _resign(root)
    assert verify_release(root) == [
        "data/reviewed.jsonl: 3 records, README.md says 4",
        "README.md: says 4 records in this release, the data files hold 3",
        "README.md: size_categories is '1K<n<10K', 'n<1K' for 3 records",
    ]


@pytest.mark.django_db
def test_verify_release_fails_a_resigned_card_whose_configs_miss_a_split(root):
    _edit(root / "README.md", lambda text: text.replace("    path: data/reviewed.jsonl\n", ""))
    _resign(root)
    assert verify_release(root) == [
        "data/reviewed.jsonl: data file not in the splits of README.md's configs"
    ]


@pytest.mark.django_db
def test_verify_release_fails_a_data_file_the_card_does_not_list(root):
    _edit(
        root / "README.md",
        lambda text: text.replace("- `data/reviewed.jsonl`: 3 records\n", ""),
    )
    _resign(root)
    assert verify_release(root) == ["data/reviewed.jsonl: data file not listed in README.md"]
