"""The setup works end to end: production settings pass Django's deploy checks, and a real
browser can log in under the strict CSP."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

BASE_DIR = Path(__file__).resolve().parent.parent


def production_env(tmp_path):
    env = {
        **os.environ,
        "AUDIT_DEBUG": "false",
        "AUDIT_SECRET_KEY": secrets.token_urlsafe(60),
        "AUDIT_ALLOWED_HOSTS": "audit.example.org",
        "AUDIT_PSEUDONYM_KEY": secrets.token_urlsafe(40),
        # Keep the default SQLite file and folders out of the checkout.
        "AUDIT_VAR_DIR": str(tmp_path),
    }
    # conftest sets DJANGO_ALLOW_ASYNC_UNSAFE for Playwright; production never has it.
    for name in ("DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


def test_check_deploy_has_no_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


SERVE_STATIC = """
import django, sys
django.setup()
from django.test import Client
from django.templatetags.static import static
url = static("audit/app.css")
response = Client().get(url, secure=True, headers={"host": "audit.example.org"})
body = b"".join(response.streaming_content) if response.streaming else response.content
print(url, response.status_code, len(body))
sys.exit(0 if response.status_code == 200 and b"Transcript audit" in body else 1)
"""


def test_production_serves_hashed_static_files_after_collectstatic(tmp_path):
    env = {**production_env(tmp_path), "DJANGO_SETTINGS_MODULE": "audit.settings"}
    for command in (
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        [sys.executable, "-c", SERVE_STATIC],
    ):
        result = subprocess.run(
            command, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert "/static/audit/app." in result.stdout  # the manifest's hashed name


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_login_in_chromium(page, live_server, auditor, browser_login, artifacts_dir):
    # Chromium logs every blocked script, style or connection to the console.
    csp_messages = []

    def collect_csp(msg):
        if "Content Security Policy" in msg.text:
            csp_messages.append(msg.text)

    page.on("console", collect_csp)

    response = page.goto(live_server.url + "/login/")
    assert response is not None and response.status == 200
    expect(page.locator("#id_username")).to_be_visible()
    page.screenshot(path=artifacts_dir / "login.png", full_page=True)

    browser_login(auditor.username)

    expect(page).not_to_have_url(re.compile(r"/login/"))
    expect(page.locator("header")).to_contain_text(auditor.username)
    # Let deferred scripts and styles finish so late violations are logged too.
    page.wait_for_load_state("networkidle")
    assert csp_messages == []
