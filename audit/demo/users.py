"""The demo users, so that ``make run`` (``manage.py setup_demo``) can be tried at once.

One user per useful combination of roles, all with the password ``demo``: a staff member who
also audits and adjudicates, a plain auditor, and an auditor who adjudicates, so blind review,
adjudication and the admin can each be seen from the side they are meant for. Never for a
production database: the password is in the README.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from audit.permissions import ADJUDICATOR, AUDITOR

DEMO_PASSWORD = "demo"


@dataclass(frozen=True)
class DemoUser:
    username: str
    admin: bool  # is_staff and is_superuser
    groups: tuple[str, ...]
    label: str  # what the role is, for the summary setup_demo prints


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser(
        "demo", admin=True, groups=(AUDITOR, ADJUDICATOR), label="staff, auditor, adjudicator"
    ),
    DemoUser("auditor2", admin=False, groups=(AUDITOR,), label="auditor"),
    DemoUser(
        "adjudicator", admin=False, groups=(AUDITOR, ADJUDICATOR), label="auditor, adjudicator"
    ),
)


@transaction.atomic
def ensure_users() -> None:
    """Create the demo users, or reset the password, flags and groups of those that exist.

    Reset, not just create: a rerun restores a demo user someone changed (a password, a role),
    so the logins the README and ``setup_demo`` print keep working."""
    user_model = get_user_model()
    # The groups come from a data migration; get_or_create keeps this working regardless.
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in (AUDITOR, ADJUDICATOR)}
    for demo in DEMO_USERS:
        user, _ = user_model.objects.get_or_create(username=demo.username)
        user.set_password(DEMO_PASSWORD)
        user.is_active = True
        user.is_staff = demo.admin
        user.is_superuser = demo.admin
        user.save()
        user.groups.set([groups[name] for name in demo.groups])
