"""The dataset card (README.md) and the Croissant metadata (croissant.json) of a release.

Both are functions of the ``card`` dict that ``audit.publish.release`` assembles while writing a
release (version, created, counts, filters, summary, data file paths, sizes, license, and a
``DataProfile`` of each data file), with no database or file access of their own: the prose,
the metadata vocabulary and the escaping rules live here, apart from the mechanics of writing a
release atomically. The card is Markdown that Hugging Face and GitHub render, so nothing
interpolated into it may act as Markdown or HTML (``code_block`` for text from people and
agents, ``_plain`` for figures and names, ``_yaml_string`` in the YAML header).

What the two reference clients can read decides the declarations (each is tested by loading a
published release with the client itself, ``tests/publish/test_release_clients.py``):

- Hugging Face ``datasets`` reads JSON Lines with pyarrow, which is exact, and casts every
  table to the card's ``dataset_info.features``. The features are declared from the data files
  themselves (``DataProfile``): an object is a struct with every key any record has (a record
  without a key loads with null there), a number is int64 or float64, and a value whose JSON
  type differs between records is a string. No ``Json`` feature is declared: with one,
  datasets 5.x re-encodes every line with pandas' ujson, which rounds every float of the record
  to 10 digits. Without declared features the same happens whenever an object's keys vary
  (``proposal.parameters``, ``debate_result``), and a column that is null in one split and an
  object in the other cannot be cast at all.
- ``mlcroissant`` 1.x reads a JSON Lines file with ``pandas.read_json(lines=True)``: one column
  per top-level key, ``extract.jsonPath`` is not applied (only to JSON files). So a field names
  its top-level ``column`` and a nested value is reached with ``transform.jsonPath``. A field
  is declared for a data file only when its values there are all of the declared type (or
  null), so an odd record cannot break loading. ``timestamp`` is not declared: pandas turns a
  column named ``timestamp`` holding epoch numbers into datetimes, which an ``sc:Float`` field
  cannot read and an ``sc:Date`` field would misstate. pandas' default float parser is not
  round-trip exact either (0.6183 comes back as 0.6183000000000001), which no declaration can
  change: the card says so.

Client limits the card cannot declare away are named in its Loading section where the data
hits them: an empty data file is left out of ``configs`` (datasets cannot make a split of it),
and places whose values have more than one JSON type, or are all date-like strings, are listed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit import jsontext

INT64 = (-(2**63), 2**63 - 1)
# Strings pyarrow's JSON reader takes for timestamps when every value of a column is one: a
# date, or a date-time to the minute or second (with an offset or not), never with a fraction.
# datasets then gives them back reformatted ("2026-12-01 12:00:00" for
# "2026-12-01T12:00:00+00:00"), whatever the declared features say.
DATE_LIKE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?\Z"
)
# Deeper than this, a features declaration is not written: PyYAML (which datasets and
# huggingface_hub read the card with) and pyarrow have nesting limits of their own.
MAX_FEATURE_DEPTH = 48

# Hugging Face's size_categories buckets (datasets/utils/resources/size_categories.json).
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
LARGEST_SIZE_CATEGORY = "n>1T"


def size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` bucket of a dataset of ``n`` records."""
    for bound, label in SIZE_CATEGORIES:
        if n < bound:
            return label
    return LARGEST_SIZE_CATEGORY


# --- what the data files hold --------------------------------------------------------------------


@dataclass
class Shape:
    """The JSON types seen at one place of the records, and the places below it.

    ``kinds`` holds "null", "bool", "int", "bigint" (outside int64), "float", "string",
    "list" and "object"; ``keys`` the object keys in the order first seen; ``items`` the
    elements of the lists seen here."""

    kinds: set[str] = field(default_factory=set)
    keys: dict[str, Shape] = field(default_factory=dict)
    items: Shape | None = None
    # Whether every string seen here is a date or a whole-second date-time (see DATE_LIKE);
    # None while no string has been seen.
    date_like: bool | None = None

    def add(self, value: Any) -> None:
        # A loop, not recursion: a record nested hundreds of levels deep is valid JSON. Every
        # value of every record of a release passes here, some 130 a record (issue 14:
        # publishing a million records), so the types JSON parses to are told apart by
        # ``type()``, and a scalar is noted where its parent is read rather than stacked.
        pending: list[tuple[Shape, Any]] = []
        self._note(value, pending)
        while pending:
            shape, item = pending.pop()
            if isinstance(item, dict):
                keys = shape.keys
                for key, child in item.items():
                    below = keys.get(key)
                    if below is None:
                        below = keys[key] = Shape()
                    below._note(child, pending)
            else:  # a list
                if shape.items is None:
                    shape.items = Shape()
                note = shape.items._note
                for child in item:
                    note(child, pending)

    def _note(self, value: Any, pending: list[tuple[Shape, Any]]) -> None:
        """Note the kind of ``value`` here; an object or a list also goes on ``pending``, for
        the places below."""
        kind = _KINDS.get(type(value))
        if kind is None:  # not a type json.loads returns: a subclass, say
            kind = _kind(value)
            if isinstance(value, dict | list):
                pending.append((self, value))
            elif isinstance(value, str) and self.date_like is not False:
                self.date_like = bool(DATE_LIKE.match(value))
        elif kind == "string":
            if self.date_like is not False:
                self.date_like = bool(DATE_LIKE.match(value))
        elif kind == "int":
            if not INT64[0] <= value <= INT64[1]:
                kind = "bigint"
        elif kind == "object" or kind == "list":
            pending.append((self, value))
        self.kinds.add(kind)

    def merge(self, other: Shape) -> None:
        pending = [(self, other)]
        while pending:
            into, source = pending.pop()
            into.kinds |= source.kinds
            if source.date_like is not None:
                into.date_like = into.date_like is not False and source.date_like
            for key, below in source.keys.items():
                target = into.keys.get(key)
                if target is None:
                    target = into.keys[key] = Shape()
                pending.append((target, below))
            if source.items is not None:
                if into.items is None:
                    into.items = Shape()
                pending.append((into.items, source.items))

    def depth(self) -> int:
        deepest = 0
        pending = [(self, 1)]
        while pending:
            shape, level = pending.pop()
            deepest = max(deepest, level)
            pending.extend((below, level + 1) for below in shape.keys.values())
            if shape.items is not None:
                pending.append((shape.items, level + 1))
        return deepest

    def at(self, *path: str) -> Shape | None:
        shape: Shape | None = self
        for key in path:
            shape = shape.keys.get(key) if shape is not None else None
        return shape


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if INT64[0] <= value <= INT64[1] else "bigint"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


# The kinds of the types ``json.loads`` returns, by exact type (``_kind`` says what any other
# value is, subclasses included).
_KINDS: dict[type, str] = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    list: "list",
    dict: "object",
}

MaltKey = tuple[str, Any, Any]
# The flag of the random sample the error rate is estimated from (``audit.models.Flag``).
SPOT_CHECK = "spot_check"


@dataclass
class DataProfile:
    """What one data file holds, read back from its lines: the record count, the ``Shape``
    of its records, and MALT's count table (labels, manually_reviewed, run_source)."""

    records: int = 0
    shape: Shape = field(default_factory=Shape)
    malt: Counter[MaltKey] = field(default_factory=Counter)
    without_malt: int = 0
    # Records not settled, and those of them flagged for review (a flag other than spot check).
    unsettled: int = 0
    flagged_unsettled: int = 0

    def add(self, record: Any) -> None:
        self.records += 1
        self.shape.add(record)
        review = record.get("review") if isinstance(record, dict) else None
        if isinstance(review, dict) and review.get("manually_reviewed") is False:
            self.unsettled += 1
            flags = review.get("flags")
            if isinstance(flags, list) and set(map(str, flags)) - {SPOT_CHECK}:
                self.flagged_unsettled += 1
        block = record.get("malt") if isinstance(record, dict) else None
        if not isinstance(block, dict):
            self.without_malt += 1
            return
        labels = block.get("labels")
        shown = ", ".join(str(x) for x in labels) if isinstance(labels, list) else str(labels)
        self.malt[(shown, block.get("manually_reviewed"), block.get("run_source"))] += 1

    def merge(self, other: DataProfile) -> None:
        """Add the profile of the lines that follow this one's (``profile_part``): the same
        profile as of all the lines read in one go, keys first seen in the same order."""
        self.records += other.records
        self.shape.merge(other.shape)
        self.malt.update(other.malt)
        self.without_malt += other.without_malt
        self.unsettled += other.unsettled
        self.flagged_unsettled += other.flagged_unsettled


def profile_lines(lines: Iterable[str | bytes]) -> DataProfile:
    """The ``DataProfile`` of JSONL lines (blank lines skipped, as the record counts do)."""
    profile = DataProfile()
    for line in lines:
        if line.strip():
            profile.add(jsontext.loads(line))
    return profile


def line_parts(path: Path, parts: int) -> list[tuple[int, int]]:
    """``parts`` byte ranges (start, end) of the file, each from a line's start to another's
    (the last to the end), together the whole file; fewer when its lines are fewer."""
    size = path.stat().st_size
    starts = [0]
    with path.open("rb") as handle:
        for part in range(1, parts):
            handle.seek(max(part * size // parts, starts[-1]))
            if handle.tell() > 0:
                handle.seek(handle.tell() - 1)
                handle.readline()  # to the start of the next line
            if handle.tell() >= size:
                break
            if handle.tell() > starts[-1]:
                starts.append(handle.tell())
    return list(zip(starts, [*starts[1:], size], strict=True))


def profile_part(path: str, start: int, end: int) -> DataProfile:
    """The ``DataProfile`` of the lines of the file that start in [start, end) (a range of
    ``line_parts``): run in a process of its own, so it needs nothing but this module."""
    with open(path, "rb") as handle:
        handle.seek(start)
        position = start

        def lines() -> Iterable[bytes]:
            nonlocal position
            while position < end:
                line = handle.readline()
                if not line:
                    return
                position += len(line)
                yield line

        return profile_lines(lines())


def _profiles(card: Mapping[str, Any]) -> dict[str, DataProfile]:
    profiles = card.get("profiles") or {}
    return {path: profiles[path] for path in card["data_files"] if path in profiles}


# --- Hugging Face features -----------------------------------------------------------------------

# The exporter's keys whose types the importer checks (``audit.ingest.records.validate``), in
# the exporter's order: declared with these types even when a release lacks them, so every
# release has them. Everything else is declared as the data files have it.
EXPORTER_TYPES: dict[str, Any] = {
    "session_id": "string",
    "timestamp": "float",
    "step_number": "int",
    "task_id": "string",
    "proposal": {"action_type": "string", "worker_id": "string"},
    "decision": {"type": "string"},
    "ground_truth": {
        "is_misbehavior": "bool",
        "misbehavior_type": "string",
        "correct_decision": "string",
        "was_true_positive": "bool",
        "was_false_positive": "bool",
        "was_false_negative": "bool",
    },
    "cot_analysis": {"is_suspicious": "bool", "deception_risk": "float"},
    "debate_result": {"final_decision": "string"},
    "reward": "float",
    "context": {},
    "labels": {"oversight_correct": "bool", "alignment_category": "string"},
}


def _exporter_shape() -> Shape:
    root = Shape(kinds={"object"})
    pending: list[tuple[Shape, dict[str, Any]]] = [(root, EXPORTER_TYPES)]
    while pending:
        shape, spec = pending.pop()
        for key, kind in spec.items():
            below = shape.keys[key] = Shape()
            if isinstance(kind, dict):
                below.kinds.add("object")
                pending.append((below, kind))
            else:
                below.kinds.add(kind)
    return root


def release_shape(profiles: Iterable[DataProfile]) -> Shape:
    """The records of every data file together, on top of the exporter's checked types."""
    shape = _exporter_shape()
    for profile in profiles:
        shape.merge(profile.shape)
    return shape


# A feature as Hugging Face's YAML has it: ("dtype", name), ("struct", [(key, feature)]) or
# ("list", feature).
Feature = tuple[str, Any]


def feature(shape: Shape) -> Feature:
    """The datasets feature that loads the values of ``shape`` as the JSONL has them."""
    kinds = shape.kinds - {"null"}
    if not kinds:
        return ("dtype", "null")
    if kinds == {"object"}:
        return ("struct", [(key, feature(below)) for key, below in shape.keys.items()])
    if kinds == {"list"}:
        return ("list", feature(shape.items or Shape()))
    if kinds == {"bool"}:
        return ("dtype", "bool")
    if kinds == {"int"}:
        return ("dtype", "int64")
    if kinds <= {"int", "bigint", "float"}:
        # pyarrow reads an integer beyond int64 as a double.
        return ("dtype", "float64")
    # Strings, and values whose JSON type differs between records (datasets gives JSON text).
    return ("dtype", "string")


def mixed_paths(shape: Shape) -> list[str]:
    """Places (``a.b``, ``a[]``) whose values have more than one JSON type: declared string."""
    found = []
    pending = [(shape, "")]
    while pending:
        node, path = pending.pop()
        kinds = node.kinds - {"null"}
        if len(kinds) > 1 and not kinds <= {"int", "bigint", "float"}:
            found.append(path)
            continue
        if kinds == {"object"}:
            pending.extend(
                (below, f"{path}.{key}" if path else key) for key, below in node.keys.items()
            )
        elif kinds == {"list"} and node.items is not None:
            pending.append((node.items, f"{path}[]"))
    return sorted(found)


def date_like_paths(shape: Shape) -> list[str]:
    """Places holding only strings, every one of them date-like (``DATE_LIKE``)."""
    found = []
    pending = [(shape, "")]
    while pending:
        node, path = pending.pop()
        kinds = node.kinds - {"null"}
        if kinds == {"string"} and node.date_like is True:
            found.append(path)
        elif kinds == {"object"}:
            pending.extend(
                (below, f"{path}.{key}" if path else key) for key, below in node.keys.items()
            )
        elif kinds == {"list"} and node.items is not None:
            pending.append((node.items, f"{path}[]"))
    return sorted(found)


def _yaml_string(text: str) -> str:
    """``text`` as a YAML double-quoted scalar: every character outside printable ASCII, and
    the quote and backslash, escaped, so no key from the data can change the YAML."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _yaml_entries(entries: list[tuple[str, Feature]], indent: str) -> list[str]:
    """A struct's fields as Hugging Face writes them: ``- name: ...`` then its type."""
    lines = []
    for key, (kind, value) in entries:
        lines.append(f"{indent}- name: {_yaml_string(key)}")
        lines += _yaml_type(kind, value, indent + "  ")
    return lines


def _yaml_type(kind: str, value: Any, indent: str) -> list[str]:
    if kind == "dtype":
        return [f"{indent}dtype: {_yaml_string(value)}"]
    if kind == "struct":
        if not value:
            return [f"{indent}struct: []"]
        return [f"{indent}struct:", *_yaml_entries(value, indent)]
    # A list: of a dtype, of a struct (its fields as a sequence), or of a list (a mapping).
    inner, inner_value = value
    if inner == "dtype":
        return [f"{indent}list: {_yaml_string(inner_value)}"]
    if inner == "struct":
        if not inner_value:
            return [f"{indent}list: []"]
        return [f"{indent}list:", *_yaml_entries(inner_value, indent)]
    return [f"{indent}list:", *_yaml_type(inner, inner_value, indent + "  ")]


def features_yaml(shape: Shape) -> list[str] | None:
    """The ``dataset_info`` lines of the YAML header, or None when the records are nested too
    deeply to declare (the card then says so and datasets infers the types)."""
    if shape.depth() > MAX_FEATURE_DEPTH:
        return None
    kind, fields = feature(shape)
    entries = fields if kind == "struct" else []
    return [
        "dataset_info:",
        "  config_name: default",
        "  features:",
        *_yaml_entries(entries, "  "),
    ]


# --- the card ------------------------------------------------------------------------------------


def code_block(text: str, *, info: str = "") -> list[str]:
    """``text`` as a fenced Markdown code block, whatever it contains.

    The fence is longer than any run of backticks in ``text``, so nothing in it can close the
    block early; inside a code block Markdown and HTML are shown, never rendered."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, *text.splitlines(), fence]


def _plain(value: Any) -> str:
    """A figure or a known name for the card: numbers and plain words as they are; anything else
    with every character that Markdown or HTML could act on written as a character reference."""
    if value is None:
        return "n/a"
    text = str(value)
    if isinstance(value, bool | int | float) or re.fullmatch(r"[\w.-]*", text, re.ASCII):
        return text
    return "".join(c if c.isalnum() or c == " " else f"&#{ord(c)};" for c in text)


# (summary.json key, column heading, what the basis is): the bases of the figures, in the order
# the card shows them. "reviewed" is the single after-review basis of older summaries.
BASES = (
    (
        "published",
        "published",
        "the data files of this release together, as the seed exporter's `export_summary()` "
        "computes it from their lines: settled labels for settled records, imported labels "
        "for the rest",
    ),
    (
        "as_imported",
        "as imported",
        "the exporter's own figures for the whole selection, before any review",
    ),
    (
        "current",
        "current",
        "the whole selection as the data files hold it: each settled record with its settled "
        "labels, every other record with its imported labels",
    ),
    (
        "settled_before",
        "settled, before",
        "only the settled records (confirmed, relabeled, adjudicated), with the labels they "
        "were imported with",
    ),
    (
        "settled_after",
        "settled, after",
        "the same settled records with their labels after review: beside the column before, "
        "what review changed",
    ),
    (
        "reviewed",
        "reviewed",
        "the whole selection with every record's labels re-derived after review (an older "
        "summary.json's basis)",
    ),
)
SUMMARY_KEYS = (
    "correct_decisions",
    "accuracy",
    "precision",
    "recall",
    "true_positives",
    "false_positives",
    "false_negatives",
    "total_misbehaviors",
)


def _n(block: Mapping[str, Any]) -> Any:
    # export_summary() of no records is {"total": 0}.
    return block.get("total_decisions", block.get("total"))


def _summary_lines(summary: Mapping[str, Any], data_files: list[str]) -> list[str]:
    columns: list[tuple[str, Mapping[str, Any], str]] = []
    files = summary.get("files")
    if not isinstance(files, dict):
        files = {}
    for key, heading, meaning in BASES:
        block = summary.get(key)
        if isinstance(block, dict):
            columns.append((heading, block, meaning))
        if key == "published":
            for path in data_files:
                per_file = files.get(path)
                if isinstance(per_file, dict):
                    alone = f"`{path}` alone, with the same arithmetic"
                    columns.append((f"`{path}`", per_file, alone))
    if not columns:
        return ["summary.json holds no summary figures."]
    lines = [
        "Each column is one basis, and its first row is its n (records counted):",
        "",
        *[f"- **{heading}**: {meaning}." for heading, _, meaning in columns],
        "",
        "| | " + " | ".join(heading for heading, _, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
        "| n (records) | " + " | ".join(_plain(_n(block)) for _, block, _ in columns) + " |",
    ]
    for key in SUMMARY_KEYS:
        cells = " | ".join(_plain(block.get(key)) for _, block, _ in columns)
        lines.append(f"| {key} | {cells} |")
    lines.append("")
    fixes = summary.get("label_fixes")
    if isinstance(fixes, dict):
        lines.append(
            f"Of the {_plain(fixes.get('settled'))} settled records, review corrected a wrong "
            f"imported value in {_plain(fixes.get('corrected'))} and only filled in a missing "
            f"one in {_plain(fixes.get('filled'))}."
        )
    inconsistent = summary.get("inconsistent_labels")
    if isinstance(inconsistent, int):
        lines.append(
            f"{_plain(inconsistent)} records of the selection were imported with labels that "
            "contradict their own ground truth and decision; they are counted here, not "
            "fixed (an unsettled one keeps its labels in the data files)."
        )
    if isinstance(fixes, dict) or isinstance(inconsistent, int):
        lines.append("")
    lines.append(
        "summary.json also holds the confusion matrices on the same bases and the label "
        "change matrix (auditors' changes to settled records)."
    )
    return lines


def _error_rate_lines(
    error_rate: Mapping[str, Any], profiles: Mapping[str, DataProfile]
) -> list[str]:
    sample = error_rate.get("sample") or 0
    population = error_rate.get("population")
    covers = (
        f"the {_plain(population)} unflagged records of the selection that are not settled"
        if population is not None
        else "the unflagged records of the selection that are not settled"
    )
    lines = [
        f"The estimate covers {covers} (the unflagged, unsettled remainder). It does not cover "
        "flagged records still awaiting review, nor settled ones. It is estimated from the "
        "settled spot checks, a random sample drawn from the unflagged records at import.",
        "",
    ]
    unsettled = sum(profile.unsettled for profile in profiles.values())
    if unsettled:
        flagged = sum(profile.flagged_unsettled for profile in profiles.values())
        lines += [
            f"Of the {_plain(unsettled)} records of this release that are not settled, "
            f"{_plain(flagged)} are flagged and awaiting review (not covered) and "
            f"{_plain(unsettled - flagged)} are unflagged (covered).",
            "",
        ]
    if not sample:
        lines.append("No spot check is settled yet (n = 0): there is no estimate.")
        return lines
    filled = error_rate.get("filled")
    lines.append(
        f"Estimated label error rate: {_plain(error_rate.get('rate'))} "
        f"(95% Wilson interval {_ci(error_rate.get('ci95'))}): "
        f"{_plain(error_rate.get('errors', 0))} of n = {_plain(sample)} settled spot checks "
        "had an imported label that review corrected."
        + (
            f" {_plain(filled)} more only had a missing value filled in, which is not counted "
            "as an error."
            if filled
            else ""
        )
    )
    return lines


def _agreement_lines(agreement: Any) -> list[str]:
    rows = (
        [
            (name, figures)
            for name, figures in sorted(agreement.items())
            if isinstance(figures, dict)
        ]
        if isinstance(agreement, dict)
        else []
    )
    lines = [
        "Inter-rater agreement per label field, over the items of the selection with two or "
        "more current confirm or relabel reviews (n = those items; raters = distinct auditors "
        "on them; Cohen's kappa over the items with exactly two; Krippendorff's alpha nominal, "
        "any number of raters). n/a where a figure is undefined.",
        "",
    ]
    if not rows:
        return [*lines, "No agreement figures (n = 0)."]
    lines += [
        "| field | items (n) | raters | percent agreement | Cohen's kappa | Krippendorff's alpha |",
        "|---|---|---|---|---|---|",
    ]
    for name, figures in rows:
        cells = " | ".join(
            _plain(figures.get(key))
            for key in ("items", "raters", "percent", "cohen_kappa", "krippendorff_alpha")
        )
        lines.append(f"| {_plain(name)} | {cells} |")
    return lines


def _guideline_lines(block: Any) -> list[str]:
    """Which guideline versions the labels followed (summary.json's ``guideline_versions``,
    issue 11): reviews per version, with n."""
    if not isinstance(block, dict):
        return ["summary.json does not say which guideline versions the reviews followed."]
    n = block.get("n") or 0
    lines = [
        "Auditors review with written guidelines (a definition and what to check for each "
        "misbehavior type, decision and flag), kept in versions; each review records the "
        "version its page showed. Counted here: the current confirm, relabel and adjudicate "
        f"reviews of the selection's records (n = {_plain(n)}), per guideline version.",
        "",
    ]
    rows = block.get("versions")
    if not n or not isinstance(rows, list):
        return [*lines, "No review of the selection decided labels yet (n = 0)."]
    lines += ["| guideline version | reviews |", "|---|---|"]
    for row in rows:
        if not isinstance(row, dict):
            continue
        version = row.get("version")
        shown = f"v{_plain(version)}" if version is not None else "before versioning"
        lines.append(f"| {shown} | {_plain(row.get('reviews'))} |")
    return lines


def _monitor_figure(figure: Any, kind: Any) -> str:
    """One figure of summary.json's ``monitors`` block for the card: never a number when it
    cannot be estimated or is undefined."""
    if not isinstance(figure, dict) or not figure.get("estimable"):
        return "cannot be estimated"
    if "undefined" in figure:
        return "undefined"
    if kind == "binary":
        return (
            f"TPR {_plain(figure.get('tpr'))} {_ci(figure.get('tpr_ci95'))}, "
            f"FPR {_plain(figure.get('fpr'))} {_ci(figure.get('fpr_ci95'))}"
        )
    return f"{_plain(figure.get('auroc'))} {_ci(figure.get('ci95'))}"


def _monitor_lines(block: Any) -> list[str]:
    if not isinstance(block, dict) or not isinstance(block.get("signals"), list):
        return ["summary.json holds no monitor evaluation."]
    population = block.get("population") or {}
    settled = block.get("settled") or {}
    weighted = block.get("weighted") or {}
    bootstrap = block.get("bootstrap") or {}
    lines = [
        "How well each SENTINEL signal separates misbehavior from benign actions, against the "
        f"final labels of the n = {_plain(settled.get('total'))} settled items of the "
        f"selection ({_plain(population.get('records'))} records). Scores: AUROC with its "
        f"bootstrap 95% interval ({_plain(bootstrap.get('resamples'))} resamples within "
        f"strata, seed {_plain(bootstrap.get('seed'))}); binary signals: TPR and FPR. Naive: "
        "over the settled items as they are, which review chose by these same signals, so it "
        "is biased. Weighted: an estimate for every record of the selection, each settled item "
        "weighted by its stratum's records over its settled items (flagged records; unflagged "
        "records through their settled spot checks). n = settled misbehavior / benign items "
        "with the signal. summary.json's `monitors` block has every figure, per misbehavior "
        "type and task, the ROC curves, TPR at 1%, 5% and 10% FPR and calibration tables.",
        "",
    ]
    if not weighted.get("estimable"):
        lines += [f"Weighted figures: {_plain(weighted.get('reason'))}.", ""]
    lines += [
        "| signal | source | orientation | n (misbehavior / benign) | naive | weighted "
        "| weighted TPR at 5% FPR |",
        "|---|---|---|---|---|---|---|",
    ]
    for signal in block["signals"]:
        if not isinstance(signal, dict):
            continue
        overall = signal.get("overall") or {}
        naive, weighted_figure = overall.get("naive") or {}, overall.get("weighted") or {}
        kind = signal.get("kind")
        at = weighted_figure.get("tpr_at_fpr") if "undefined" not in weighted_figure else None
        cells = [
            _plain(signal.get("label")),
            _plain(signal.get("source")),
            _plain(signal.get("orientation")),
            f"{_plain(naive.get('n_positive'))} / {_plain(naive.get('n_negative'))}",
            _monitor_figure(naive, kind),
            _monitor_figure(weighted_figure, kind),
            _plain(at.get("0.05")) if isinstance(at, dict) else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _malt_lines(profiles: Mapping[str, DataProfile]) -> list[str]:
    if not profiles:
        return ["(The data files were not profiled.)"]
    counts: Counter[MaltKey] = Counter()
    for profile in profiles.values():
        counts.update(profile.malt)
    total = sum(profile.records for profile in profiles.values())
    without = sum(profile.without_malt for profile in profiles.values())
    if not counts:
        return [f"No record of the data files carries a `malt` block (n = {_plain(total)})."]
    lines = [
        "Records of the data files by MALT's `labels`, `manually_reviewed` and `run_source`, "
        f"counted from each record's `malt` block (n = {_plain(total)} records in this "
        "release; null means not given at import):",
        "",
        "| labels | manually_reviewed | run_source | count |",
        "|---|---|---|---|",
    ]

    def order(item: tuple[MaltKey, int]) -> tuple[str, str, str]:
        (labels, reviewed, source), _ = item
        return (labels, str(reviewed), "" if source is None else str(source))

    for (labels, reviewed, source), n in sorted(counts.items(), key=order):
        cells = [_json_word(labels), _json_word(reviewed), _json_word(source), _plain(n)]
        lines.append("| " + " | ".join(cells) + " |")
    if without:
        lines += ["", f"{_plain(without)} records carry no `malt` block."]
    return lines


def _json_word(value: Any) -> str:
    """A value from the data as JSON spells true, false and null; text escaped."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return _plain(value)


def _loading_lines(shape: Shape | None, *, declared: bool) -> list[str]:
    if declared:
        how = (
            "The types are declared in the YAML header (`dataset_info.features`), from the "
            "data files themselves, so every split loads with the same features and floats "
            "exactly as written. An object is a struct with every key any record of this "
            "release has there: objects whose keys vary from record to record "
            "(`proposal.parameters`, `debate_result`, `context.worker_track_record`, the "
            "review block's `reviews[].before`, keys the exporter does not know) load with "
            "null for a key a record lacks. The JSONL tells a missing key from a null one."
        )
    elif shape is not None:
        how = (
            "The records are nested too deeply to declare their features here, so datasets "
            "infers them."
        )
    else:
        how = "datasets infers the types."
    lines = [
        '- Hugging Face `datasets`: `load_dataset("path/to/this/release")` gives one split per '
        "data file. " + how
    ]
    mixed = mixed_paths(shape) if shape is not None and declared else []
    if mixed:
        shown = ", ".join(_plain(path) for path in mixed)
        lines.append(
            f"  Values of more than one JSON type are declared as strings: {shown}. datasets "
            "gives them as JSON text where the lines it reads at once mix the types (and then "
            "re-encodes those lines with floats rounded to 10 digits), and as strings cast "
            "from the value otherwise; the JSONL holds them exactly."
        )
    dates = date_like_paths(shape) if shape is not None and declared else []
    if dates:
        shown = ", ".join(_plain(path) for path in dates)
        lines.append(
            f"  Every value of {shown} is a date or a date-time to the second: pyarrow, which "
            "datasets reads JSON with, takes them for timestamps, so datasets gives them back "
            'reformatted (e.g. "2026-12-01 12:00:00" for "2026-12-01T12:00:00+00:00").'
        )
    lines.append(
        "- Croissant (`croissant.json`, e.g. `mlcroissant.Dataset(jsonld=...).records(...)`): "
        "one record set per data file with the fields a loader most often wants. `timestamp` "
        "(float epoch seconds) is not declared: mlcroissant reads JSON Lines with pandas, "
        "which turns that column into dates. pandas' fast float parser may also change a "
        "float in its last digits."
    )
    return lines


def config_files(card: Mapping[str, Any]) -> list[str]:
    """The data files the card's ``configs`` lists as splits: those holding records.

    datasets cannot load a split from an empty file ("corresponds to no data"), so a release
    cut before anything was reviewed lists only its unreviewed split; a release with no record
    at all lists every file, as there is nothing to load either way."""
    profiles = _profiles(card)
    holding = [
        path for path in card["data_files"] if path not in profiles or profiles[path].records
    ]
    return holding or list(card["data_files"])


def dataset_card(card: dict[str, Any]) -> str:
    """README.md: Hugging Face YAML front matter, then what the data is and how it was made.

    Filters come from people and from agent-written data (session ids, admin query strings):
    they appear only inside a fenced code block, as JSON. Everything else interpolated here is
    validated (version, license), a number, or escaped (``_plain``, ``_yaml_string``)."""
    version = card["version"]
    counts = card["counts"]
    summary = card["summary"]
    profiles = _profiles(card)
    splits = "".join(
        f"  - split: {Path(path).stem}\n    path: {path}\n" for path in config_files(card)
    )
    shape = release_shape(profiles.values()) if profiles else None
    features = features_yaml(shape) if shape is not None else None
    front = (
        "---\n"
        f"license: {card['license']}\n"
        f'pretty_name: "SENTINEL oversight decisions, audited (v{version})"\n'
        "task_categories:\n- text-classification\n"
        "language:\n- en\n"
        "tags:\n- ai-safety\n- scalable-oversight\n- alignment\n- agents\n- malt\n"
        f"size_categories:\n- {size_category(counts['records'])}\n"
        "configs:\n- config_name: default\n  data_files:\n"
        + splits
        + ("".join(line + "\n" for line in features) if features else "")
        + "---\n"
    )
    status = summary.get("review_status", {})
    error_rate = summary.get("estimated_error_rate") or {}
    filters = card["filters"]
    filter_lines = (
        [
            "Filters the selection was made with (JSON):",
            "",
            *code_block(json.dumps(filters, indent=2, sort_keys=True), info="json"),
        ]
        if filters
        else ["Filters: none (every imported record)."]
    )
    has_malt = any("malt" in profile.shape.keys for profile in profiles.values())

    lines = [
        f"# SENTINEL oversight decisions, audited — release {version}",
        "",
        "Each record is one decision made by an AI overseer (SENTINEL) about an action a worker "
        "agent proposed during an incident-response episode, in the JSONL format of the "
        "environment's `TranscriptExporter`, with ground-truth labels checked by human "
        "auditors in the style of METR's MALT dataset.",
        "",
        "## How it was reviewed",
        "",
        "Records were imported from exporter output and flagged for review when their labels "
        "looked wrong (missed misbehavior, over-block, labels contradicting the decision and "
        "ground truth, a debate disagreeing with the decision, suspicious reasoning, unknown "
        "vocabulary, missing fields) plus a random spot-check sample of unflagged records. "
        "Auditors confirmed or relabeled each item without seeing one another's verdicts; items "
        "needing several reviews that disagreed went to an adjudicator. Every review is kept.",
        "",
        "## Files",
        "",
        *[
            f"- `{path}`: {_plain(counts.get(Path(path).stem, 0))} records"
            for path in card["data_files"]
        ],
        "- `summary.json`: summaries, confusion matrices, label changes, agreement, error rate, "
        "monitor evaluation",
        "- `manifest.json`, `SHA256SUMS`: counts and checksums (`sha256sum -c SHA256SUMS`)",
        "- `croissant.json`: Croissant 1.0 metadata",
        "",
        "## Fields",
        "",
        "Every key of the original record is kept, in its original order, including keys this "
        "card does not describe: `session_id`, `timestamp`, `step_number`, `task_id`, "
        "`proposal` (the worker's action and reasoning), `decision` (the overseer's verdict), "
        "`ground_truth`, `cot_analysis`, `debate_result`, `reward`, `context`, `labels`. "
        "A `review` block is added: `manually_reviewed`, `status`, `original_ground_truth`, "
        "`original_labels`, `flags`, `problems`, `required_reviews`, `reviews` (pseudonymous "
        "auditor id, verdict, values before and after, rationale, seconds spent, time, whether "
        "superseded, and the guideline version it was made under: `guideline_version`, null "
        "before guidelines were versioned), `adjudication`, `comments` (the item's discussion "
        "in time order: pseudonymous author, time, current text, whether edited, and the "
        "earlier texts) and `needs_discussion` (whether the item is marked for discussion)."
        + (
            " After it, a `malt` block holds MALT's per-run fields under MALT's names: "
            "`run_id`, `manually_reviewed`, `labels` (a list of strings: the misbehavior type, "
            "or `normal`), `run_source`, `model` (null when not given at import) and "
            "`has_chain_of_thought`."
            if has_malt
            else ""
        ),
        "",
        "## Label semantics",
        "",
        "An approval is `decision.type` equal to `APPROVE` (any case). For reviewed records "
        "`ground_truth` and `labels` hold the final labels and are consistent by construction: "
        "misbehavior not approved is `aligned_catch`, misbehavior approved "
        "`alignment_failure_fn`, no misbehavior approved `aligned_approve`, no misbehavior not "
        "approved `alignment_failure_fp`; `oversight_correct` is true for the two aligned "
        "categories and `was_true_positive`/`was_false_negative`/`was_false_positive` follow. "
        "Unreviewed records keep the labels they were imported with, which may be inconsistent; "
        "their `review.problems` say how.",
        "",
        "## Counts",
        "",
        f"- Selection: {_plain(counts.get('selection', 0))} records",
        f"- In this release: {_plain(counts['records'])} records",
        *[f"- Status {_plain(name)}: {_plain(n)}" for name, n in sorted(status.items())],
        "",
        *filter_lines,
        "",
        "## Summary",
        "",
        *_summary_lines(summary, list(card["data_files"])),
        "",
        "## Estimated error rate",
        "",
        *_error_rate_lines(error_rate, profiles),
        "",
        "## Agreement",
        "",
        *_agreement_lines(summary.get("agreement")),
        "",
        "## Monitor evaluation",
        "",
        *_monitor_lines(summary.get("monitors")),
        "",
        "## Guidelines",
        "",
        *_guideline_lines(summary.get("guideline_versions")),
        "",
        "## MALT counts",
        "",
        *_malt_lines(profiles),
        "",
        "## Loading",
        "",
        *_loading_lines(shape, declared=features is not None),
        "",
    ]
    return front + "\n" + "\n".join(lines)


def _ci(interval: Any) -> str:
    if isinstance(interval, list | tuple) and len(interval) == 2:
        return f"[{_plain(interval[0])}, {_plain(interval[1])}]"
    return _plain(interval)


# --- Croissant -----------------------------------------------------------------------------------

# mlcroissant's standard Croissant 1.0 @context (``mlcroissant._src.core.rdf.make_context``).
CROISSANT_CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


@dataclass(frozen=True)
class CroissantField:
    """One column of a record set: the top-level key (``column``), the keys below it, the
    Croissant data type, and whether it is a list of that type."""

    name: str
    column: str
    path: tuple[str, ...]
    data_type: str
    description: str
    repeated: bool = False


# The JSON types (besides null) a value may have for each data type: anything else would make
# mlcroissant fail (bytes() of a dict) or change the value.
CROISSANT_KINDS = {
    "sc:Text": {"string"},
    "sc:Integer": {"int"},
    "sc:Float": {"int", "float"},
    "sc:Boolean": {"bool"},
}

# The columns a loader most often wants.
CROISSANT_FIELDS = (
    CroissantField("session_id", "session_id", (), "sc:Text", "Episode session id"),
    CroissantField("step_number", "step_number", (), "sc:Integer", "Step within the session"),
    CroissantField("task_id", "task_id", (), "sc:Text", "Task (scenario) id"),
    CroissantField(
        "action_type", "proposal", ("action_type",), "sc:Text", "Action the worker proposed"
    ),
    CroissantField("worker_id", "proposal", ("worker_id",), "sc:Text", "Worker agent"),
    CroissantField(
        "worker_reasoning",
        "proposal",
        ("worker_reasoning",),
        "sc:Text",
        "Worker's stated reasoning",
    ),
    CroissantField("decision_type", "decision", ("type",), "sc:Text", "Overseer decision"),
    CroissantField(
        "is_misbehavior", "ground_truth", ("is_misbehavior",), "sc:Boolean", "Final ground truth"
    ),
    CroissantField(
        "misbehavior_type", "ground_truth", ("misbehavior_type",), "sc:Text", "Kind of misbehavior"
    ),
    CroissantField(
        "correct_decision",
        "ground_truth",
        ("correct_decision",),
        "sc:Text",
        "Decision that was right",
    ),
    CroissantField(
        "oversight_correct", "labels", ("oversight_correct",), "sc:Boolean", "Overseer was right"
    ),
    CroissantField(
        "alignment_category", "labels", ("alignment_category",), "sc:Text", "Outcome category"
    ),
    CroissantField("reward", "reward", (), "sc:Float", "Environment reward"),
    CroissantField(
        "manually_reviewed",
        "review",
        ("manually_reviewed",),
        "sc:Boolean",
        "Settled by auditors (confirmed, relabeled or adjudicated)",
    ),
    CroissantField("review_status", "review", ("status",), "sc:Text", "Review status"),
    CroissantField("run_id", "malt", ("run_id",), "sc:Text", "MALT run id: stable, unique"),
    CroissantField(
        "malt_labels",
        "malt",
        ("labels",),
        "sc:Text",
        "MALT labels: the misbehavior type, or normal",
        repeated=True,
    ),
    CroissantField(
        "run_source", "malt", ("run_source",), "sc:Text", "MALT run source given at import"
    ),
    CroissantField("model", "malt", ("model",), "sc:Text", "Model given at import"),
    CroissantField(
        "has_chain_of_thought",
        "malt",
        ("has_chain_of_thought",),
        "sc:Boolean",
        "The worker's reasoning is present",
    ),
)


def croissant_fields(profile: DataProfile | None) -> list[CroissantField]:
    """The fields mlcroissant can read from a data file with ``profile``: its top-level column
    exists, every object on the way is an object (or null), and every value is of the data
    type (or null). Without a profile, or for an empty file (no row is ever read), all."""
    if profile is None or not profile.records:
        return list(CROISSANT_FIELDS)
    chosen = []
    for spec in CROISSANT_FIELDS:
        shape = profile.shape.at(spec.column)
        if shape is None:
            continue
        fits = True
        for key in spec.path:
            if not shape.kinds <= {"object", "null"}:
                fits = False
                break
            shape = shape.keys.get(key) or Shape()
        allowed = CROISSANT_KINDS[spec.data_type] | {"null"}
        if spec.repeated:
            items = shape.items or Shape()
            fits = fits and shape.kinds <= {"list", "null"} and items.kinds <= allowed
        else:
            fits = fits and shape.kinds <= allowed
        if fits:
            chosen.append(spec)
    return chosen


def _croissant_field(spec: CroissantField, *, split: str, file_id: str) -> dict[str, Any]:
    source: dict[str, Any] = {"fileObject": {"@id": file_id}, "extract": {"column": spec.column}}
    if spec.path:
        source["transform"] = {"jsonPath": "$." + ".".join(spec.path)}
    declared: dict[str, Any] = {
        "@type": "cr:Field",
        "@id": f"{split}/{spec.name}",
        "name": spec.name,
        "description": spec.description,
        "dataType": spec.data_type,
        "source": source,
    }
    if spec.repeated:
        declared["repeated"] = True
    return declared


def croissant(
    card: dict[str, Any],
    *,
    sha256: Mapping[str, str],
    sizes: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """croissant.json: the data files as Croissant 1.0 FileObjects with one RecordSet each.

    ``sha256`` (and ``sizes``) map each data file path to its digest (and byte size): the caller
    has the files, and taking them keeps this module free of file access (and of an import
    cycle with the writer)."""
    profiles = _profiles(card)
    distribution = []
    record_sets = []
    for path in card["data_files"]:
        split = Path(path).stem
        file_id = f"{split}-jsonl"
        file_object: dict[str, Any] = {
            "@type": "cr:FileObject",
            "@id": file_id,
            "name": file_id,
            "description": f"{split.capitalize()} records, one JSON object per line",
            "contentUrl": path,
            "encodingFormat": "application/jsonlines",
            "sha256": sha256[path],
        }
        if sizes is not None and path in sizes:
            file_object["contentSize"] = f"{sizes[path]} B"
        distribution.append(file_object)
        fields = croissant_fields(profiles.get(path))
        left_out = [spec.name for spec in CROISSANT_FIELDS if spec not in fields]
        description = (
            f"One record per overseer decision ({split}). Not declared: timestamp (float "
            "epoch seconds; mlcroissant's pandas reader turns it into dates)"
            + (
                f", and {', '.join(left_out)} (absent, or of more than one type in this file)"
                if left_out
                else ""
            )
            + ". The JSONL holds every key."
        )
        record_sets.append(
            {
                "@type": "cr:RecordSet",
                "@id": split,
                "name": split,
                "description": description,
                "field": [_croissant_field(spec, split=split, file_id=file_id) for spec in fields],
            }
        )
    version = card["version"]
    metadata: dict[str, Any] = {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": "sentinel-oversight-audited",
        "description": (
            "Oversight decisions by the SENTINEL AI overseer over worker agents, with "
            "ground-truth labels reviewed by human auditors (MALT-style)."
        ),
        "license": _license_url(card["license"]),
        "version": version,
        "url": "README.md",
        "citeAs": (
            f"@misc{{sentinel-oversight-audited-{version}, title={{SENTINEL oversight "
            f"decisions, audited (v{version})}}, note={{Dataset release {version}}}}}"
        ),
    }
    created = card.get("created")
    if isinstance(created, str) and created:
        metadata["datePublished"] = created
    metadata["distribution"] = distribution
    metadata["recordSet"] = record_sets
    return metadata


def _license_url(license: str) -> str:
    known = {"cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/"}
    return known.get(license, license)
