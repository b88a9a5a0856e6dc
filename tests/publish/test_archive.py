"""The release archive streams: every file under the release, in order, in non-empty chunks."""

import io
import tarfile
import zipfile

from audit.publish.archive import stream_tar, stream_zip


def make_tree(root):
    (root / "data").mkdir(parents=True)
    (root / "data" / "reviewed.jsonl").write_bytes(b'{"a": 1}\n' * 20_000)  # several blocks
    (root / "README.md").write_text("# card\n")
    (root / "SHA256SUMS").write_text("")  # an empty file is still a member


def test_zip_holds_every_file_under_the_prefix_and_never_sends_an_empty_chunk(tmp_path):
    root = tmp_path / "1.0.0"
    make_tree(root)
    chunks = list(stream_zip(root, prefix="release-1.0.0"))
    assert chunks and all(chunks)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.namelist() == [
        "release-1.0.0/README.md",
        "release-1.0.0/SHA256SUMS",
        "release-1.0.0/data/reviewed.jsonl",
    ]
    assert archive.read("release-1.0.0/data/reviewed.jsonl") == b'{"a": 1}\n' * 20_000


def test_tar_holds_every_file_without_the_servers_owner_and_no_empty_chunk(tmp_path):
    root = tmp_path / "1.0.0"
    make_tree(root)
    chunks = list(stream_tar(root, prefix="release-1.0.0"))
    assert chunks and all(chunks)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:gz") as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [
            "release-1.0.0/README.md",
            "release-1.0.0/SHA256SUMS",
            "release-1.0.0/data/reviewed.jsonl",
        ]
        assert {(m.uname, m.gname, m.uid, m.gid) for m in members} == {("", "", 0, 0)}
        assert archive.extractfile("release-1.0.0/README.md").read() == b"# card\n"
