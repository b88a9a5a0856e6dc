"""Fixtures shared by the publishing tests: reviewed data and a release published from it."""

from pathlib import Path

import pytest

from audit.models import Transcript, Verdict
from audit.publish.release import publish_release
from audit.review.workflow import submit_review
from tests.factories import import_records, make_record


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


@pytest.fixture
def root(release, tmp_path) -> Path:
    """The published release's directory."""
    return tmp_path / "releases" / "1.0.0"
