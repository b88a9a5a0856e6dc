"""The review guidelines: a versioned Markdown rubric, its entries, its rendering and its diff.

The rubric defines each misbehavior type, each decision and each flag, and says what to check.
Its Markdown is structured so the app can find each entry: a level-2 heading names the kind
(``## Misbehavior types``, ``## Decisions``, ``## Flags``) and a level-3 heading under it names
the value, exactly as the vocabularies spell it (``### `hallucination```: the first code span of
the heading, else its whole text). An entry's body runs to the next heading of level 1 to 3.
Everything else in the text (an introduction, other sections) is shown on the guidelines page
only. The vocabularies themselves are ``audit.labels`` and ``audit.models.Flag``.

Versions are ``GuidelineVersion`` rows, append-only; the current one is the highest number. No
migration seeds the first: ``current_version`` creates version 1 from ``rubric_default.md`` the
first time anything asks (race-safe: the number is the primary key).

Markdown is never trusted as HTML. markdown-it-py renders it with raw HTML off (a tag in the
text comes out as escaped text) and its link check (no ``javascript:``, ``vbscript:``,
``file:`` or ``data:`` links), then nh3 (ammonia) keeps only the tags and attributes below,
links only to http, https and mailto, with ``rel="noopener noreferrer"``. Only nh3's output is
marked safe.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nh3
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.token import Token

from audit.labels import DECISION_TYPES, MISBEHAVIOR_TYPES
from audit.models import Flag, GuidelineVersion, Review, Transcript, Verdict

if TYPE_CHECKING:
    from django.contrib.auth.models import User

DEFAULT_PATH = Path(__file__).with_name("rubric_default.md")
# Longest rubric a save takes (characters); longer is refused, never cut.
TEXT_MAX_LENGTH = 100_000
NOTE_MAX_LENGTH = 200
# PositiveIntegerField: PostgreSQL's integer range, held to on SQLite too.
MAX_NUMBER = 2**31 - 1

MISBEHAVIOR_TYPE = "misbehavior_type"
DECISION = "decision"
FLAG = "flag"
# The kinds of entry, keyed by their section heading (compared case-insensitively).
SECTIONS = {
    "misbehavior types": MISBEHAVIOR_TYPE,
    "decisions": DECISION,
    "flags": FLAG,
}
SECTION_TITLES = {kind: title for title, kind in SECTIONS.items()}
KIND_WORDS = {MISBEHAVIOR_TYPE: "misbehavior type", DECISION: "decision", FLAG: "flag"}


def vocabulary(kind: str) -> tuple[str, ...]:
    """The values a kind of entry must cover, in their canonical order."""
    if kind == MISBEHAVIOR_TYPE:
        return MISBEHAVIOR_TYPES
    if kind == DECISION:
        return DECISION_TYPES
    return tuple(flag.value for flag in Flag)


# --- rendering -----------------------------------------------------------------------------------

ALLOWED_TAGS = {
    "a",
    "blockquote",
    "br",
    "code",
    "del",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "strong",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
# No style (tables' alignment would be inline style, which the CSP refuses), no class, no event
# handler. Heading ids are set by the app from vocabulary values only (``_anchor``).
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "h3": {"id"}, "h4": {"id"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer"

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def sanitize(html: str) -> SafeString:
    """``html`` through nh3 with the allow-list above: the only place rubric HTML is marked
    safe."""
    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
    )
    return mark_safe(cleaned)  # noqa: S308 - nh3's output, nothing else


def render_markdown(text: str) -> SafeString:
    """Any Markdown as sanitised HTML."""
    return sanitize(_MD.render(text))


def anchor(kind: str, value: str) -> str:
    """The id of an entry's heading on the guidelines page (known values only)."""
    return f"rubric-{kind}-{value}"


# --- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One value's definition and what to check, as sanitised HTML ("" when the version has
    none for it)."""

    kind: str
    value: str
    html: SafeString
    number: int = 0

    @property
    def missing(self) -> bool:
        return not self.html.strip()

    @property
    def anchor(self) -> str:
        return anchor(self.kind, self.value)

    @property
    def label(self) -> str:
        """The value as people read it (a flag's label; other values as they are spelled)."""
        if self.kind == FLAG:
            return str(Flag(self.value).label)
        return self.value


@dataclass(frozen=True)
class Gap:
    """Something a version's entries lack or get wrong, for the editor's warning."""

    kind: str
    value: str
    problem: str

    def __str__(self) -> str:
        return f"{KIND_WORDS[self.kind]} {self.value}: {self.problem}"


@dataclass(frozen=True)
class Parsed:
    """A rubric text, parsed: the whole page's HTML and the entries by (kind, value)."""

    html: SafeString
    entries: dict[tuple[str, str], SafeString]
    gaps: tuple[Gap, ...]
    unknown: tuple[Gap, ...] = field(default=())

    @property
    def warnings(self) -> tuple[Gap, ...]:
        return self.gaps + self.unknown


def _heading_value(inline: Token) -> str:
    """The value a level-3 heading names: its first code span, else its text."""
    children = inline.children or []
    for child in children:
        if child.type == "code_inline":
            return child.content.strip()
    return "".join(child.content for child in children if child.type == "text").strip()


@functools.lru_cache(maxsize=16)
def parse(text: str) -> Parsed:
    """The rubric ``text`` parsed into its entries (see the module docstring) and rendered.
    Cached by text: versions never change, so the same text always parses the same."""
    tokens = _MD.parse(text)
    kind: str | None = None
    # (kind, value, first body token, end token): a body ends at the next heading of level <= 3.
    spans: list[list[Any]] = []
    unknown: list[Gap] = []
    seen: set[tuple[str, str]] = set()
    for index, token in enumerate(tokens):
        if token.type != "heading_open" or token.tag not in ("h1", "h2", "h3"):
            continue
        if spans and spans[-1][3] is None:
            spans[-1][3] = index
        inline = tokens[index + 1]
        if token.tag in ("h1", "h2"):
            kind = SECTIONS.get(inline.content.strip().lower()) if token.tag == "h2" else None
            if kind is not None:
                token.attrSet("id", f"rubric-{kind}")
            continue
        if kind is None:
            continue
        value = _heading_value(inline)
        if value not in vocabulary(kind):
            unknown.append(Gap(kind, value, "not a known value; no screen shows this entry"))
            continue
        if (kind, value) in seen:
            unknown.append(Gap(kind, value, "appears twice; the first entry is the one shown"))
            continue
        seen.add((kind, value))
        token.attrSet("id", anchor(kind, value))
        # Body from after the heading_close (heading_open, inline, heading_close).
        spans.append([kind, value, index + 3, None])
    if spans and spans[-1][3] is None:
        spans[-1][3] = len(tokens)
    # Shown inside a page whose own h1 names it: the rubric's headings one level down (its
    # title an h2, the sections h3, the entries h4).
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"
    entries: dict[tuple[str, str], SafeString] = {}
    for entry_kind, value, start, end in spans:
        body = _MD.renderer.render(tokens[start:end], _MD.options, {})
        entries[(entry_kind, value)] = sanitize(body)
    gaps = tuple(
        Gap(gap_kind, value, "no definition" if (gap_kind, value) not in entries else "empty")
        for gap_kind in SECTION_TITLES
        for value in vocabulary(gap_kind)
        if not entries.get((gap_kind, value), "").strip()
    )
    html = sanitize(_MD.renderer.render(tokens, _MD.options, {}))
    return Parsed(html=html, entries=entries, gaps=gaps, unknown=tuple(unknown))


def default_text() -> str:
    return normalize(DEFAULT_PATH.read_text(encoding="utf-8"))


def normalize(text: str) -> str:
    """One spelling of a text for comparing and storing: Unix newlines, no trailing blanks,
    one final newline."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


# --- versions ------------------------------------------------------------------------------------


def current_version() -> GuidelineVersion:
    """The current guidelines (the highest number). The first call ever writes: it creates
    version 1 from the default rubric, once, whoever calls first (two at once: one inserts,
    the other reads that row)."""
    latest = GuidelineVersion.objects.select_related("created_by").order_by("-number").first()
    if latest is not None:
        return latest
    try:
        with transaction.atomic():
            return GuidelineVersion.objects.create(
                number=1, text=default_text(), note="The default guidelines."
            )
    except IntegrityError:
        return GuidelineVersion.objects.get(number=1)


def get_version(number: int) -> GuidelineVersion | None:
    """Version ``number``, or None when there is none (out of range included). Version 1 is
    there once ``current_version`` was asked, as every page that shows versions does first."""
    if not 1 <= number <= MAX_NUMBER:
        return None
    return GuidelineVersion.objects.select_related("created_by").filter(number=number).first()


def resolve_number(number: int | None) -> int:
    """The guideline version a review records: ``number`` as the auditor's page showed it
    (checked to exist), or the current version when the caller names none (the API, commands,
    an older form). A number that names no version is refused."""
    if number is None:
        return current_version().number
    if not (1 <= number <= MAX_NUMBER and GuidelineVersion.objects.filter(number=number).exists()):
        raise ValidationError(
            {
                "guideline_version": f"Guidelines version {number} does not exist, so the "
                "review was not saved. Reload the page and decide again."
            }
        )
    return number


CONFLICT = "conflict"
UNCHANGED = "unchanged"
GAPS = "gaps"


def save_version(
    text: str,
    *,
    by: User | None,
    note: str = "",
    based_on: int,
    accept_gaps: bool = False,
) -> GuidelineVersion:
    """Save ``text`` as the next version, made by ``by`` from version ``based_on``.

    Refused with a ValidationError (its code says which) when someone saved another version
    since ``based_on`` (CONFLICT: nothing is lost, the caller keeps the text and offers it
    again), when the text equals the current version's (UNCHANGED), when it is empty or too
    long, and when entries are missing or unknown (GAPS) unless ``accept_gaps``: saving a
    rubric that leaves a value undefined is allowed, but only when the editor says so.
    """
    text = normalize(text)
    note = note.strip()
    if len(text) > TEXT_MAX_LENGTH:
        raise ValidationError(
            {"text": f"At most {TEXT_MAX_LENGTH} characters (this has {len(text)})."}
        )
    if len(note) > NOTE_MAX_LENGTH:
        raise ValidationError(
            {"note": f"At most {NOTE_MAX_LENGTH} characters (this has {len(note)})."}
        )
    if not text.strip():
        raise ValidationError({"text": "The guidelines cannot be empty."})
    current = current_version()
    if current.number != based_on:
        raise ValidationError(
            f"Version {current.number} was saved since you opened version {based_on}, so "
            "your text was not saved. It is kept below: compare it with the current version, "
            "then save again.",
            code=CONFLICT,
        )
    if text == normalize(current.text):
        raise ValidationError(
            {
                "text": ValidationError(
                    f"Nothing changed: this is the text of version {current.number}. Edit it "
                    "before saving.",
                    code=UNCHANGED,
                )
            }
        )
    warnings = parse(text).warnings
    if warnings and not accept_gaps:
        raise ValidationError(
            "Some entries are missing or not known: "
            + "; ".join(str(gap) for gap in warnings)
            + ". Auditors would see no definition there. Add them, or tick "
            "“Save with these gaps” and save again.",
            code=GAPS,
        )
    try:
        with transaction.atomic():
            return GuidelineVersion.objects.create(
                number=current.number + 1, text=text, note=note, created_by=by
            )
    except IntegrityError:
        # Another editor took the same number between our read and our insert.
        raise ValidationError(
            f"Another version was saved at the same moment as yours (version "
            f"{current.number + 1}), so your text was not saved. It is kept below: compare, "
            "then save again.",
            code=CONFLICT,
        ) from None


# --- what the review screens show ----------------------------------------------------------------


@dataclass(frozen=True)
class ScreenGuidelines:
    """The guidelines as a review screen shows them: the version, the entries beside the two
    selects (every value, in vocabulary order) and what to check for the item's flags."""

    number: int
    misbehavior_types: list[Entry]
    decisions: list[Entry]
    flags: list[Entry]


def entries_of(
    parsed: Parsed, kind: str, *, number: int, values: Iterable[str] = ()
) -> list[Entry]:
    """One Entry per value (default: the kind's whole vocabulary), "" where the text has none."""
    return [
        Entry(kind, value, parsed.entries.get((kind, value), SafeString("")), number)
        for value in (values or vocabulary(kind))
    ]


def for_screen(transcript: Transcript) -> ScreenGuidelines:
    """The current guidelines for the item or adjudication page of ``transcript``."""
    version = current_version()
    parsed = parse(version.text)
    number = version.number
    return ScreenGuidelines(
        number=number,
        misbehavior_types=entries_of(parsed, MISBEHAVIOR_TYPE, number=number),
        decisions=entries_of(parsed, DECISION, number=number),
        flags=entries_of(parsed, FLAG, number=number, values=transcript.flags),
    )


# --- diff ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    """One line of a diff: ``kind`` is "same", "added", "removed" or "gap" (lines left out
    between hunks); the line numbers in the older and newer text (None where it has none)."""

    kind: str
    old: int | None
    new: int | None
    text: str


def diff(older: str, newer: str, *, context: int = 3) -> list[DiffLine]:
    """The line diff of two texts (difflib), with ``context`` unchanged lines around each
    change. Plain text: the template escapes it."""
    a, b = normalize(older).splitlines(), normalize(newer).splitlines()
    out: list[DiffLine] = []
    for group in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_grouped_opcodes(context):
        if out:
            out.append(DiffLine("gap", None, None, "…"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [DiffLine("same", i1 + k + 1, j1 + k + 1, a[i1 + k]) for k in range(i2 - i1)]
                continue
            if tag in ("replace", "delete"):
                out += [DiffLine("removed", i + 1, None, a[i]) for i in range(i1, i2)]
            if tag in ("replace", "insert"):
                out += [DiffLine("added", None, j + 1, b[j]) for j in range(j1, j2)]
    return out


# --- exports -------------------------------------------------------------------------------------

# The reviews whose values the labels follow: current ones that decided values (an unsure
# decides none, and a superseded review was replaced by its author's later one).
LABEL_VERDICTS = (Verdict.CONFIRM, Verdict.RELABEL, Verdict.ADJUDICATE)


def version_counts(selection: QuerySet[Transcript]) -> dict[str, Any]:
    """Which guideline versions the labels of ``selection`` followed: how many current
    confirm, relabel and adjudicate reviews of its records were made under each version (null:
    before guidelines were versioned), with n, the reviews counted. One query."""
    rows = (
        Review.objects.current()
        .filter(verdict__in=LABEL_VERDICTS, transcript__in=selection.order_by().values("pk"))
        .order_by()
        .values_list("guideline_version_id")
        .annotate(n=Count("id"))
    )
    counts = sorted(rows, key=lambda row: (row[0] is None, row[0] or 0))
    return {
        "basis": "current confirm, relabel and adjudicate reviews of the selection's records",
        "n": sum(n for _, n in counts),
        "versions": [{"version": number, "reviews": n} for number, n in counts],
    }


def missing_values(text: str) -> Sequence[Gap]:
    """What a rubric text lacks or names wrongly (the editor's warning)."""
    return parse(text).warnings
