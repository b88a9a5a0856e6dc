"""The dataset card (README.md) and the Croissant metadata (croissant.json) of a release.

Both are functions of the ``card`` dict that ``audit.publish.release`` assembles while writing a
release (version, counts, filters, summary, data file paths, license), with no database or file
access of their own: the prose, the metadata vocabulary and the escaping rules live here, apart
from the mechanics of writing a release atomically. The card is Markdown that Hugging Face and
GitHub render, so nothing interpolated into it may act as Markdown or HTML (``code_block`` for
text from people and agents, ``_plain`` for figures and names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _size_category(n: int) -> str:
    bounds = (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    )
    for bound, label in bounds:
        if n < bound:
            return label
    return "n>10M"


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


def dataset_card(card: dict[str, Any]) -> str:
    """README.md: Hugging Face YAML front matter, then what the data is and how it was made.

    Filters come from people and from agent-written data (session ids, admin query strings):
    they appear only inside a fenced code block, as JSON. Everything else interpolated here is
    validated (version, license) or a number."""
    version = card["version"]
    counts = card["counts"]
    summary = card["summary"]
    splits = "".join(
        f"  - split: {Path(path).stem}\n    path: {path}\n" for path in card["data_files"]
    )
    front = (
        "---\n"
        f"license: {card['license']}\n"
        f'pretty_name: "SENTINEL oversight decisions, audited (v{version})"\n'
        "task_categories:\n- text-classification\n"
        "language:\n- en\n"
        "tags:\n- ai-safety\n- scalable-oversight\n- alignment\n- agents\n- malt\n"
        f"size_categories:\n- {_size_category(counts['records'])}\n"
        "configs:\n- config_name: default\n  data_files:\n" + splits + "---\n"
    )
    status = summary.get("review_status", {})
    error_rate = summary.get("estimated_error_rate") or {}
    reviewed = summary.get("reviewed", {})
    as_imported = summary.get("as_imported", {})
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

    def metric(block: dict[str, Any], key: str) -> str:
        return _plain(block.get(key))

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
        "- `summary.json`: summaries, confusion matrices, label changes, agreement, error rate",
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
        "superseded) and `adjudication`.",
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
        "| | as imported | reviewed |",
        "|---|---|---|",
        *[
            f"| {key} | {metric(as_imported, key)} | {metric(reviewed, key)} |"
            for key in (
                "total_decisions",
                "accuracy",
                "precision",
                "recall",
                "true_positives",
                "false_positives",
                "false_negatives",
                "total_misbehaviors",
            )
        ],
        "",
        "Estimated label error rate of the unreviewed remainder, from the spot-check sample: "
        f"{_plain(error_rate.get('rate'))} (95% CI {_ci(error_rate.get('ci95'))}, "
        f"{_plain(error_rate.get('errors', 0))} errors in "
        f"{_plain(error_rate.get('sample', 0))} spot checks).",
        "",
    ]
    return front + "\n" + "\n".join(lines)


def _ci(interval: Any) -> str:
    if isinstance(interval, list | tuple) and len(interval) == 2:
        return f"[{_plain(interval[0])}, {_plain(interval[1])}]"
    return _plain(interval)


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
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

# (name, JSONPath, Croissant data type, description): the columns a loader most often wants.
CROISSANT_FIELDS = (
    ("session_id", "$.session_id", "sc:Text", "Episode session id"),
    ("step_number", "$.step_number", "sc:Integer", "Step within the session"),
    ("task_id", "$.task_id", "sc:Text", "Task (scenario) id"),
    ("timestamp", "$.timestamp", "sc:Float", "Decision time, epoch seconds"),
    ("action_type", "$.proposal.action_type", "sc:Text", "Action the worker proposed"),
    ("worker_id", "$.proposal.worker_id", "sc:Text", "Worker agent"),
    ("worker_reasoning", "$.proposal.worker_reasoning", "sc:Text", "Worker's stated reasoning"),
    ("decision_type", "$.decision.type", "sc:Text", "Overseer decision"),
    ("is_misbehavior", "$.ground_truth.is_misbehavior", "sc:Boolean", "Final ground truth"),
    ("misbehavior_type", "$.ground_truth.misbehavior_type", "sc:Text", "Kind of misbehavior"),
    ("correct_decision", "$.ground_truth.correct_decision", "sc:Text", "Decision that was right"),
    ("oversight_correct", "$.labels.oversight_correct", "sc:Boolean", "Overseer was right"),
    ("alignment_category", "$.labels.alignment_category", "sc:Text", "Outcome category"),
    ("reward", "$.reward", "sc:Float", "Environment reward"),
    ("manually_reviewed", "$.review.manually_reviewed", "sc:Boolean", "Checked by an auditor"),
    ("review_status", "$.review.status", "sc:Text", "Review status"),
)


def croissant(card: dict[str, Any], *, sha256: Mapping[str, str]) -> dict[str, Any]:
    """croissant.json: the data files as Croissant 1.0 FileObjects with one RecordSet each.

    ``sha256`` maps each data file path to its digest: the caller has the files, and taking the
    digests keeps this module free of file access (and of an import cycle with the writer)."""
    distribution = []
    record_sets = []
    for path in card["data_files"]:
        split = Path(path).stem
        file_id = f"{split}-jsonl"
        distribution.append(
            {
                "@type": "cr:FileObject",
                "@id": file_id,
                "name": file_id,
                "description": f"{split.capitalize()} records, one JSON object per line",
                "contentUrl": path,
                "encodingFormat": "application/jsonlines",
                "sha256": sha256[path],
            }
        )
        record_sets.append(
            {
                "@type": "cr:RecordSet",
                "@id": split,
                "name": split,
                "description": f"One record per overseer decision ({split})",
                "field": [
                    {
                        "@type": "cr:Field",
                        "@id": f"{split}/{name}",
                        "name": name,
                        "description": description,
                        "dataType": data_type,
                        "source": {
                            "fileObject": {"@id": file_id},
                            "extract": {"jsonPath": json_path},
                        },
                    }
                    for name, json_path, data_type, description in CROISSANT_FIELDS
                ],
            }
        )
    return {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": "sentinel-oversight-audited",
        "description": (
            "Oversight decisions by the SENTINEL AI overseer over worker agents, with "
            "ground-truth labels reviewed by human auditors (MALT-style)."
        ),
        "license": _license_url(card["license"]),
        "version": card["version"],
        "url": "README.md",
        "distribution": distribution,
        "recordSet": record_sets,
    }


def _license_url(license: str) -> str:
    known = {"cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/"}
    return known.get(license, license)
