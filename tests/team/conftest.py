"""Fixtures of the team tests: users with roles the shared fixtures (tests/conftest.py) lack."""

import pytest

from tests.conftest import _make_user


@pytest.fixture
def lead(db, request):
    """Staff without the auditor role: reviews nothing."""
    return _make_user(request, "lena", is_staff=True)


@pytest.fixture
def pure_adjudicator(db, request):
    """An adjudicator without the auditor role."""
    return _make_user(request, "ada", groups=["adjudicator"])
