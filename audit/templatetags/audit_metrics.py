"""Number formatting for the dashboard: percentages and coefficients, with a dash for None
(an undefined figure is shown as undefined, never as 0)."""

from typing import Any

from django import template

register = template.Library()

MISSING = "–"


@register.filter
def pct(value: Any, digits: int = 1) -> str:
    """0.7333 -> "73.3%"."""
    if value is None or value == "":
        return MISSING
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def coef(value: Any) -> str:
    """A kappa or alpha with three decimals."""
    if value is None or value == "":
        return MISSING
    return f"{float(value):.3f}"


@register.filter
def share(part: Any, whole: Any) -> str:
    """part / whole as a percentage."""
    try:
        return pct(int(part) / int(whole)) if int(whole) else MISSING
    except (TypeError, ValueError):
        return MISSING


@register.filter
def signed(value: Any) -> str:
    """A difference with its sign, blank when there is none."""
    if value is None or value == 0:
        return ""
    return f"+{value}" if value > 0 else str(value)


@register.filter
def basename(path: Any) -> str:
    """The file name of a stored path (batches keep the path they were imported from)."""
    return str(path or "").replace("\\", "/").rsplit("/", 1)[-1]
