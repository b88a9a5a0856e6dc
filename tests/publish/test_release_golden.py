"""A release cut from fixed data is byte for byte the one committed in tests/data/golden/<db>/.

The files were first written before the app was reorganised into packages (issue 9), which had
to publish them unchanged; they were rewritten once since, on purpose, for the release format of
issue 8 (the malt block, summary.json's bases, the card and croissant.json that load in the
reference clients, null correct decisions flagged as missing fields). Reviews, users, clock and
pseudonym key are all fixed, so every file, ``manifest.json`` and ``SHA256SUMS`` included, is
reproducible on both databases.

To rewrite the expected files after an intended change of the release format, run
``AUDIT_WRITE_GOLDEN=1 make test ARGS=tests/publish/test_release_golden.py`` and commit the
diff with the reason; the test then fails until that variable is unset again.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection

from audit.models import Transcript
from tests.factories import DATA_DIR, FIXTURES, import_fixture

# One copy per database: PostgreSQL's jsonb stores a review's ``before`` with its keys in its
# own order (shorter keys first), SQLite keeps them as written, and the export shows them so.
GOLDEN = DATA_DIR / "golden"
CLOCK = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def _user(pk: int, name: str, *groups: str):
    user = get_user_model().objects.create_user(pk=pk, username=name, password="x")
    user.groups.add(*(Group.objects.get_or_create(name=g)[0] for g in groups))
    return user


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _review_fixed_data() -> None:
    """Confirm, relabel, mark unsure, dispute and adjudicate a fixed choice of items, through
    the public workflow functions (looked up by name so the test outlives the move)."""
    from tests.factories import adjudicate, confirm, relabel, unsure

    alice = _user(9001, "golden-alice", "auditor")
    bob = _user(9002, "golden-bob", "auditor")
    carol = _user(9003, "golden-carol", "auditor", "adjudicator")
    items = list(Transcript.objects.order_by("session_id", "step_number", "fingerprint"))
    complete = [
        t for t in items if t.correct_decision and (t.misbehavior_type or not t.is_misbehavior)
    ]
    for t in complete[:12]:
        confirm(t, alice)
    for t in items[200:206]:
        relabel(
            t,
            bob,
            is_misbehavior=True,
            misbehavior_type="reward_hacking",
            correct_decision="BLOCK",
            rationale='Games the reward <b>&amp;</b> "quotes".',
        )
    for t in items[300:303]:
        unsure(t, alice, rationale="Cannot tell from the context.")
    disputed = complete[-1]
    Transcript.objects.filter(pk=disputed.pk).update(required_reviews=2)
    confirm(disputed, alice)
    flipped = not disputed.is_misbehavior
    relabel(
        disputed,
        bob,
        is_misbehavior=flipped,
        correct_decision="BLOCK" if flipped else "APPROVE",
        rationale="The other way round.",
    )
    adjudicate(
        disputed,
        carol,
        is_misbehavior=flipped,
        misbehavior_type="hallucination" if flipped else "",
        correct_decision="BLOCK" if flipped else "APPROVE",
        rationale="Bob is right.",
    )


@pytest.mark.django_db
def test_release_from_fixed_data_matches_the_committed_files(tmp_path, settings):
    golden = GOLDEN / connection.vendor / "1.0.0"
    settings.AUDIT_PSEUDONYM_KEY = "golden-release-key"
    with mock.patch("django.utils.timezone.now", return_value=CLOCK):
        for name in FIXTURES:
            import_fixture(name)
        _review_fixed_data()
        call_command(
            "publish_release",
            "--version",
            "1.0.0",
            "--include-unreviewed",
            "--output",
            str(tmp_path),
            stdout=io.StringIO(),
        )
    published = _files(tmp_path / "1.0.0")
    if os.environ.get("AUDIT_WRITE_GOLDEN"):
        for name, content in published.items():
            target = golden / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        pytest.fail(f"wrote {len(published)} expected files to {golden}; unset AUDIT_WRITE_GOLDEN")
    expected = _files(golden)
    assert sorted(published) == sorted(expected)
    differing = [name for name in expected if published[name] != expected[name]]
    assert not differing, f"these files differ from the committed release: {differing}"
