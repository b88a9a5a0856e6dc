"""Flag names in templates: ``{{ value|flag_label }}`` gives a flag value (as in
``Transcript.flags``) the label the queue shows for it, from the one ``Flag`` definition."""

from django import template

from audit.models import Flag

register = template.Library()


@register.filter
def flag_label(value: str) -> str:
    """A flag's label, e.g. "Over-block" for "over_block"; anything else is shown as it is."""
    try:
        return str(Flag(value).label)
    except ValueError:
        return str(value)
