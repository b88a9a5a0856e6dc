"""Pinned query counts of the queue page's variants: the same at 10 rows and at 300, at the first
page and deep in the selection. Three of them are the session, the user and their groups."""

import re

import pytest
from django.db import connection
from django.urls import reverse

from audit import search
from tests.factories import import_records
from tests.review.pages import HTMX, episode

pytestmark = pytest.mark.django_db

# page + flag counts + status counts + "My work" counts (one per option with rows of the
# viewer's own to count: reviewed, unsure, reserved; no skips here) + six facets (the total is
# the status facet's count)
PAGE = 3 + 1 + 1 + 1 + 3 + 6
# Under the priority sort (the default without a ranked search) the page's ids are read one
# open status at a time (unreviewed, in progress, disputed), each an index range, then merged:
# three queries more, the same at any size.
BY_STATUS = 3
PG = int(connection.vendor == "postgresql")
# the match, once: create the temporary table if needed, empty it, fill it, score it, read
# back its ids (a small match); on PostgreSQL also drop the table's index before the fill and
# build it after, for a match that is scored or read by the queries (search._CREATE_INDEX)
SEARCH = 5 + 2 * PG
# a small match not scored (another sort): no scores, and no index to build
UNSCORED = SEARCH - 1 - PG
# A large match (not read back) is rolled up once for the facet counts (queue.count_match):
# create its temporary table if needed, empty it, fill it; on PostgreSQL in a transaction of
# its own that sets work_mem for it (here a savepoint in the test's transaction, and its
# release).
MATCH_COUNT = 3 + 3 * PG


def deep_url(client, params: dict) -> str:
    """The URL of the fourth page, reached through the pages' own links."""
    url = reverse("queue") + "?" + "&".join(f"{k}={v}" for k, v in params.items())
    for _ in range(3):
        html = client.get(url).content.decode()
        url = re.search(r'id="page-next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    return url


@pytest.mark.parametrize(
    ("params", "expected", "htmx"),
    [
        ({}, PAGE + BY_STATUS, False),
        ({"flag": "missed_misbehavior", "worker": "worker_db"}, PAGE + BY_STATUS, False),
        ({"q": "retry"}, PAGE + SEARCH, False),
        ({"q": "retry", "sort": "step"}, PAGE + UNSCORED, False),  # nothing to score
        # An id is no full-text match; it widens to every status and transcript: no index
        # range per status to read.
        ({"q": "#1"}, PAGE, False),
        ({}, PAGE + BY_STATUS, True),
        ({"q": "retry fix"}, PAGE + SEARCH, True),
        # Every transcript: one index range per open status, in the queue and out of it.
        ({"scope": "all"}, PAGE + 2 * BY_STATUS, False),
    ],
    ids=[
        "default",
        "filtered",
        "search",
        "search-sorted",
        "id",
        "fragment",
        "search-fragment",
        "all",
    ],
)
def test_queue_query_count_does_not_grow(
    auditor_client, django_assert_num_queries, tmp_path, params, expected, htmx
):
    import_records(episode(20, session="small"), tmp_path, name="a.jsonl")
    auditor_client.get(reverse("queue"))  # warm the session
    extra = HTMX if htmx else {}
    with django_assert_num_queries(expected):
        assert auditor_client.get(reverse("queue"), params, **extra).status_code == 200
    import_records(episode(600, session="big"), tmp_path, name="b.jsonl")
    with django_assert_num_queries(expected):
        assert auditor_client.get(reverse("queue"), params, **extra).status_code == 200


@pytest.mark.parametrize("params", [{}, {"sort": "-timestamp"}, {"q": "retry"}])
def test_a_deep_keyset_page_costs_the_queries_of_the_first(
    auditor_client, django_assert_num_queries, tmp_path, params
):
    import_records(episode(600, session="big"), tmp_path)  # 300 queued: six pages
    url = deep_url(auditor_client, params)
    expected = PAGE + (SEARCH if "q" in params else 0) + (BY_STATUS if not params else 0)
    with django_assert_num_queries(expected):
        response = auditor_client.get(url)
    assert response.status_code == 200
    assert 'id="page-prev"' in response.content.decode()
    with django_assert_num_queries(expected):
        assert auditor_client.get(url, **HTMX).status_code == 200


def test_a_large_match_is_not_read_back(
    auditor_client, django_assert_num_queries, tmp_path, monkeypatch
):
    import_records(episode(40, session="s"), tmp_path)
    monkeypatch.setattr(search, "SMALL_MATCH", 5)
    auditor_client.get(reverse("queue"))
    with django_assert_num_queries(PAGE + SEARCH - 1 + MATCH_COUNT):
        auditor_client.get(reverse("queue"), {"q": "retry"})
