"""The dataset card (README.md) and the Croissant metadata of a release, hostile text included."""

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.models import Transcript
from audit.publish.card import (
    CROISSANT_FIELDS,
    croissant,
    croissant_fields,
    dataset_card,
    profile_lines,
    size_category,
)
from audit.publish.release import publish_release
from audit.publish.verify import verify_release
from tests.factories import make_record


@pytest.mark.django_db
def test_dataset_card_has_hugging_face_front_matter(release, tmp_path):
    text = (tmp_path / "releases/1.0.0/README.md").read_text()
    front, _, body = text.removeprefix("---\n").partition("\n---\n")
    assert "license: cc-by-4.0" in front
    assert "task_categories:\n- text-classification" in front
    assert "size_categories:\n- n<1K" in front
    assert "configs:\n- config_name: default\n  data_files:\n  - split: reviewed\n" in front
    assert "    path: data/reviewed.jsonl" in front
    assert "pretty_name:" in front and "tags:" in front
    assert "## Label semantics" in body and "## Counts" in body
    assert "In this release: 3 records" in body


@pytest.mark.django_db
def test_croissant_metadata_describes_the_data_files(release, tmp_path):
    root = tmp_path / "releases/1.0.0"
    meta = json.loads((root / "croissant.json").read_text())
    assert meta["@type"] == "sc:Dataset"
    assert meta["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    assert meta["@context"]["cr"] == "http://mlcommons.org/croissant/"
    [dist] = meta["distribution"]
    data = (root / "data/reviewed.jsonl").read_bytes()
    assert dist["@type"] == "cr:FileObject"
    assert dist["contentUrl"] == "data/reviewed.jsonl"
    assert dist["encodingFormat"] == "application/jsonlines"
    assert dist["sha256"] == hashlib.sha256(data).hexdigest()
    assert dist["contentSize"] == f"{len(data)} B"
    [record_set] = meta["recordSet"]
    fields = {f["name"]: f for f in record_set["field"]}
    # mlcroissant reads JSON Lines one column per top-level key: a column, then a jsonPath.
    assert fields["alignment_category"]["source"]["extract"] == {"column": "labels"}
    assert fields["alignment_category"]["source"]["transform"] == {
        "jsonPath": "$.alignment_category"
    }
    assert fields["session_id"]["source"]["extract"] == {"column": "session_id"}
    assert "transform" not in fields["session_id"]["source"]
    assert fields["is_misbehavior"]["dataType"] == "sc:Boolean"
    assert fields["malt_labels"]["repeated"] is True
    assert all(f["source"]["fileObject"]["@id"] == dist["@id"] for f in fields.values())
    assert meta["datePublished"] == json.loads((root / "manifest.json").read_text())["created"]
    assert "citeAs" in meta


def test_croissant_leaves_out_a_field_whose_values_are_of_another_type():
    odd = make_record(proposal={"worker_reasoning": {"not": "text"}}, reward="high")
    profile = profile_lines([json.dumps(make_record()), json.dumps(odd)])
    names = [spec.name for spec in croissant_fields(profile)]
    assert "worker_reasoning" not in names and "reward" not in names
    assert "action_type" in names and "session_id" in names
    # A column no record has (the malt block before exports carried it) is left out too.
    assert "run_id" not in names
    meta = croissant(
        {"version": "1.0.0", "license": "mit", "data_files": ["data/reviewed.jsonl"]}
        | {"profiles": {"data/reviewed.jsonl": profile}},
        sha256={"data/reviewed.jsonl": "ab" * 32},
    )
    [record_set] = meta["recordSet"]
    assert "worker_reasoning" in record_set["description"]
    # An empty file is never read row by row: every field is declared.
    assert len(croissant_fields(profile_lines([]))) == len(CROISSANT_FIELDS)


@pytest.mark.parametrize(
    ("n", "bucket"),
    [
        (0, "n<1K"),
        (999, "n<1K"),
        (1_000, "1K<n<10K"),
        (99_999, "10K<n<100K"),
        (100_000, "100K<n<1M"),
        (9_999_999, "1M<n<10M"),
        (10_000_000, "10M<n<100M"),
        (200_000_000, "100M<n<1B"),
        (1_000_000_000, "1B<n<10B"),
        (10**10, "10B<n<100B"),
        (10**11, "100B<n<1T"),
        (10**12 - 1, "100B<n<1T"),
        (10**12, "n>1T"),
        (2 * 10**12, "n>1T"),
    ],
)
def test_size_category_is_the_hugging_face_bucket(n, bucket):
    assert size_category(n) == bucket


def test_croissant_uses_the_digests_it_is_given():
    card = {"version": "1.2.3", "license": "cc-by-4.0", "data_files": ["data/reviewed.jsonl"]}
    meta = croissant(card, sha256={"data/reviewed.jsonl": "ab" * 32})
    [dist] = meta["distribution"]
    assert dist["sha256"] == "ab" * 32
    assert meta["version"] == "1.2.3"
    assert meta["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert croissant({**card, "license": "mit"}, sha256={"data/reviewed.jsonl": ""})["license"] == (
        "mit"
    )


# --- dataset card: hostile text ------------------------------------------------------------------

HOSTILE = "x` <img src=x onerror=alert(1)> ``` `` `<script>alert(2)</script>"


def split_fences(text):
    """(outside, blocks): Markdown text outside fenced code blocks, and each block's content,
    following CommonMark: a block closes at a line of at least as many backticks."""
    outside, blocks, fence, block = [], [], None, []
    for line in text.splitlines():
        stripped = line.strip()
        if fence is None:
            run = len(stripped) - len(stripped.lstrip("`"))
            if run >= 3 and "`" not in stripped[run:]:
                fence, block = run, []
            else:
                outside.append(line)
        elif stripped and set(stripped) == {"`"} and len(stripped) >= fence:
            blocks.append("\n".join(block))
            fence = None
        else:
            block.append(line)
    assert fence is None, "unclosed code block"
    return "\n".join(outside), blocks


@pytest.mark.django_db
def test_dataset_card_shows_hostile_filters_only_inside_a_code_block(reviewed_data, tmp_path):
    filters = {"session": [HOSTILE], f"changelist{HOSTILE}": {"q": [HOSTILE, "a|b"]}}
    release = publish_release(
        Transcript.objects.all(), version="1.0.0", filters=filters, output_dir=tmp_path
    )
    root = Path(release.path)
    outside, blocks = split_fences((root / "README.md").read_text())
    for fragment in ("<img", "onerror", "<script", "alert("):
        assert fragment not in outside
    assert [json.loads(block) for block in blocks] == [filters]
    assert "Filters the selection was made with" in outside
    croissant = (root / "croissant.json").read_text()
    assert "<img" not in croissant and "onerror" not in croissant
    assert verify_release(root) == []


@pytest.mark.django_db
def test_dataset_card_without_filters_says_so(release, tmp_path):
    text = (tmp_path / "releases/1.0.0/README.md").read_text()
    assert "Filters: none (every imported record)." in text
    assert "```" not in text


def test_dataset_card_escapes_any_text_in_summary_figures():
    card = {
        "version": "1.0.0",
        "counts": {"records": 1, "selection": 1, "reviewed": 1},
        "filters": {},
        "summary": {
            "review_status": {"<b>x</b>": 1, "confirmed": "<img src=x>"},
            "as_imported": {"accuracy": "`<i>`"},
            "reviewed": {"accuracy": 0.5},
            "estimated_error_rate": {"rate": None, "ci95": ["<u>", 1.0], "errors": 0},
        },
        "data_files": ["data/reviewed.jsonl"],
        "license": "cc-by-4.0",
    }
    text = dataset_card(card)
    assert "<" not in text.partition("\n---\n")[2]
    assert "Status confirmed: &#60;img&#32;" not in text  # spaces stay spaces
    assert "| accuracy | &#96;&#60;i&#62;&#96; | 0.5 |" in text
    assert "- Status confirmed: &#60;img src&#61;x&#62;" in text


# --- dataset card: what it adds to the figures ---------------------------------------------------

NEW_SUMMARY = {
    "published": {"total_decisions": 3, "accuracy": 0.6667, "false_positives": 1},
    "files": {
        "data/reviewed.jsonl": {"total_decisions": 1, "accuracy": 1.0},
        "data/unreviewed.jsonl": {"total_decisions": 2, "accuracy": 0.5},
    },
    "as_imported": {"total_decisions": 3, "accuracy": 0.3333},
    "current": {"total_decisions": 3, "accuracy": 0.6667},
    "settled_before": {"total_decisions": 1, "accuracy": 0.0},
    "settled_after": {"total_decisions": 1, "accuracy": 1.0},
    "label_fixes": {"settled": 1, "corrected": 1, "filled": 0},
    "inconsistent_labels": 2,
    "agreement": {
        "is_misbehavior": {
            "items": 4,
            "raters": 2,
            "percent": 0.75,
            "cohen_kappa": 0.5,
            "krippendorff_alpha": 0.5238,
        }
    },
    "review_status": {"confirmed": 1, "unreviewed": 2},
    "estimated_error_rate": {
        "sample": 5,
        "errors": 1,
        "filled": 2,
        "population": 7,
        "rate": 0.2,
        "ci95": [0.0362, 0.6245],
    },
}


def _malt_record(step, *, reviewed, labels, source, flags=()):
    return make_record(
        step_number=step,
        review={"manually_reviewed": reviewed, "flags": list(flags)},
        malt={
            "run_id": f"r{step}",
            "manually_reviewed": reviewed,
            "labels": labels,
            "run_source": source,
            "model": None,
            "has_chain_of_thought": True,
        },
    )


def _card(summary, records_by_file):
    profiles = {
        path: profile_lines(json.dumps(r) for r in records)
        for path, records in records_by_file.items()
    }
    total = sum(p.records for p in profiles.values())
    return {
        "version": "1.0.0",
        "created": "2026-12-01T00:00:00+00:00",
        "counts": {"records": total, "selection": total}
        | {Path(path).stem: p.records for path, p in profiles.items()},
        "filters": {},
        "summary": summary,
        "data_files": list(records_by_file),
        "license": "cc-by-4.0",
        "profiles": profiles,
    }


def test_dataset_card_names_the_basis_and_n_of_every_figure():
    text = dataset_card(
        _card(
            NEW_SUMMARY,
            {
                "data/reviewed.jsonl": [
                    _malt_record(1, reviewed=True, labels=["normal"], source="noisy")
                ],
                "data/unreviewed.jsonl": [
                    _malt_record(2, reviewed=False, labels=["normal"], source=None),
                    _malt_record(
                        3,
                        reviewed=False,
                        labels=["reward_hacking"],
                        source="<b>src</b>|x",
                        flags=["missed_misbehavior"],
                    ),
                ],
            },
        )
    )
    body = text.partition("\n---\n")[2]
    assert "<" not in body
    for heading in ("published", "as imported", "current", "settled, before", "settled, after"):
        assert f"- **{heading}**: " in body
    assert (
        "| | published | `data/reviewed.jsonl` | `data/unreviewed.jsonl` | as imported | current "
        "| settled, before | settled, after |" in body
    )
    assert "| n (records) | 3 | 1 | 2 | 3 | 3 | 1 | 1 |" in body
    assert "| accuracy | 0.6667 | 1.0 | 0.5 | 0.3333 | 0.6667 | 0.0 | 1.0 |" in body
    assert "review corrected a wrong imported value in 1 and only filled in a missing" in body
    assert "2 records of the selection were imported with labels that contradict" in body
    # The error rate: its population (unflagged, unsettled) and its sample, each with its n.
    assert "covers the 7 unflagged records of the selection that are not settled" in body
    assert "1 of n = 5 settled spot checks" in body
    assert "2 more only had a missing value filled in" in body
    assert "1 are flagged and awaiting review (not covered) and 1 are unflagged" in body
    # Agreement and MALT's count table.
    assert "| is_misbehavior | 4 | 2 | 0.75 | 0.5 | 0.5238 |" in body
    assert "n = 3 records in this release" in body
    assert "| normal | false | null | 1 |" in body
    assert "| normal | true | noisy | 1 |" in body
    assert "| reward_hacking | false | &#60;b&#62;src&#60;&#47;b&#62;&#124;x | 1 |" in body


def test_dataset_card_of_an_older_summary_shows_what_it_has():
    old = {
        "as_imported": {"total_decisions": 2, "accuracy": 0.5},
        "reviewed": {"total_decisions": 2, "accuracy": 1.0},
        "estimated_error_rate": {"sample": 0, "errors": 0, "rate": None, "ci95": None},
    }
    text = dataset_card(_card(old, {"data/reviewed.jsonl": [make_record(), make_record()]}))
    assert "| n (records) | 2 | 2 |" in text
    assert "No spot check is settled yet (n = 0): there is no estimate." in text
    assert "No agreement figures (n = 0)." in text
    assert "No record of the data files carries a `malt` block (n = 2)." in text


HOSTILE_KEYS = ['a"b', "back\\slash", "line\nbreak\n---\nlicense: mit", "é🎉", "<script>", ""]


def test_dataset_card_declares_features_of_any_key_as_valid_yaml():
    record = make_record(extra={key: {key: [1.5]} for key in HOSTILE_KEYS})
    text = dataset_card(_card(NEW_SUMMARY, {"data/reviewed.jsonl": [record]}))
    front = yaml.safe_load(text.removeprefix("---\n").partition("\n---\n")[0])
    assert front["license"] == "cc-by-4.0"
    features = {f["name"]: f for f in front["dataset_info"]["features"]}
    assert front["dataset_info"]["config_name"] == "default"
    assert features["timestamp"] == {"name": "timestamp", "dtype": "float64"}
    extra = {f["name"]: f for f in features["extra"]["struct"]}
    assert list(extra) == HOSTILE_KEYS
    for key in HOSTILE_KEYS:
        assert extra[key]["struct"] == [{"name": key, "list": "float64"}]
    assert "<" not in text.partition("\n---\n")[2].partition("\n---\n")[2]


def test_dataset_card_of_records_nested_too_deeply_declares_no_features():
    deep: dict = {}
    inner = deep
    for _ in range(300):
        inner["x"] = {}
        inner = inner["x"]
    text = dataset_card(_card(NEW_SUMMARY, {"data/reviewed.jsonl": [make_record(extra=deep)]}))
    front = yaml.safe_load(text.removeprefix("---\n").partition("\n---\n")[0])
    assert "dataset_info" not in front
    assert "nested too deeply to declare their features" in text


def _reference_shape(values) -> list:
    """What ``Shape`` must find, computed the plain way: every value visited, its kind by
    ``_kind``, the keys of each place in the order first seen (children of a list from its
    last element first, as the shape's own walk goes), strings date-like or not."""
    from audit.publish.card import DATE_LIKE, _kind

    def new():
        return {"kinds": set(), "keys": {}, "items": None, "date_like": None}

    root = new()
    for value in values:
        pending = [(root, value)]
        while pending:
            place, item = pending.pop()
            place["kinds"].add(_kind(item))
            if isinstance(item, str):
                place["date_like"] = place["date_like"] is not False and bool(DATE_LIKE.match(item))
            elif isinstance(item, dict):
                for key, child in item.items():
                    pending.append((place["keys"].setdefault(key, new()), child))
            elif isinstance(item, list):
                if place["items"] is None:
                    place["items"] = new()
                pending.extend((place["items"], child) for child in item)

    def tree(place):
        items = place["items"]
        return [
            sorted(place["kinds"]),
            place["date_like"],
            [(key, tree(below)) for key, below in place["keys"].items()],
            None if items is None else tree(items),
        ]

    return tree(root)


def _shape_tree(shape) -> list:
    return [
        sorted(shape.kinds),
        shape.date_like,
        [(key, _shape_tree(below)) for key, below in shape.keys.items()],
        None if shape.items is None else _shape_tree(shape.items),
    ]


class _Text(str):
    pass


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=4)
    | st.sampled_from(["2026-12-01", "2026-12-01T12:00:00Z", "2026-12-01 12:00"])
    # Subclasses of the types json.loads returns: told apart as the plain walk does.
    | st.sampled_from(["2026-12-01", "x"]).map(_Text),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from("abcde"), children, max_size=4)
        | st.dictionaries(st.sampled_from("abcde"), children, max_size=4).map(OrderedDict)
        | st.lists(children, max_size=4).map(tuple)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_json_values, max_size=5))
def test_shape_finds_what_a_plain_walk_finds(values):
    """The shape's walk (types told apart by ``type()``, scalars noted in place: issue 14)
    finds the kinds, keys in order, items and date-likeness a plain walk finds."""
    from audit.publish.card import Shape

    shape = Shape()
    for value in values:
        shape.add(value)
    assert _shape_tree(shape) == _reference_shape(values)
