"""The dashboard's filters: the queue's vocabulary (batch, task, session) plus a date range.

The date range is on the transcript's own ``timestamp`` (when the overseer decided), not on the
import date: the research question is "how did the overseer do in this period", and imports of
old runs would otherwise land in the wrong week. Days are read in the site's time zone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.db.models import Q
from django.utils import timezone

from audit.publish.selection import Selection
from audit.review.forms import FILTER_MAX_LENGTH, TOO_LONG


class DashboardFilterForm(forms.Form):
    batch = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Batch")
    task = forms.ChoiceField(required=False, label="Task")
    session = forms.CharField(
        required=False,
        max_length=FILTER_MAX_LENGTH,
        label="Session",
        error_messages={"max_length": TOO_LONG},
    )
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(
        self, *args: Any, batches: list[tuple[int, str]], tasks: list[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        batch, task = self.fields["batch"], self.fields["task"]
        assert isinstance(batch, forms.ChoiceField) and isinstance(task, forms.ChoiceField)
        batch.choices = [("", "All batches")] + [(pk, f"#{pk} {name}") for pk, name in batches]
        task.choices = [("", "All tasks")] + [(t, t or "(none)") for t in tasks]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def selection(self) -> Selection:
        """The valid batch, task and session filters, in the selection vocabulary."""
        if not self.is_bound:
            return Selection()
        self.is_valid()
        data = self.cleaned_data
        return Selection.of({key: [data.get(key)] for key in ("batch", "task", "session")})

    def dates(self) -> Q:
        """The valid date range as a Q (none: an empty Q); invalid dates are ignored (and shown
        as errors), as are invalid filters, so a stale bookmark still gives a dashboard."""
        if not self.is_bound:
            return Q()
        self.is_valid()  # fills cleaned_data with the fields that are valid
        data = self.cleaned_data
        cond = Q()
        if data.get("date_from") and "date_from" not in self.errors:
            cond &= Q(timestamp__gte=_epoch(data["date_from"]))
        if data.get("date_to") and "date_to" not in self.errors:
            cond &= Q(timestamp__lt=_epoch_after(data["date_to"]))
        return cond


def _epoch(day: dt.date) -> float:
    """Start of ``day`` in the current time zone, as the epoch seconds the timestamps use."""
    start = dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_current_timezone())
    return start.timestamp()


def _epoch_after(day: dt.date) -> float:
    """End of ``day``: the start of the next one; 9999-12-31 has no next day in Python, so it
    ends 24 hours after it starts."""
    if day == dt.date.max:
        return _epoch(day) + 24 * 3600
    return _epoch(day + dt.timedelta(days=1))
