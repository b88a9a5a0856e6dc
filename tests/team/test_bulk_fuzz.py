"""No form body the bulk action or the save of a view is sent gives a server
error, for any role (the fuzz of tests/test_input_fuzz.py, on these two forms)."""

from urllib.parse import urlencode

import pytest
from django.urls import reverse
from hypothesis import example, given
from hypothesis import strategies as st

from tests import test_input_fuzz as fuzz
from tests.test_input_fuzz import FUZZ, bodies, query_strings, roles, send, text, values

# The fuzz's data and its logged-in clients, as its own tests use them.
world = fuzz.world
clients = fuzz.clients

pytestmark = pytest.mark.django_db


def _post(client, url: str, body: list[tuple[str, str]]) -> int:
    return send(
        client, "post", url, data=urlencode(body), content_type="application/x-www-form-urlencoded"
    )


def test_no_bulk_body_gives_a_server_error(world, clients):
    ids = [str(world.item.pk), str(world.disputed.pk)]
    fields = {
        "action": values(["set_k", "assign", "release", "mark", "clear"]),
        "target": values(["chosen", "all"]),
        "ids": values(ids),
        "k": values(["1", "2", "10", "11"]),
        "auditors": values(["1", "2", "3"]),
        "name": values(["fuzz", " ", "x" * 201]),
        "filters": query_strings(),
        "confirm": values(["on"]),
        "expected": values(["0", "5"]),
    }

    @FUZZ
    @example(role="staff", body=[("action", "set_k"), ("target", "all"), ("k", "2")])
    @example(role="staff", body=[("action", "assign"), ("target", "chosen"), ("ids", "9" * 20)])
    @given(role=roles, body=bodies(fields))
    def check(role: str, body: list[tuple[str, str]]) -> None:
        _post(clients[role], reverse("queue_bulk"), body)

    check()


def test_no_saved_view_body_gives_a_server_error(world, clients):
    fields = {
        "screen": values(["queue", "dashboard"]),
        "name": st.one_of(values(["mine", " ", "x" * 101]), text),
        "shared": values(["on"]),
        "query": query_strings(),
    }

    @FUZZ
    @example(role="auditor", body=[("screen", "dashboard"), ("name", "d"), ("query", "batch=%00")])
    @given(role=roles, body=bodies(fields))
    def check(role: str, body: list[tuple[str, str]]) -> None:
        _post(clients[role], reverse("saved_views"), body)

    check()
