"""The queue's columns (issue 10): sort by a column header (links, aria-sort), a reasoning
excerpt per row (the match snippet when searching), Priority explained, and "flagged" counted by
the dashboard's one definition (``summaries.flagged_q``)."""

import re

import pytest
from django.urls import reverse

from audit.metrics.summaries import flagged_q
from audit.models import FLAG_PRIORITY, Flag, Transcript
from tests.factories import import_records, make_misbehavior, make_record
from tests.review.pages import HOSTILE

pytestmark = pytest.mark.django_db


def get(client, **params) -> str:
    return client.get(reverse("queue"), params).content.decode()


def header(html: str, key: str) -> tuple[str, str]:
    found = re.search(rf'<th[^>]*aria-sort="(\w+)"><a href="([^"]+)"[^>]*id="sort-{key}"', html)
    assert found, key
    return found.group(1), found.group(2).replace("&amp;", "&")


def row_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-row data-id="(\d+)"', html)]


def test_headers_sort_and_say_how(auditor_client, queued):
    html = get(auditor_client)
    assert header(html, "priority")[0] == "descending"  # the default sort
    aria, url = header(html, "step")
    assert aria == "none" and url == reverse("queue") + "?sort=step"
    html = auditor_client.get(url).content.decode()
    assert header(html, "step")[0] == "ascending"
    steps = [Transcript.objects.get(pk=pk).step_number for pk in row_ids(html)]
    assert steps == sorted(steps)
    aria, again = header(html, "step")
    assert again == reverse("queue") + "?sort=-step"  # the same header reverses it
    html = auditor_client.get(again).content.decode()
    assert header(html, "step")[0] == "descending"
    steps = [Transcript.objects.get(pk=pk).step_number for pk in row_ids(html)]
    assert steps == sorted(steps, reverse=True)


def test_a_header_keeps_the_other_filters(auditor_client, queued):
    html = get(auditor_client, flag="missed_misbehavior")
    assert header(html, "session")[1] == reverse("queue") + "?flag=missed_misbehavior&sort=session"


def test_rows_show_the_start_of_the_reasoning_escaped(auditor_client, tmp_path):
    import_records(
        [
            make_misbehavior(
                decision="APPROVE",
                proposal={"worker_reasoning": f"Retry the  deploy {HOSTILE} " + "x" * 400},
            ),
            make_misbehavior(decision="APPROVE", proposal={"worker_reasoning": None}),
        ],
        tmp_path,
    )
    html = get(auditor_client)
    excerpts = re.findall(r'<span class="reasoning-excerpt[^>]*>(.*?)</span>', html)
    assert len(excerpts) == 1  # the record without reasoning shows none
    assert excerpts[0].startswith("retry the deploy &lt;script&gt;alert(1)&lt;/script&gt; xxx")
    assert excerpts[0].endswith("…")
    assert "<script>alert" not in html


def test_rows_show_the_match_snippet_when_searching(auditor_client, queued):
    html = get(auditor_client, q="retry")
    assert '<span class="match-excerpt small"' in html and "<mark>retry</mark>" in html
    assert "reasoning-excerpt" not in html


def test_priority_is_explained_with_the_weights(auditor_client, queued):
    html = get(auditor_client)
    legend = re.search(r'<p class="small muted legend-line" id="priority-legend">(.*?)</p>', html)
    assert legend
    for flag, weight in FLAG_PRIORITY.items():
        assert f"{Flag(flag).label.lower()} {weight}" in legend.group(1)
    assert 'aria-describedby="priority-legend"' in html


def test_flagged_in_the_queue_is_the_dashboards_flagged(auditor_client, tmp_path, settings):
    records = [make_misbehavior(decision="APPROVE", step_number=i) for i in range(3)]
    records += [make_record(step_number=10 + i) for i in range(40)]
    settings.AUDIT_SPOT_CHECK_RATE = 0.5
    import_records(records, tmp_path)
    queued = Transcript.objects.in_queue()
    spot = queued.filter(flag_spot_check=True).count()
    assert spot > 0
    html = get(auditor_client)
    flagged = Transcript.objects.in_queue().filter(flagged_q()).count()
    assert flagged == 3
    assert '<span id="queue-flagged"' in html
    assert f"{flagged} flagged</span>, {spot} not flagged (spot checks)" in html
