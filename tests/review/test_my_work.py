"""'My work' (issue 10): queue filters for my reviewed, my unsure, my skipped and my reserved
items, from my own work only; #id finds an item wherever it is; the item page says which filter
Next works through and how far; Next that runs out keeps the filter."""

import re
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from audit.models import Lease, Status
from audit.review.views import FILTER_KEY
from tests.factories import confirm, fresh, unsure
from tests.review.pages import HTMX

pytestmark = pytest.mark.django_db


def row_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-row data-id="(\d+)"', html)]


def queue(client, **params) -> str:
    response = client.get(reverse("queue"), params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def option_count(html: str, select: str, value: str) -> int:
    found = re.search(
        rf'<select name="{select}".*?<option value="{re.escape(value)}" data-count="(\d+)"',
        html,
        re.S,
    )
    assert found, (select, value)
    return int(found.group(1))


def test_my_unsure_lists_my_unsure_items_only(auditor_client, auditor, auditor2, queued):
    unsure(queued[0], auditor)
    unsure(queued[1], auditor2)  # someone else's unsure is not mine
    html = queue(auditor_client, mine="unsure")
    assert row_ids(html) == [queued[0].pk]
    assert option_count(queue(auditor_client), "mine", "unsure") == 1


def test_reviewed_by_me_includes_settled_items_and_nothing_of_others(
    auditor_client, auditor2_client, auditor, auditor2, queued
):
    confirm(queued[0], auditor)
    confirm(queued[1], auditor2)
    assert fresh(queued[0]).status == Status.CONFIRMED  # settled: "open" would hide it
    assert row_ids(queue(auditor_client, mine="reviewed")) == [queued[0].pk]
    assert row_ids(queue(auditor2_client, mine="reviewed")) == [queued[1].pk]
    # Under My work the status and scope default to any and all.
    html = queue(auditor_client, mine="reviewed")
    assert re.search(r'<option value="any"[^>]*selected', html)


def test_skipped_by_me_lists_what_i_skipped_until_i_decide_it(auditor_client, queued):
    auditor_client.post(reverse("skip_item", args=[queued[1].pk]))
    assert row_ids(queue(auditor_client, mine="skipped")) == [queued[1].pk]
    item = fresh(queued[1])
    auditor_client.post(
        reverse("submit_review", args=[item.pk]),
        {"verdict": "confirm", "based_on_version": item.version},
    )
    assert row_ids(queue(auditor_client, mine="skipped")) == []


def test_reserved_by_me_lists_the_items_i_hold(auditor_client, auditor2_client, queued):
    auditor_client.get(reverse("item", args=[queued[2].pk]))  # opening reserves it
    auditor2_client.get(reverse("item", args=[queued[0].pk]))
    assert Lease.objects.filter(transcript=queued[2], auditor__username="alice").exists()
    assert row_ids(queue(auditor_client, mine="held")) == [queued[2].pk]


def test_an_unknown_my_work_value_is_ignored(auditor_client, queued):
    assert sorted(row_ids(queue(auditor_client, mine="theirs"))) == sorted(t.pk for t in queued)


def test_searching_an_id_finds_the_item_wherever_it_is(auditor_client, auditor, steps, queued):
    unqueued = next(t for t in steps if not t.in_queue)
    confirm(queued[0], auditor)  # settled: not in the default (open) queue
    assert row_ids(queue(auditor_client, q=f"#{unqueued.pk}")) == [unqueued.pk]
    assert row_ids(queue(auditor_client, q=f"#{queued[0].pk}")) == [queued[0].pk]
    # from the search box, as the form sends it (every field, most of them empty)
    html = auditor_client.get(
        reverse("queue"),
        {"q": f"#{unqueued.pk}", "flag": "", "status": "", "scope": ""},
        follow=True,
    ).content.decode()
    assert row_ids(html) == [unqueued.pk]


# --- Next and progress ----------------------------------------------------------------------------


def start(client, **filters) -> object:
    return client.post(reverse("next_item"), {"filters": urlencode(filters)})


def test_next_walks_through_my_unsure_items_in_queue_order(auditor_client, auditor, queued):
    for t in queued:
        unsure(t, auditor)
    order = row_ids(queue(auditor_client, mine="unsure"))
    assert sorted(order) == sorted(t.pk for t in queued)
    response = start(auditor_client, mine="unsure")
    assert response["Location"] == reverse("item", args=[order[0]])
    html = auditor_client.get(response["Location"]).content.decode()
    assert 'Next works through <b id="next-filter">My work: My unsure</b>' in html
    assert '<span id="progress-position">1 of 3</span> in this filter' in html
    response = auditor_client.post(reverse("next_item"), {"from": order[0]})
    assert response["Location"] == reverse("item", args=[order[1]])
    html = auditor_client.get(response["Location"]).content.decode()
    assert '<span id="progress-position">2 of 3</span>' in html
    auditor_client.post(reverse("next_item"), {"from": order[1]})
    response = auditor_client.post(reverse("next_item"), {"from": order[2]})
    # Run out: back to the queue under the same filter, saying so.
    assert response["Location"] == reverse("queue") + "?mine=unsure"
    html = auditor_client.get(response["Location"]).content.decode()
    assert "Nothing left for you under My work: My unsure" in html
    assert 'id="reset-filters"' in html
    assert auditor_client.session[FILTER_KEY] == "mine=unsure"


def test_next_that_runs_out_under_a_flag_keeps_the_flag(auditor_client, queued):
    response = start(auditor_client, flag="over_block")  # none of these items is one
    assert response["Location"] == reverse("queue") + "?flag=over_block"
    html = auditor_client.get(response["Location"]).content.decode()
    assert "Nothing left for you under Flag: Over-block" in html


def test_the_item_page_says_what_is_left_and_my_count_today(
    auditor_client, auditor, auditor2, queued
):
    confirm(queued[0], auditor)
    unsure(queued[1], auditor2)  # another auditor's work changes nothing of mine
    html = auditor_client.get(reverse("item", args=[queued[2].pk])).content.decode()
    assert 'Next works through <b id="next-filter">the whole queue</b>' in html
    assert '<span id="progress-left">2</span> left for you' in html  # open, not mine
    assert '<span id="progress-today">1</span> review today' in html


def test_progress_is_in_the_htmx_swap_after_a_verdict(auditor_client, queued):
    start(auditor_client)
    item = fresh(queued[0])
    html = auditor_client.post(
        reverse("submit_review", args=[item.pk]),
        {"verdict": "confirm", "based_on_version": item.version},
        **HTMX,
    ).content.decode()
    assert '<span id="progress-today">1</span> review today' in html
    assert '<span id="progress-left">2</span> left for you' in html


def test_the_empty_misbehavior_type_is_never_preselected_and_really_filters(auditor_client, steps):
    html = queue(auditor_client, scope="all")
    select = re.search(r'<select name="mbtype".*?</select>', html, re.S).group(0)
    assert re.search(r'<option value="">Any</option>', select)
    assert "selected" not in select
    empty = option_count(html, "mbtype", "(empty)")
    assert empty == sum(1 for t in steps if t.misbehavior_type == "")
    ids = row_ids(queue(auditor_client, scope="all", mbtype="(empty)"))
    assert sorted(ids) == sorted(t.pk for t in steps if t.misbehavior_type == "")
    html = queue(auditor_client, scope="all", mbtype="(empty)")
    assert re.search(r'<option value="\(empty\)" data-count="\d+" selected>', html)
