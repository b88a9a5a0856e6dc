"""The demo users: created with their roles, and restored by a second run."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit.demo.users import DEMO_PASSWORD, DEMO_USERS, ensure_users


@pytest.mark.django_db
def test_ensure_users_creates_each_demo_user_with_its_roles():
    ensure_users()
    for demo in DEMO_USERS:
        user = get_user_model().objects.get(username=demo.username)
        assert set(user.groups.values_list("name", flat=True)) == set(demo.groups)
        assert (user.is_staff, user.is_superuser) == (demo.admin, demo.admin)
        assert Client().login(username=demo.username, password=DEMO_PASSWORD)


@pytest.mark.django_db
def test_ensure_users_again_restores_a_changed_demo_user():
    ensure_users()
    user = get_user_model().objects.get(username="auditor2")
    user.set_password("changed")
    user.is_active = False
    user.is_staff = True
    user.save()
    user.groups.clear()
    ensure_users()
    user.refresh_from_db()
    assert user.is_active and not user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == ["auditor"]
    assert Client().login(username="auditor2", password=DEMO_PASSWORD)
    assert (
        get_user_model().objects.filter(username__in=[d.username for d in DEMO_USERS]).count() == 3
    )
