"""Bulk actions in the queue, for those who oversee it (``queue.oversees_queue``: adjudicators
and staff): set K, assign (staff), release leases, mark or clear "needs discussion".

What an action acts on is one of two things, never a mix:

- **the rows chosen** (ticked): exactly those ids, whether or not they still match the queue's
  filters when the action runs (the viewer saw and chose each one; an item that changed under
  them is still the item they chose). Ids are checked (whole numbers, valid row ids, at most
  ``MAX_CHOSEN``); ids of no item are ignored and counted.
- **all matching**: the queue's filters, sent as the queue's own query string and evaluated
  again on the server when the action runs, through the viewer's own filter form; never a
  list of ids from the page. It first asks for a confirmation that says how many items match.

Every action works on the selection as a subquery or in chunks (``workflow``,
``leases.release_leases``, ``discussion.mark_needs_discussion``, ``assignments.assign``),
never a query per row of the selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from audit.models import Transcript, TranscriptQuerySet, parse_id
from audit.permissions import is_staff
from audit.review import queue as queues
from audit.review.leases import release_leases
from audit.review.workflow import set_required_reviews
from audit.team.assignments import MAX_K, NAME_MAX_LENGTH, assign
from audit.team.discussion import mark_needs_discussion

if TYPE_CHECKING:
    from django.contrib.auth.models import User

SET_K = "set_k"
ASSIGN = "assign"
RELEASE = "release"
MARK = "mark"
CLEAR = "clear"
ACTIONS = {
    SET_K: "Set K (reviews needed)",
    ASSIGN: "Assign to auditors",
    RELEASE: "Release leases",
    MARK: "Mark “needs discussion”",
    CLEAR: "Clear “needs discussion”",
}
# The actions that need K.
NEEDS_K = (SET_K, ASSIGN)
# Most ids one explicit choice may hold (a queue page shows 50; "all matching" has no limit).
# Below Django's DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000), so this error, not a bare 400, says it.
MAX_CHOSEN = 500
CHOSEN = "chosen"
ALL = "all"


class BulkError(ValueError):
    """Input a bulk action refuses; the message names the problem, for the person."""


def actions_for(viewer: User) -> dict[str, str]:
    """The actions the viewer may take: every one for staff; adjudicators all but assigning
    (handing work to named people is staff's, as on the assignments page)."""
    if not queues.oversees_queue(viewer):
        return {}
    return {key: label for key, label in ACTIONS.items() if key != ASSIGN or is_staff(viewer)}


def parse_ids(values: Sequence[str]) -> list[int]:
    """The chosen ids, in order, without repeats; BulkError names the first value that is not
    a row id, or says there are too many."""
    ids: list[int] = []
    seen: set[int] = set()
    for value in values:
        pk = parse_id(str(value).strip())
        if pk is None:
            shown = str(value)[:30]
            raise BulkError(f"{shown!r} is not an item id (a whole number from 1 up).")
        if pk not in seen:
            seen.add(pk)
            ids.append(pk)
    if len(ids) > MAX_CHOSEN:
        raise BulkError(
            f"At most {MAX_CHOSEN:,} rows can be chosen at once ({len(ids):,} were); "
            "use “all matching” for more."
        )
    return ids


@dataclass(frozen=True)
class Target:
    """What an action acts on: the items and how many, in words."""

    transcripts: TranscriptQuerySet
    count: int
    kind: str
    # Chosen ids that are no item (deleted since, or never one): ignored.
    unknown: int = 0
    # The filters, in words ("all matching" only).
    description: str = ""


def chosen(ids: Sequence[int]) -> Target:
    """The chosen rows that are items (one query)."""
    if not ids:
        raise BulkError("Tick at least one row, or choose “all matching”.")
    found = list(Transcript.objects.filter(pk__in=list(ids)).values_list("pk", flat=True))
    return Target(
        transcripts=Transcript.objects.filter(pk__in=found),
        count=len(found),
        kind=CHOSEN,
        unknown=len(ids) - len(found),
    )


def matching(filters: queues.QueueFilters) -> Target:
    """Every item the queue's filters select now (one count query)."""
    transcripts = Transcript.objects.filter(queues.conditions(filters))
    return Target(
        transcripts=transcripts,
        count=transcripts.count(),
        kind=ALL,
        description=queues.describe(filters) or "the whole queue (open items in the queue)",
    )


@dataclass(frozen=True)
class Request:
    """One bulk action, its input checked (``check``)."""

    action: str
    k: int | None = None
    auditors: tuple[User, ...] = ()
    name: str = ""

    def words(self) -> str:
        """The action in words, for the confirmation."""
        if self.action == SET_K:
            return f"Set K to {self.k}"
        if self.action == ASSIGN:
            names = ", ".join(user.get_username() for user in self.auditors)
            return f"Assign with K = {self.k} to {names} as {self.name!r}"
        return ACTIONS[self.action]


def check(
    viewer: User,
    *,
    action: str,
    k: int | None,
    auditors: Sequence[User],
    name: str,
    default_name: str,
) -> Request:
    """The action, if the viewer may take it and its input is complete; BulkError says what is
    missing."""
    allowed = actions_for(viewer)
    if action not in ACTIONS:
        raise BulkError(f"Choose an action: one of {', '.join(ACTIONS.values())}.")
    if action not in allowed:
        raise PermissionError(f"{ACTIONS[action]} is not yours to do.")
    if action in NEEDS_K and (k is None or not 1 <= k <= MAX_K):
        raise BulkError(f"{ACTIONS[action]} needs K, a whole number from 1 to {MAX_K}.")
    if action == ASSIGN:
        if not auditors:
            raise BulkError("Choose at least one auditor to assign to.")
        name = " ".join(name.split()) or default_name[:NAME_MAX_LENGTH].rstrip()
        if len(name) > NAME_MAX_LENGTH:
            raise BulkError(f"The assignment's name is longer than {NAME_MAX_LENGTH} characters.")
        return Request(action, k=k, auditors=tuple(auditors), name=name)
    return Request(action, k=k if action in NEEDS_K else None)


def perform(request: Request, target: Target, *, by: User, selection: dict | None = None) -> str:
    """Run the action on the target; what changed, in words. ValueError (from the domain, e.g.
    an assignment whose items are all outside the queue) says why nothing was done."""
    items = target.transcripts
    n = target.count
    if request.action == SET_K:
        assert request.k is not None
        changed = set_required_reviews(items, request.k)
        return f"K set to {request.k} on {changed:,} of {n:,} item(s)" + (
            f"; {n - changed:,} had K = {request.k} already." if n - changed else "."
        )
    if request.action == ASSIGN:
        assert request.k is not None
        result = assign(
            items,
            auditors=request.auditors,
            k=request.k,
            by=by,
            name=request.name,
            selection=selection,
        )
        return result.describe()
    if request.action == RELEASE:
        released = release_leases(items)
        return f"Released {released:,} live lease(s) on {n:,} item(s)."
    on = request.action == MARK
    changed = mark_needs_discussion(items, by=by, on=on)
    state = "marked" if on else "cleared"
    already = "were marked already" if on else "were not marked"
    return f"“Needs discussion” {state} on {changed:,} of {n:,} item(s)" + (
        f"; {n - changed:,} {already}." if n - changed else "."
    )
