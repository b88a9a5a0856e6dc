"""Role checks in templates: ``{% if user|has_role:"auditor" %}`` (see audit.permissions), so
navigation only offers the screens a user may open."""

from typing import Any

from django import template

from audit import permissions

register = template.Library()


@register.filter
def has_role(user: Any, role: str) -> bool:
    return permissions.has_role(user, role)
