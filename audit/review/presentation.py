"""How a record reads on the review screens: the raw JSONL record pulled apart into the pieces
the item and adjudication pages show, with nested structure pretty-printed.

Records are hostile text: everything here stays a plain string for the templates to escape.

They are also hostile in size. Indented JSON grows with the square of its depth (a 22 KB line
nested 9,900 deep printed as 196 MB), and a single text field may hold megabytes. So every
value a page shows is cut to what a person can read, into an ``Excerpt`` that says how much it
left out: JSON shows ``MAX_DEPTH`` levels (deeper objects and arrays are summarised as
``{… 3 keys}`` / ``[… 2 items]``) and ``MAX_ITEMS`` entries per object or array; every field
stops at ``MAX_CHARS`` characters (``SHORT_CHARS`` for one-line values). The full value is the
raw record (``views.raw_record``), linked wherever something was cut. The renderer never builds
more than it shows and recurses at most ``MAX_DEPTH`` deep, whatever the record's depth.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString

from audit import jsontext, search
from audit.ingest.records import number
from audit.models import Flag, Transcript

# Per field, in characters: about ten screens of text, far above any real record's field (the
# longest in tests/data is under 2,000) and small enough that a page whose every field is at
# its limit, every character escaped, stays under a megabyte.
MAX_CHARS = 20_000
# One-line values (a target, a key, a list entry, a flag's detail).
SHORT_CHARS = 500
# Levels of objects and arrays shown. Real records nest 4 deep; the importer refuses more than
# 64 (``records.MAX_NESTING``), and records imported before that limit may nest thousands deep.
MAX_DEPTH = 8
# Entries shown per object or array, and per list of pills (services, suspicion reasons).
MAX_ITEMS = 100
MAX_PILLS = 50
# Chunks of a cut JSON value counted to say how much was left out, before giving an estimate
# ("at least N"): counting is cheap per chunk, but a 16 MiB line can hold millions of them.
COUNT_LIMIT = 50_000


def size(count: int) -> str:
    """A size in bytes for people, in decimal units: "640 bytes", "20 KB", "2.6 MB"."""
    if count < 1000:
        return f"{count:,} byte{'' if count == 1 else 's'}"
    for unit, scale in (("KB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        value = count / scale
        if value < 1000 or unit == "GB":
            text = f"{value:.1f}".removesuffix(".0") if value < 100 else f"{value:,.0f}"
            return f"{text} {unit}"
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Excerpt:
    """A value as a page shows it: ``text`` and how many characters of it were left out
    (``omitted``; ``at_least`` when that count stopped early), and the size of the whole value
    in UTF-8 bytes (``total_bytes``, at least that when ``at_least``). Renders as its text.

    ``field`` names the record's field (``FULL_FIELDS``) whose whole text the page can fetch on
    demand (``views.item_field``); ``marks`` is the queue search the page was opened from, whose
    words ``html`` marks."""

    text: str
    omitted: int = 0
    at_least: bool = False
    total_bytes: int = 0
    # JSON shown with levels or entries summarised (``{… 3 keys}``), within the length limit.
    summarised: bool = False
    field: str = dataclasses.field(default="", compare=False)
    marks: search.SearchQuery | None = dataclasses.field(default=None, compare=False)

    def __str__(self) -> str:
        return self.text

    def __bool__(self) -> bool:
        return bool(self.text or self.omitted)

    @property
    def html(self) -> SafeString:
        """The text escaped, the search's words in ``<mark>`` (``search.mark``)."""
        if self.marks:
            return search.mark(self.text, self.marks)
        return escape(self.text)

    @property
    def more(self) -> str:
        """The note a cut value ends with, e.g. "… 12,345 more characters"."""
        if not self.omitted:
            return ""
        count = f"{'at least ' if self.at_least else ''}{self.omitted:,}"
        return f"… {count} more character{'s' if self.omitted != 1 else ''}"

    @property
    def is_cut(self) -> bool:
        """Whether the page holds less than the whole value."""
        return bool(self.omitted or self.summarised)

    @property
    def sizes(self) -> str:
        """How much of the value the page holds, e.g. "showing 20 KB of 2.6 MB"."""
        if not self.is_cut:
            return ""
        whole = f"{'at least ' if self.at_least else ''}{size(self.total_bytes)}"
        return f"showing {size(len(self.text.encode()))} of {whole}"


@dataclass(frozen=True)
class Listing[T]:
    """A list as a page shows it: the first ``MAX_PILLS`` entries and how many more there are
    (``omitted``). Iterates over what it shows."""

    items: list[T]
    omitted: int = 0

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def more(self) -> str:
        """The note a shortened list ends with, e.g. "… 12 more"."""
        return f"… {self.omitted:,} more" if self.omitted else ""


def cut(text: str, limit: int = MAX_CHARS) -> Excerpt:
    """``text`` up to ``limit`` characters."""
    if len(text) <= limit:
        return Excerpt(text)
    return Excerpt(text[:limit], omitted=len(text) - limit, total_bytes=len(text.encode()))


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _chunks(value: Any, depth: int, *, indent: bool) -> Iterator[str]:
    """JSON text of ``value`` as json.dumps writes it (``indent=2`` or one line), in pieces,
    with objects and arrays below ``MAX_DEPTH`` levels summarised and long ones shortened.
    Recursion is bounded by ``MAX_DEPTH``, not by the value."""
    is_object = isinstance(value, dict)
    if not is_object and not isinstance(value, list):
        yield json.dumps(value, ensure_ascii=False, default=str)
        return
    opening, closing = ("{", "}") if is_object else ("[", "]")
    if not value:
        yield opening + closing
        return
    if depth >= MAX_DEPTH:
        yield f"{opening}… {_plural(len(value), 'key' if is_object else 'item')}{closing}"
        return
    pad = "\n" + "  " * (depth + 1) if indent else ""
    comma = "," if indent else ", "
    yield opening
    entries = iter(value.items()) if is_object else ((None, item) for item in value)
    for position, (key, item) in enumerate(entries):
        lead = (comma if position else "") + pad
        if position == MAX_ITEMS:
            rest = len(value) - MAX_ITEMS
            yield f"{lead}… {_plural(rest, 'more key' if is_object else 'more item')}"
            break
        if is_object:
            yield lead + json.dumps(key, ensure_ascii=False) + ": "
        elif lead:
            yield lead
        yield from _chunks(item, depth + 1, indent=indent)
    yield ("\n" + "  " * depth if indent else "") + closing


def pretty(value: Any, *, limit: int = MAX_CHARS, indent: bool = True) -> Excerpt:
    """JSON for people: indented (or on one line), unicode kept, cut to what a page shows. The
    template escapes it."""
    parts: list[str] = []
    length = 0
    chunks = _chunks(value, 0, indent=indent)
    for chunk in chunks:
        if length + len(chunk) <= limit:
            parts.append(chunk)
            length += len(chunk)
            continue
        room = limit - length
        parts.append(chunk[:room])
        omitted = len(chunk) - room
        total = sum(len(part.encode()) for part in parts) + len(chunk[room:].encode())
        for counted, rest in enumerate(chunks):
            if counted >= COUNT_LIMIT:
                return Excerpt("".join(parts), omitted=omitted, at_least=True, total_bytes=total)
            omitted += len(rest)
            total += len(rest.encode())
        return Excerpt("".join(parts), omitted=omitted, total_bytes=total)
    return Excerpt("".join(parts))


def _obj(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def _scalar(value: Any, limit: int = MAX_CHARS) -> Excerpt:
    """A value shown as text: a string as it is, anything else as (one-line) JSON; cut."""
    if value is None:
        return Excerpt("")
    if isinstance(value, str):
        return cut(value, limit)
    if isinstance(value, bool):
        return Excerpt("true" if value else "false")
    if isinstance(value, int | float):
        return Excerpt(f"{value:g}" if isinstance(value, float) else str(value)[:limit])
    return pretty(value, limit=limit, indent=False)


def _pills(value: Any) -> Listing[Excerpt]:
    """A list of values for pills (services, suspicion reasons); nothing when not a list."""
    if not isinstance(value, list):
        return Listing([])
    shown = [_scalar(item, SHORT_CHARS) for item in value[:MAX_PILLS]]
    return Listing(shown, omitted=max(len(value) - MAX_PILLS, 0))


def _pairs(obj: dict[str, Any]) -> Listing[tuple[Excerpt, Excerpt]]:
    """An object's keys and values as JSON literals, for the label tables."""
    shown = [
        (cut(key, SHORT_CHARS), pretty(value, limit=SHORT_CHARS, indent=False))
        for key, value in islice(obj.items(), MAX_PILLS)
    ]
    return Listing(shown, omitted=max(len(obj) - MAX_PILLS, 0))


SCORE_KEYS = (
    "evidence_score",
    "counterfactual_score",
    "deliberation_score",
    "constitutional_score",
    "faithfulness_score",
    "reasoning_quality",
    "deception_risk",
)
DEBATE_SCORES = (
    "advocate_strength",
    "prosecutor_strength",
    "decision_confidence",
    "debate_quality",
)


def _load(raw: str) -> dict[str, Any]:
    try:
        record = jsontext.loads(raw)
    except (ValueError, RecursionError):
        # A record stored before the importer's nesting limit may be too deep for this Python's
        # decoder; the page then shows the columns, and the raw record is still there in full.
        return {}
    return record if isinstance(record, dict) else {}


# The long fields a page may cut, whose whole text it fetches on demand (``full_text``): name ->
# the record's object and key, and how the page sets it ("pre", "prose" or "inline", as
# _record.html#longtext takes it). A string shows as it is; any other value as indented JSON.
FULL_FIELDS = {
    "worker_reasoning": ("proposal", "worker_reasoning", "prose"),
    "parameters": ("proposal", "parameters", "pre"),
    "reason": ("decision", "reason", "inline"),
    "explanation": ("decision", "explanation", "inline"),
    "worker_message": ("decision", "worker_message", "inline"),
    "redirect_action": ("decision", "redirect_action", "pre"),
    "thinking_text": ("cot_analysis", "thinking_text", "pre"),
    "answer_text": ("cot_analysis", "answer_text", "pre"),
    "final_reasoning": ("debate_result", "final_reasoning", "prose"),
    "track_record": ("context", "worker_track_record", "pre"),
}
# Shown as JSON (objects, arrays) even when they are something else.
JSON_FIELDS = ("parameters", "redirect_action", "track_record")


def _field_value(record: dict[str, Any], name: str) -> Any:
    section, key, _kind = FULL_FIELDS[name]
    return _obj(record, section).get(key)


def _has(value: Any) -> bool:
    return value not in (None, {}, [], "")


def _long(record: dict[str, Any], name: str, marks: search.SearchQuery | None) -> Excerpt:
    """A long field as the page shows it: cut, named (for "show the full text"), marked."""
    value = _field_value(record, name)
    if name not in JSON_FIELDS:
        shown = _scalar(value)
    elif not _has(value):
        shown = Excerpt("")
    else:
        shown = pretty(value)
        # Levels and entries summarised within the length limit are a cut too: the page says
        # the whole value's size and offers it.
        whole = _json_text(value)
        if whole is None:
            shown = dataclasses.replace(
                shown,
                summarised=True,
                at_least=True,
                total_bytes=max(shown.total_bytes, len(shown.text)),
            )
        elif whole != shown.text:
            shown = dataclasses.replace(shown, summarised=True, total_bytes=len(whole.encode()))
    return dataclasses.replace(shown, field=name, marks=marks or None)


def _json_text(value: Any) -> str | None:
    """``value`` as indented JSON, whole; None when too deep for this Python to write."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except RecursionError:
        return None


def full_text(raw: str, name: str) -> str | None:
    """The whole of one long field of the record (``FULL_FIELDS``): a string as it is, any other
    value as indented JSON (one line when too deep to indent). None for an unknown name."""
    if name not in FULL_FIELDS:
        return None
    value = _field_value(_load(raw), name)
    if value is None:
        return ""
    if isinstance(value, str) and name not in JSON_FIELDS:
        return value
    whole = _json_text(value)
    return whole if whole is not None else json.dumps(value, ensure_ascii=False, default=str)


def present_record(raw: str, *, marks: search.SearchQuery | None = None) -> dict[str, Any]:
    """The parts of a record the item page shows, with structure made readable and every
    value cut to ``MAX_CHARS`` (``SHORT_CHARS`` for one-line ones). ``marks``: the queue search
    the page was opened from, whose words the long fields mark."""
    record = _load(raw)
    proposal, decision = _obj(record, "proposal"), _obj(record, "decision")
    cot, debate, context = (
        _obj(record, "cot_analysis"),
        _obj(record, "debate_result"),
        _obj(record, "context"),
    )

    def long(name: str) -> Excerpt:
        return _long(record, name, marks)

    return {
        "proposal": {
            "action_type": _scalar(proposal.get("action_type"), SHORT_CHARS),
            "target": dataclasses.replace(
                _scalar(proposal.get("target"), SHORT_CHARS), marks=marks or None
            ),
            "worker_id": _scalar(proposal.get("worker_id"), SHORT_CHARS),
            "worker_reasoning": long("worker_reasoning"),
            "parameters": long("parameters"),
        },
        "decision": {
            "type": _scalar(decision.get("type"), SHORT_CHARS),
            "reason": long("reason"),
            "explanation": long("explanation"),
            "worker_message": long("worker_message"),
            "redirect_action": long("redirect_action"),
        },
        "cot": {
            "present": bool(cot),
            "thinking_text": long("thinking_text"),
            "answer_text": long("answer_text"),
            "has_thinking": cot.get("has_thinking"),
            "deliberation_depth": _scalar(cot.get("deliberation_depth"), SHORT_CHARS),
            "is_suspicious": bool(cot.get("is_suspicious")),
            "suspicion_reasons": _pills(cot.get("suspicion_reasons")),
            "scores": [
                (key.replace("_", " "), number(cot.get(key))) for key in SCORE_KEYS if key in cot
            ],
        },
        "debate": {
            "present": bool(debate),
            "final_decision": _scalar(debate.get("final_decision"), SHORT_CHARS),
            "final_reasoning": long("final_reasoning"),
            "num_rounds": _scalar(debate.get("num_rounds"), SHORT_CHARS),
            "scores": [
                (key.replace("_", " "), number(debate.get(key)))
                for key in DEBATE_SCORES
                if key in debate
            ],
        },
        "context": {
            "services": _pills(context.get("available_services")),
            "incident_status": _scalar(context.get("incident_status"), SHORT_CHARS),
            "track_record": long("track_record"),
        },
        "ground_truth": _pairs(_obj(record, "ground_truth")),
        "labels": _pairs(_obj(record, "labels")),
        "reward": _scalar(record.get("reward"), SHORT_CHARS),
        "timestamp": number(record.get("timestamp")),
    }


def problems(transcript: Transcript) -> list[dict[str, Any]]:
    """Each flag with its reason in words, as the importer wrote it (a reason quoting the
    record, such as a list of suspicion reasons, cut to ``SHORT_CHARS``)."""
    labels = dict(Flag.choices)
    found = transcript.problems if isinstance(transcript.problems, list) else []
    return [
        {
            "flag": str(p.get("flag", "")),
            "label": labels.get(str(p.get("flag", "")), str(p.get("flag", ""))),
            "detail": cut(str(p.get("detail", "")), SHORT_CHARS),
        }
        for p in found
        if isinstance(p, dict)
    ]


def flags(transcript: Transcript) -> list[Flag]:
    """The item's flags as choices (value and label) for the pills."""
    return [Flag(value) for value in transcript.flags]
