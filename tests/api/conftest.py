"""Fixtures of the API tests: tokens of each kind, and a client that sends them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from audit.api.tokens import issue_token
from tests.factories import DATA_DIR

API = "/api/v1"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def make_token() -> Callable[..., str]:
    """``make_token(user, "ingest", "read", name="")``: a new token's secret."""

    def make(user: Any, *scopes: str, name: str = "") -> str:
        return issue_token(user, scopes=scopes or ("read",), name=name).secret

    return make


@pytest.fixture
def ingest_token(staff_user, make_token) -> str:
    return make_token(staff_user, "ingest")


@pytest.fixture
def read_token(staff_user, make_token) -> str:
    return make_token(staff_user, "read")


@pytest.fixture
def api() -> Client:
    """A client without a session: the API's only credentials are tokens."""
    return Client()


def post_jsonl(client: Client, token: str, body: bytes, **params: Any) -> Any:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return client.post(
        f"{API}/transcripts" + (f"?{query}" if query else ""),
        data=body,
        content_type="application/x-ndjson",
        headers=bearer(token),
    )


def fixture_bytes(name: str = "rule_s0") -> bytes:
    return (DATA_DIR / f"{name}.jsonl").read_bytes()


def snapshot() -> list[dict]:
    """Every stored column of every transcript but the row's and its batch's own, in order."""
    from audit.models import Transcript

    leave_out = {"id", "batch", "updated_at"}
    names = [
        field.attname for field in Transcript._meta.concrete_fields if field.name not in leave_out
    ]
    return list(Transcript.objects.order_by("fingerprint").values(*names))
