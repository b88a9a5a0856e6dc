"""summary.json's counts read from the rollup (issue 14: no scans of the wide transcript rows
at a million records) equal the same summary counted on the records, for every selection the
rollup answers, after reviews of every kind; and a release published through the command
(which reads them from the rollup) says what its records say."""

import io
import json
import random

import pytest
from django.core.management import call_command

from audit import rollup
from audit.models import RollupQuerySet, Transcript
from audit.publish import export as exporters
from audit.publish.release import REVIEWED_FILE, UNREVIEWED_FILE
from audit.publish.selection import Selection
from tests.factories import import_fixture, random_work

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed(auditor, auditor2, adjudicator):
    for name in ("noisy_s1", "block_s3", "rule_s0"):
        import_fixture(name)
    random_work(auditor, auditor2, adjudicator, random.Random(11), steps=150)
    assert Transcript.objects.settled().count() > 10


def test_the_summary_from_the_rollup_equals_the_one_from_the_records(reviewed):
    task = Transcript.objects.values_list("task_id", flat=True).first()
    batch = Transcript.objects.values_list("batch_id", flat=True).first()
    for filters in ({}, {"task": [task]}, {"flag": ["over_block"]}, {"batch": [batch]}):
        chosen = Selection.of(filters)
        found = rollup.scope(chosen)
        assert isinstance(found.counts, RollupQuerySet)
        records = found.records
        files = {"reviewed": records.settled(), "unreviewed": records.unsettled()}
        counted = exporters.build_summary(records, files=files)
        summed = exporters.build_summary(
            records,
            files=files,
            counts=found.counts,
            file_counts={
                "reviewed": found.counts.settled(),
                "unreviewed": found.counts.unsettled(),
            },
        )
        assert summed == counted, filters
        assert counted["review_status"]["unreviewed"] < counted["as_imported"]["total_decisions"]


def test_a_published_release_summary_matches_its_records(reviewed, tmp_path):
    call_command(
        "publish_release",
        "--version",
        "1.0.0",
        "--include-unreviewed",
        "--output",
        str(tmp_path),
        stdout=io.StringIO(),
    )
    summary = json.loads((tmp_path / "1.0.0" / "summary.json").read_text())
    everything = Transcript.objects.all()
    expected = exporters.build_summary(
        everything,
        files={REVIEWED_FILE: everything.settled(), UNREVIEWED_FILE: everything.unsettled()},
    )
    assert summary == json.loads(exporters.dump_summary(expected))


@pytest.mark.parametrize("reviewed_only", [False, True])
def test_export_transcripts_summary_matches_its_records(reviewed, tmp_path, reviewed_only):
    task = Transcript.objects.values_list("task_id", flat=True).first()
    out, summary_file = tmp_path / "out.jsonl", tmp_path / "summary.json"
    args = ["--output", str(out), "--summary", str(summary_file), "--filter", f"task={task}"]
    call_command(
        "export_transcripts",
        *args,
        *(["--reviewed-only"] if reviewed_only else []),
        stdout=io.StringIO(),
    )
    selected = Transcript.objects.filter(task_id=task)
    written = selected.settled() if reviewed_only else selected
    expected = exporters.build_summary(selected, files={out.name: written})
    assert json.loads(summary_file.read_text()) == json.loads(exporters.dump_summary(expected))
