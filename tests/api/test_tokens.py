"""Tokens: made by the command and the admin, shown once, kept hashed, revoked, and what the
API answers without one, with a bad one, or outside its scope."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.api import tokens
from audit.models import ApiToken
from tests.api.conftest import API, bearer, fixture_bytes, post_jsonl

pytestmark = pytest.mark.django_db


def test_command_prints_the_token_once_and_keeps_its_sha256(staff_user):
    out, err = StringIO(), StringIO()
    call_command(
        "create_api_token", "sam", "--scope", "ingest", "--scope", "read", stdout=out, stderr=err
    )
    secret = out.getvalue().strip()
    assert secret.startswith("audit_") and len(secret) > 40
    token = ApiToken.objects.get()
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {token.digest, token.prefix, token.name, token.scopes}
    assert secret.startswith(token.prefix)
    assert token.scope_list == ["ingest", "read"]
    assert "cannot be shown again" in err.getvalue()


def test_command_json_output(staff_user):
    out = StringIO()
    call_command("create_api_token", "sam", "--scope", "read", "--name", "ci", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["scopes"] == ["read"] and payload["name"] == "ci"
    assert tokens.find_token(payload["token"]) == ApiToken.objects.get()


def test_command_refuses_an_ingest_token_for_a_non_staff_user(auditor):
    with pytest.raises(CommandError, match="not staff"):
        call_command("create_api_token", "alice", "--scope", "ingest", stdout=StringIO())
    assert not ApiToken.objects.exists()


def test_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "nobody", "--scope", "read", stdout=StringIO())


def test_revoke_command_revokes_by_prefix_and_lists(staff_user, make_token, api):
    secret = make_token(staff_user, "read")
    other = make_token(staff_user, "read")
    prefix = ApiToken.objects.get(digest=tokens.digest(secret)).prefix
    out = StringIO()
    call_command("revoke_api_token", "sam", prefix + "…", stdout=out)
    assert "revoked 1 token" in out.getvalue()
    assert api.get(f"{API}/releases", headers=bearer(secret)).status_code == 401
    assert api.get(f"{API}/releases", headers=bearer(other)).status_code == 200
    listing = StringIO()
    call_command("revoke_api_token", "sam", stdout=listing)
    assert "revoked" in listing.getvalue() and "live" in listing.getvalue()
    with pytest.raises(CommandError, match="no token"):
        call_command("revoke_api_token", "sam", "audit_nope", stdout=StringIO())
    call_command("revoke_api_token", "sam", "--all", stdout=StringIO())
    assert not ApiToken.objects.live().exists()


# --- what the API answers ------------------------------------------------------------------------


def test_no_token_is_401_json(api):
    response = api.get(f"{API}/releases")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert "no API token" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer audit_not-a-token", "Bearer ", "Basic c2FtOnB3", "Token audit_x"]
)
def test_a_bad_token_is_401(api, header, read_token):
    response = api.get(f"{API}/releases", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["detail"]


def test_a_session_cookie_is_not_a_token(staff_client):
    """The API never falls back to the login session: no CSRF surface."""
    assert staff_client.get(f"{API}/releases").status_code == 401
    response = staff_client.post(
        f"{API}/transcripts", data=fixture_bytes(), content_type="application/x-ndjson"
    )
    assert response.status_code == 401
    assert response.json()["detail"].startswith("no API token")


def test_a_revoked_token_is_401(api, staff_user, read_token):
    tokens.revoke(ApiToken.objects.all())
    response = api.get(f"{API}/releases", headers=bearer(read_token))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_an_inactive_users_token_is_401(api, staff_user, read_token):
    staff_user.is_active = False
    staff_user.save()
    response = api.get(f"{API}/releases", headers=bearer(read_token))
    assert response.status_code == 401
    assert "inactive" in response.json()["detail"]


def test_a_token_outside_its_scope_is_403(api, read_token, ingest_token):
    response = post_jsonl(api, read_token, fixture_bytes())
    assert response.status_code == 403
    assert "needs 'ingest'" in response.json()["detail"]
    assert api.get(f"{API}/releases", headers=bearer(ingest_token)).status_code == 403


def test_an_ingest_token_stops_when_its_user_is_no_longer_staff(api, staff_user, ingest_token):
    staff_user.is_staff = False
    staff_user.save()
    response = post_jsonl(api, ingest_token, fixture_bytes())
    assert response.status_code == 403
    assert "not staff" in response.json()["detail"]


def test_last_used_is_stamped_at_most_once_a_minute(api, read_token, django_assert_num_queries):
    token = ApiToken.objects.get()
    assert token.last_used_at is None
    api.get(f"{API}/releases", headers=bearer(read_token))
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    api.get(f"{API}/releases", headers=bearer(read_token))
    token.refresh_from_db()
    assert token.last_used_at == first  # no write within the minute
    ApiToken.objects.update(last_used_at=timezone.now() - dt.timedelta(minutes=2))
    api.get(f"{API}/releases", headers=bearer(read_token))
    token.refresh_from_db()
    assert token.last_used_at > first


def test_the_openapi_document_is_served_without_login(api):
    response = api.get(f"{API}/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
    assert "/api/v1/transcripts" in document["paths"]
    assert "Content-Security-Policy" in response


def test_no_docs_page_is_served(api):
    assert api.get(f"{API}/docs").status_code == 404


# --- the admin -----------------------------------------------------------------------------------


def test_admin_makes_a_token_and_shows_it_once(staff_client, staff_user):
    response = staff_client.post(
        "/admin/audit/apitoken/add/", {"name": "gpu box", "scope_choices": ["ingest", "read"]}
    )
    assert response.status_code == 200, response.content[:2000]
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.scopes) == (staff_user, "gpu box", "ingest read")
    page = response.content.decode()
    secret = next(word for word in page.split("<code>")[1:] if word.startswith("audit_"))
    secret = secret.split("</code>")[0]
    assert tokens.find_token(secret) == token
    assert "no-store" in response["Cache-Control"]
    # The list and the token's page show only its prefix.
    listing = staff_client.get("/admin/audit/apitoken/").content.decode()
    detail = staff_client.get(f"/admin/audit/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in listing
    assert secret not in listing and secret not in detail


def test_admin_refuses_a_scope_the_user_may_not_hold(staff_user, django_user_model):
    from django.test import Client

    root = django_user_model.objects.create_superuser("root", password="x")
    client = Client()
    client.force_login(root)
    plain = django_user_model.objects.create_user("plain")
    response = client.post(
        "/admin/audit/apitoken/add/", {"user": plain.pk, "scope_choices": ["ingest"]}
    )
    assert response.status_code == 200
    assert "not staff" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_admin_revoke_action(staff_client, staff_user, read_token, api):
    token = ApiToken.objects.get()
    response = staff_client.post(
        "/admin/audit/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.is_revoked
    assert api.get(f"{API}/releases", headers=bearer(read_token)).status_code == 401
