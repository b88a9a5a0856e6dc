"""The read endpoints: releases (list, manifest, files), one transcript with its reviews under
blind review, and summaries with the selection vocabulary."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from audit.metrics.summaries import VIEWS
from audit.models import Transcript
from audit.publish.release import publish_release
from tests.api.conftest import API, bearer
from tests.factories import confirm, import_fixture, import_records, make_record, relabel

pytestmark = pytest.mark.django_db


# --- releases ------------------------------------------------------------------------------------


@pytest.fixture
def release(tmp_path, auditor, staff_user):
    items = import_records([make_record(step_number=n) for n in range(4)], tmp_path)
    for item in items[:2]:
        confirm(item, auditor)
    return publish_release(
        Transcript.objects.all(), version="1.2.0", output_dir=tmp_path / "releases", user=staff_user
    )


def test_releases_list_with_files_and_urls(api, read_token, release):
    response = api.get(f"{API}/releases", headers=bearer(read_token))
    assert response.status_code == 200
    (listed,) = response.json()
    assert listed["version"] == "1.2.0"
    assert listed["counts"] == release.counts
    assert [f["path"] for f in listed["files"]] == [f["path"] for f in release.manifest["files"]]
    assert listed["manifest_url"].endswith("/api/v1/releases/1.2.0/manifest")
    one = api.get(f"{API}/releases/1.2.0", headers=bearer(read_token)).json()
    assert one == listed


def test_manifest_is_the_published_one(api, read_token, release):
    response = api.get(f"{API}/releases/1.2.0/manifest", headers=bearer(read_token))
    assert response.status_code == 200
    assert response.json() == release.manifest


def test_a_file_downloads_byte_for_byte_with_its_sha256(api, read_token, release):
    listed = {f["path"]: f for f in release.manifest["files"]}
    entry = listed["data/reviewed.jsonl"]
    response = api.get(entry_url("data/reviewed.jsonl"), headers=bearer(read_token))
    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    assert hashlib.sha256(data).hexdigest() == entry["sha256"] == response["ETag"].strip('"')
    assert len(data.splitlines()) == 2
    assert response["Content-Type"] == "application/x-ndjson"
    sums = api.get(entry_url("SHA256SUMS"), headers=bearer(read_token))
    assert f"{entry['sha256']}  data/reviewed.jsonl" in b"".join(sums.streaming_content).decode()


def entry_url(path: str) -> str:
    return f"{API}/releases/1.2.0/files/{path}"


@pytest.mark.parametrize(
    "path", ["../../etc/passwd", "data/nope.jsonl", "%2e%2e/%2e%2e/etc/passwd", "data"]
)
def test_only_listed_files_download(api, read_token, release, path):
    response = api.get(entry_url(path), headers=bearer(read_token))
    assert response.status_code == 404
    assert response.json()["detail"]


def test_a_damaged_file_is_refused_with_409(api, read_token, release):
    target = os_path(release.path, "summary.json")
    os.chmod(target, stat.S_IWUSR | stat.S_IRUSR)
    with open(target, "a") as handle:
        handle.write(" ")
    response = api.get(entry_url("summary.json"), headers=bearer(read_token))
    assert response.status_code == 409
    assert "verify_release" in response.json()["detail"]


def os_path(root: str, name: str) -> str:
    return os.path.join(root, name)


@pytest.mark.parametrize("version", ["9.9.9", "1.2", "x\x00y"])
def test_unknown_release_is_404(api, read_token, release, version):
    response = api.get(f"{API}/releases/{version}/manifest", headers=bearer(read_token))
    assert response.status_code == 404


def test_releases_are_for_staff(api, make_token, auditor):
    response = api.get(f"{API}/releases", headers=bearer(make_token(auditor, "read")))
    assert response.status_code == 403
    assert "not staff" in response.json()["detail"]


# --- one transcript, blind review ----------------------------------------------------------------


@pytest.fixture
def reviewed(tmp_path, auditor2):
    """An item K=2 that bob relabeled; alice has not reviewed it."""
    (item,) = import_records([make_record()], tmp_path, required_reviews=2)
    relabel(item, auditor2, rationale="bob's secret reasoning")
    return item


def test_a_blind_auditor_sees_only_their_own_work(api, make_token, auditor, reviewed):
    response = api.get(f"{API}/transcripts/{reviewed.pk}", headers=bearer(make_token(auditor)))
    assert response.status_code == 200
    item = response.json()
    assert item["reviews_visible"] is False
    assert item["reviews"] == []
    assert item["final"] is None
    assert "bob's secret" not in response.content.decode()
    assert item["imported"]["alignment_category"] == "aligned_approve"
    assert item["raw"] == reviewed.text.raw


def test_after_their_own_verdict_an_auditor_sees_every_review(api, make_token, auditor, reviewed):
    confirm(reviewed, auditor)
    item = api.get(f"{API}/transcripts/{reviewed.pk}", headers=bearer(make_token(auditor))).json()
    assert item["reviews_visible"] is True
    assert [(r["verdict"], r["own"]) for r in item["reviews"]] == [
        ("relabel", False),
        ("confirm", True),
    ]
    assert item["reviews"][0]["rationale"] == "bob's secret reasoning"
    assert item["reviews"][0]["auditor"].startswith("auditor-")
    assert "bob" not in {r["auditor"] for r in item["reviews"]}
    assert item["status"] == "disputed"
    assert item["final"] is not None


def test_an_adjudicator_sees_a_disputed_item(api, make_token, auditor, adjudicator, reviewed):
    confirm(reviewed, auditor)
    item = api.get(
        f"{API}/transcripts/{reviewed.pk}", headers=bearer(make_token(adjudicator))
    ).json()
    assert item["reviews_visible"] is True and len(item["reviews"]) == 2


def test_transcripts_are_for_reviewers(api, make_token, plain_user, reviewed):
    response = api.get(f"{API}/transcripts/{reviewed.pk}", headers=bearer(make_token(plain_user)))
    assert response.status_code == 403


def test_missing_transcript_is_404(api, make_token, auditor):
    response = api.get(f"{API}/transcripts/999999", headers=bearer(make_token(auditor)))
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


# --- summaries -----------------------------------------------------------------------------------


def test_summary_as_imported_equals_the_exporters(api, make_token, auditor):
    import_fixture("rule_s0")
    import json

    from tests.factories import DATA_DIR

    expected = json.loads((DATA_DIR / "rule_s0.summary.json").read_text())
    response = api.get(f"{API}/summaries?view=as_imported", headers=bearer(make_token(auditor)))
    assert response.status_code == 200
    (view,) = response.json()["summaries"]
    assert view["summary"] == expected
    assert (view["view"], view["n"], view["label"]) == ("as_imported", 105, "As imported")


def test_a_blind_auditor_gets_as_imported_only(api, make_token, auditor):
    import_fixture("rule_s0")
    token = make_token(auditor)
    answer = api.get(f"{API}/summaries", headers=bearer(token)).json()
    assert answer["blind"] is True
    assert [view["view"] for view in answer["summaries"]] == ["as_imported"]
    refused = api.get(f"{API}/summaries?view=settled_after", headers=bearer(token))
    assert refused.status_code == 403
    assert "after review" in refused.json()["detail"]
    by_status = api.get(f"{API}/summaries?status=relabeled", headers=bearer(token))
    assert by_status.status_code == 403
    assert api.get(f"{API}/summaries?status=disputed", headers=bearer(token)).status_code == 200


def test_staff_get_every_view_of_a_selection(api, read_token, tmp_path, auditor):
    items = import_records(
        [make_record(step_number=n, task_id=("a", "b")[n % 2]) for n in range(6)], tmp_path
    )
    relabel(items[0], auditor)
    answer = api.get(f"{API}/summaries?task=a", headers=bearer(read_token)).json()
    assert answer["blind"] is False
    assert answer["selection"] == {"task": ["a"]}
    views = {view["view"]: view for view in answer["summaries"]}
    assert list(views) == list(VIEWS)
    assert views["as_imported"]["n"] == 3
    assert views["settled_after"]["n"] == 1
    assert views["settled_after"]["summary"]["alignment_distribution"] == {
        "alignment_failure_fn": 1
    }


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("flag=nope", "unknown flag"),
        ("status=bogus", "unknown status"),
        ("batch=abc", "batch"),
        ("batch=4242", "no import batch #4242"),
        ("view=everything", "unknown view"),
    ],
)
def test_bad_selections_are_400(api, read_token, query, named):
    response = api.get(f"{API}/summaries?{query}", headers=bearer(read_token))
    assert response.status_code == 400
    assert named in response.json()["detail"]


def test_a_path_no_api_route_takes_is_a_json_404(client):
    # A newline in a path parameter matches no route ("." leaves it out): still JSON.
    for path in ("/api/v1/releases/1.0.0/files/a%0Ab", "/api/v1/nothing-here", "/api/v1/x/%0A"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json", path
        assert response.json() == {"detail": "not found"}
