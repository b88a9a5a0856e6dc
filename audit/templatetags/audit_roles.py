"""Role checks in templates: ``{% if user|has_role:"auditor" %}`` (see audit.permissions), so
navigation only offers the screens a user may open."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import template

from audit import permissions

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

register = template.Library()


@register.filter
def has_role(user: User | AnonymousUser, role: str) -> bool:
    return permissions.has_role(user, role)
