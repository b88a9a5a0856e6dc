"""Login throttling (issue 15, D14): django-axes counts failed logins per username and address;
at AUDIT_LOGIN_FAILURE_LIMIT the pair is locked for AUDIT_LOGIN_LOCKOUT_MINUTES after its last
failure, with a page that says so; a successful login resets the count (README, Configuration).
"""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse

from audit.permissions import client_address
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = reverse("login")
LOCKED = "Too many failed logins"


def attempt(client: Client, username: str, password: str, *, address: str = "10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def fail(client: Client, username: str, times: int, **kwargs):
    return [attempt(client, username, "wrong", **kwargs) for _ in range(times)]


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_defaults_are_ten_failures_and_fifteen_minutes():
    assert settings.AXES_FAILURE_LIMIT == 10
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_the_limit_th_failure_locks_the_username_from_that_address(auditor):
    client = Client()
    responses = fail(client, auditor.username, settings.AXES_FAILURE_LIMIT)
    assert {r.status_code for r in responses[:-1]} == {200}
    assert "didn't match" in responses[0].content.decode()
    locked = responses[-1]
    assert locked.status_code == 429
    html = locked.content.decode()
    assert LOCKED in html and "15 minutes" in html and 'id="login-locked"' in html
    # The right password does not get in while the lock lasts.
    response = attempt(client, auditor.username, PASSWORD)
    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert not logged_in(client)


def test_the_lock_is_per_username_and_address(auditor, auditor2):
    fail(Client(), auditor.username, settings.AXES_FAILURE_LIMIT)
    other_user = Client()
    attempt(other_user, auditor2.username, PASSWORD)
    assert logged_in(other_user)
    other_address = Client()
    attempt(other_address, auditor.username, PASSWORD, address="10.0.0.2")
    assert logged_in(other_address)


def test_a_successful_login_resets_the_count(auditor):
    client = Client()
    fail(client, auditor.username, settings.AXES_FAILURE_LIMIT - 1)
    attempt(client, auditor.username, PASSWORD)
    assert logged_in(client)
    client = Client()
    responses = fail(client, auditor.username, settings.AXES_FAILURE_LIMIT - 1)
    assert {r.status_code for r in responses} == {200}
    attempt(client, auditor.username, PASSWORD)
    assert logged_in(client)


def test_the_lock_ends_after_the_cool_off_and_tries_meanwhile_do_not_extend_it(auditor):
    client = Client()
    fail(client, auditor.username, settings.AXES_FAILURE_LIMIT + 3)
    # Move the failures back past the cool-off, as if 15 minutes had gone by.
    earlier = settings.AXES_COOLOFF_TIME + dt.timedelta(seconds=1)
    for row in AccessAttempt.objects.all():
        row.attempt_time -= earlier
        row.save(update_fields=["attempt_time"])
    attempt(client, auditor.username, PASSWORD)
    assert logged_in(client)


def test_the_admin_login_is_throttled_too(staff_user):
    client = Client()
    url = reverse("admin:login")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(
            url, {"username": staff_user.username, "password": "wrong"}, REMOTE_ADDR="10.0.0.3"
        )
    assert response.status_code == 429


@pytest.mark.parametrize("url", [LOGIN, reverse("admin:login")])
def test_a_username_longer_than_any_is_a_failed_login_and_is_throttled(url):
    # Django's login form does not check the length; axes' column holds 255 characters, and
    # PostgreSQL refused the overflow with a server error (found by tests/test_input_fuzz.py).
    client = Client()
    name = "x" * 300 + "é"
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(url, {"username": name, "password": "wrong"}, REMOTE_ADDR="10.0.0.4")
    assert response.status_code == 429
    [attempt] = AccessAttempt.objects.all()
    assert attempt.username == "x" * 150
    assert attempt.failures_since_start == settings.AXES_FAILURE_LIMIT


def test_test_client_logins_without_a_request_still_work(auditor):
    # authenticate() without a request (Client.login, a shell) has no address to count by.
    assert Client().login(username=auditor.username, password=PASSWORD)
    assert not Client().login(username=auditor.username, password="wrong")


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.9", "10.0.0.1"),
        (1, "198.51.100.1, 203.0.113.9", "203.0.113.9"),
        (2, "198.51.100.1, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
        (1, "", "10.0.0.1"),
    ],
)
def test_the_client_address_behind_proxies(rf, settings, proxies, forwarded, expected):
    settings.AUDIT_PROXY_COUNT = proxies
    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


SHOW = "import django; django.setup(); from django.conf import settings as s; " + (
    "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.AUDIT_PROXY_COUNT)"
)


def run_settings(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "audit.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_limits_come_from_the_environment_and_junk_stops_start_up():
    result = run_settings(
        AUDIT_LOGIN_FAILURE_LIMIT="3", AUDIT_LOGIN_LOCKOUT_MINUTES="60", AUDIT_PROXY_COUNT="1"
    )
    assert result.stdout.split() == ["3", "3600.0", "1"], result.stderr
    result = run_settings(AUDIT_LOGIN_FAILURE_LIMIT="0")
    assert result.returncode != 0
    assert "AUDIT_LOGIN_FAILURE_LIMIT must be at least 1" in result.stderr
    result = run_settings(AUDIT_LOGIN_LOCKOUT_MINUTES="soon")
    assert "AUDIT_LOGIN_LOCKOUT_MINUTES must be an integer" in result.stderr
