"""Base fixtures: users in each role, logged-in clients, and the Chromium plumbing for
Playwright browser tests (marked ``@pytest.mark.browser``)."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; Django refuses ORM calls from a
# thread with a running loop unless told it is fine (it is: the loop belongs to Playwright).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PASSWORD = "pw-test-123"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str:
    # The distribution's Chromium: `playwright install` cannot download browsers here.
    return shutil.which("chromium") or "/usr/bin/chromium"


def chromium_available() -> bool:
    path = chromium_path()
    return os.path.isfile(path) and os.access(path, os.X_OK)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# --- browser tests -------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip browser tests where there is no Chromium, except in CI where they must run."""
    if chromium_available() or in_ci():
        return
    skip = pytest.mark.skip(
        reason=f"Chromium not found at {chromium_path()}; install it "
        "(apt-get install chromium) to run browser tests. They always run when CI is set."
    )
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # In CI a missing browser is a failure with a readable message, not a launch traceback.
    if item.get_closest_marker("browser") and in_ci() and not chromium_available():
        pytest.fail(f"CI is set but Chromium is missing at {chromium_path()}", pytrace=False)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    # Extends pytest-playwright's own fixture, so --headed and --slowmo keep working.
    return {
        **browser_type_launch_args,
        "executable_path": chromium_path(),
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture
def artifacts_dir(pytestconfig: pytest.Config, delete_output_dir: None) -> Path:
    """test-artifacts/ (pytest-playwright's --output, set in pyproject), created.

    Depends on pytest-playwright's ``delete_output_dir``, which empties the folder once per
    session, so files written here survive until the next run."""
    path = Path(pytestconfig.getoption("--output"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser_login(page, live_server) -> Callable:
    """``login(username, password=PASSWORD)`` through the real login page; returns the page."""

    def login(username: str, password: str = PASSWORD):
        page.goto(live_server.url + "/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        with page.expect_navigation():
            page.press("#id_password", "Enter")
        return page

    return login


@pytest.fixture(autouse=True)
def _empty_cache():
    # Cached figures (audit.metrics.monitors.evaluate_cached) are keyed by the data's state,
    # and ids repeat across tests that roll back: each test starts with an empty cache.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The default PBKDF2 hasher is deliberately slow; tests log users in hundreds of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- users and clients ---------------------------------------------------------------------------


def _role_group(request: pytest.FixtureRequest, name: str):
    from django.contrib.auth.models import Group

    try:
        return Group.objects.get(name=name)
    except Group.DoesNotExist:
        # The data migration (audit/migrations/0002_groups.py) creates the groups, but a
        # transactional test (live_server, browser tests) flushes every table afterwards, so
        # later transactional tests find them gone. Only there is re-creating them right.
        if not _is_transactional(request):
            raise
        return Group.objects.create(name=name)


def _is_transactional(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("django_db")
    if marker and marker.kwargs.get("transaction"):
        return True
    return bool({"transactional_db", "live_server"} & set(request.fixturenames))


def _make_user(request, username: str, *, groups=(), is_staff: bool = False):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=is_staff
    )
    if groups:
        user.groups.add(*(_role_group(request, name) for name in groups))
    return user


@pytest.fixture
def auditor(db, request):
    return _make_user(request, "alice", groups=["auditor"])


@pytest.fixture
def auditor2(db, request):
    return _make_user(request, "bob", groups=["auditor"])


@pytest.fixture
def adjudicator(db, request):
    return _make_user(request, "carol", groups=["auditor", "adjudicator"])


@pytest.fixture
def staff_user(db, request):
    return _make_user(request, "sam", groups=["auditor", "adjudicator"], is_staff=True)


@pytest.fixture
def plain_user(db, request):
    return _make_user(request, "pat")


def _client_for(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def auditor_client(auditor):
    return _client_for(auditor)


@pytest.fixture
def auditor2_client(auditor2):
    return _client_for(auditor2)


@pytest.fixture
def adjudicator_client(adjudicator):
    return _client_for(adjudicator)


@pytest.fixture
def staff_client(staff_user):
    return _client_for(staff_user)


@pytest.fixture
def plain_client(plain_user):
    return _client_for(plain_user)
