"""A published release, loaded with the reference clients of its formats, offline.

mlcroissant (croissant.json), Hugging Face ``datasets`` (README.md's YAML header) and
``huggingface_hub.DatasetCard`` read a release cut from reviewed, unreviewed, adjudicated,
hostile and odd records; every row is compared with the JSONL line it came from, with
comparisons written here, independently of the app's code.
"""

import os

# Before datasets and huggingface_hub are imported: they read these once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from unittest import mock  # noqa: E402

import datasets  # noqa: E402
import mlcroissant  # noqa: E402
import pytest  # noqa: E402
from huggingface_hub import DatasetCard  # noqa: E402

from audit.models import Transcript  # noqa: E402
from audit.publish.release import publish_release  # noqa: E402
from audit.publish.verify import verify_release  # noqa: E402
from audit.review.workflow import set_required_reviews  # noqa: E402
from audit.team import discussion  # noqa: E402
from tests.factories import (  # noqa: E402
    adjudicate,
    confirm,
    confirmable,
    import_records,
    make_misbehavior,
    make_record,
    relabel,
    unsure,
)

HOSTILE = "x` <img src=x onerror=alert(1)> ``` `` `<script>alert(2)</script> | * _ # [a](b)"
UNICODE = "é ü 漢字 🎉 \u202e reversed \u200b zero-width Ω"
ODD_KEYS = ['a"b', "back\\slash", "line\nbreak\n---\nlicense: mit", "é🎉", "<b>", "", "a.b/c[]"]
LONG_FLOATS = {
    "evidence_score": 0.6666666666666666,
    "deliberation_score": 0.24666666666666665,
    "reasoning_quality": 0.7286666666666666,
    "deception_risk": 0.0012345678901234567,
    "faithfulness_score": 1e-07,
}


def _records() -> list[dict]:
    """A few dozen records: ordinary ones with long floats, misbehaviors, hostile text, and
    odd shapes (nulls, NaN, a sub-object null here and an object there, unknown keys)."""
    records = []
    for n in range(12):
        records.append(
            make_record(
                session_id=f"session_17950000{n % 3:02d}",
                step_number=n,
                timestamp=1795504945.2568069 + n * 0.1,
                reward=[0.6183, 0.3, 1, -0.25][n % 4],
                cot_analysis={**LONG_FLOATS, "has_thinking": n % 2 == 0, "deliberation_depth": n},
                proposal={"parameters": [{}, {"severity": "P2"}, {"teams": ["db", "net"]}][n % 3]},
                debate_result={} if n % 2 else {"final_decision": "APPROVE", "num_rounds": 1},
            )
        )
    for n in range(12, 20):
        records.append(
            make_misbehavior(
                step_number=n,
                mb_type=["hallucination", "scope_violation"][n % 2],
                decision=["BLOCK", "APPROVE"][n % 2],
                timestamp=1795504999.123456 + n,
                cot_analysis=LONG_FLOATS,
            )
        )
    records += [
        # Hostile text wherever free text goes, and a huge one.
        make_record(
            step_number=20,
            task_id=HOSTILE,
            proposal={"worker_reasoning": HOSTILE + " " + UNICODE, "target": UNICODE},
            decision={"explanation": "```\n<script>alert(3)</script>\n```"},
        ),
        make_record(step_number=21, proposal={"worker_reasoning": "long " * 60_000}),
        # Odd values: nulls, NaN, a number that is an int here and a float there.
        make_record(step_number=22, task_id=None, reward=None, timestamp=None),
        make_record(step_number=23, reward=float("nan"), cot_analysis={"evidence_score": 1}),
        make_record(step_number=24, debate_result=None, context=None),
        # A sub-object null in some records and an object in others (in the unreviewed split
        # only, so the two splits disagree on it as inferred types would).
        make_record(
            step_number=25,
            decision={
                "redirect_action": {
                    "action_type": "investigate",
                    "target": "db",
                    "parameters": {"depth": 2},
                }
            },
        ),
        # Unknown keys, top-level and nested, in lists of objects, and spelt in any way.
        {
            **make_record(step_number=26, proposal={"confidence": 0.30000000000000004}),
            "extra_key": {
                "nested": [{"a": 1}, {"b": [1.5, None]}],
                "empty": {},
                **{key: {key: [0.1]} for key in ODD_KEYS},
            },
        },
        # A misbehavior without a type (incomplete, flagged as missing fields).
        make_misbehavior(step_number=27, ground_truth={"misbehavior_type": None}),
    ]
    return records


@pytest.fixture
def release_root(tmp_path, auditor, auditor2, adjudicator) -> Path:
    transcripts = import_records(_records(), tmp_path, model="model-x", run_source="noisy <policy>")
    by_step = {t.step_number: t for t in transcripts}
    # Reviewed: confirmed, relabeled, adjudicated; hostile and odd records among them.
    steps = (0, 1, 2, 12, 13, 20, 22, 23)
    for item in confirmable(Transcript.objects.filter(step_number__in=steps), len(steps)):
        confirm(item, auditor)
    relabel(by_step[3], auditor, misbehavior_type="reward_hacking", rationale=HOSTILE)
    relabel(by_step[27], auditor, misbehavior_type="hallucination")
    disputed = by_step[4]
    set_required_reviews(Transcript.objects.filter(pk=disputed.pk), 2)
    confirm(disputed, auditor)
    relabel(disputed, auditor2, rationale=UNICODE)
    adjudicate(disputed, adjudicator, rationale="Adjudicated: <b>safe</b>")
    # Unreviewed: open, in progress (one of two reviews), unsure, and never looked at.
    unsure(by_step[5], auditor)
    set_required_reviews(Transcript.objects.filter(pk=by_step[6].pk), 2)
    confirm(by_step[6], auditor)
    # Discussion (issue 11): a hostile comment, one edited (with its history), an item marked.
    # Most records have no comment, so the clients meet both an empty list and a full one.
    discussion.add_comment(by_step[3], author=auditor, text=HOSTILE + "\n" + UNICODE)
    edited = discussion.add_comment(by_step[4], author=auditor2, text="first <i>take</i>")
    discussion.edit_comment(edited, author=auditor2, text="second take", based_on=1)
    discussion.mark_needs_discussion(
        Transcript.objects.filter(pk__in=[by_step[4].pk, by_step[5].pk]), by=adjudicator
    )
    release = publish_release(
        Transcript.objects.all(),
        version="1.0.0",
        include_unreviewed=True,
        output_dir=tmp_path / "releases",
    )
    root = Path(release.path)
    assert verify_release(root) == []
    return root


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _splits(root: Path) -> dict[str, list[dict]]:
    return {path.stem: _jsonl(path) for path in sorted((root / "data").glob("*.jsonl"))}


# --- Croissant -----------------------------------------------------------------------------------


def _croissant_expected(record: dict, field: dict):
    """The JSONL value a Croissant field declares: its column, then its jsonPath."""
    source = field["source"]
    value = record.get(source["extract"]["column"])
    path = source.get("transform", {}).get("jsonPath", "$")
    for key in path.removeprefix("$").split(".")[1:]:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _croissant_same(loaded, expected, data_type: str) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return loaded is None
    if data_type == "sc:Text":
        return isinstance(loaded, bytes) and loaded.decode("utf-8") == expected
    if data_type == "sc:Float":
        # mlcroissant reads JSON Lines with pandas.read_json, whose default float parser is not
        # round-trip exact: 0.6183 comes back as 0.6183000000000001. Nothing in croissant.json
        # can change that (see audit.publish.card); a difference in the last digits is allowed.
        return isinstance(loaded, float) and math.isclose(
            loaded, expected, rel_tol=1e-14, abs_tol=1e-15
        )
    if data_type == "sc:Boolean":
        return loaded is expected
    return type(loaded) is int and loaded == expected and not isinstance(expected, bool)


@pytest.mark.django_db
def test_every_croissant_record_set_loads_and_equals_the_jsonl(release_root):
    meta = json.loads((release_root / "croissant.json").read_text())
    splits = _splits(release_root)
    assert {rs["name"] for rs in meta["recordSet"]} == set(splits) == {"reviewed", "unreviewed"}
    dataset = mlcroissant.Dataset(jsonld=str(release_root / "croissant.json"))
    for record_set in meta["recordSet"]:
        name = record_set["name"]
        rows = list(dataset.records(record_set=name))
        expected = splits[name]
        assert len(rows) == len(expected) > 0
        fields = record_set["field"]
        declared = {f["name"] for f in fields}
        assert {"session_id", "task_id", "worker_reasoning", "reward", "is_misbehavior"} <= declared
        assert {"run_id", "malt_labels", "run_source", "model", "has_chain_of_thought"} <= declared
        assert "timestamp" not in declared
        for row, record in zip(rows, expected, strict=True):
            assert set(row) == {f["@id"] for f in fields}
            for field in fields:
                loaded, value = row[field["@id"]], _croissant_expected(record, field)
                if field.get("repeated"):
                    assert [item.decode() for item in loaded] == value, field["name"]
                else:
                    assert _croissant_same(loaded, value, field["dataType"]), (
                        field["name"],
                        loaded,
                        value,
                    )


@pytest.mark.django_db
def test_croissant_types_fit_the_data(release_root):
    meta = json.loads((release_root / "croissant.json").read_text())
    for record_set in meta["recordSet"]:
        types = {f["name"]: f["dataType"] for f in record_set["field"]}
        assert types["reward"] == "sc:Float"
        assert types["step_number"] == "sc:Integer"
        assert types["has_chain_of_thought"] == "sc:Boolean"
        assert "sc:Date" not in types.values() and "sc:DateTime" not in types.values()
        # JSON Lines: a top-level column, then a jsonPath transform, never extract.jsonPath.
        assert all("jsonPath" not in f["source"]["extract"] for f in record_set["field"])
        assert "timestamp" in record_set["description"]


@pytest.mark.django_db
def test_mlcroissant_validate_reports_no_error_or_warning(release_root):
    cli = Path(sys.executable).with_name("mlcroissant")
    result = subprocess.run(
        [str(cli), "validate", "--jsonld", str(release_root / "croissant.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "error" not in output.lower(), output
    assert "warning" not in output.lower(), output


# --- Hugging Face --------------------------------------------------------------------------------


def _hf_same(loaded, expected) -> bool:
    """A row as datasets gives it equals the JSONL record, the declared form aside: an object
    is a struct of every key the release has, so a key a record lacks loads as None."""
    if isinstance(expected, dict):
        if not isinstance(loaded, dict):
            return False
        present = {k for k, v in expected.items() if v is not None}
        filled = {k for k, v in loaded.items() if v is not None}
        return present == filled and all(_hf_same(loaded[k], expected[k]) for k in present)
    if isinstance(expected, list):
        return (
            isinstance(loaded, list)
            and len(loaded) == len(expected)
            and all(_hf_same(a, b) for a, b in zip(loaded, expected, strict=True))
        )
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(loaded, float) and math.isnan(loaded)
    if isinstance(expected, bool) or isinstance(loaded, bool):
        return loaded is expected
    if isinstance(expected, int | float):
        # Exact: a float must come back as the same double (an int in a float64 column as
        # the same number).
        return isinstance(loaded, int | float) and loaded == expected
    return type(loaded) is type(expected) and loaded == expected


def _load_dataset(root: Path, tmp_path: Path):
    return datasets.load_dataset(str(root), cache_dir=str(tmp_path / "hf-cache"))


def _declared_features(root: Path) -> datasets.Features:
    card = DatasetCard.load(root / "README.md")
    info = card.data.dataset_info
    assert info["config_name"] == "default"
    return datasets.Features._from_yaml_list(info["features"])


@pytest.mark.django_db
def test_datasets_loads_both_splits_offline_with_exact_values(release_root, tmp_path):
    assert datasets.config.HF_HUB_OFFLINE and datasets.config.HF_DATASETS_OFFLINE
    loaded = _load_dataset(release_root, tmp_path)
    splits = _splits(release_root)
    assert set(loaded) == set(splits) == {"reviewed", "unreviewed"}
    declared = _declared_features(release_root)
    for name, expected in splits.items():
        split = loaded[name]
        assert split.num_rows == len(expected) > 0
        assert split.features == declared
        rows = split.to_list()
        for row, record in zip(rows, expected, strict=True):
            assert _hf_same(row, record), (name, record["step_number"])
    # The floats datasets 5.x rounds to 10 digits without declared features.
    reviewed = loaded["reviewed"].to_list()
    # The discussion loads too: an edited comment with its history, beside empty threads.
    threads = [row["review"]["comments"] for row in reviewed]
    assert any(thread and thread[0]["history"] for thread in threads) and [] in threads
    assert reviewed[0]["cot_analysis"]["deliberation_score"] == 0.24666666666666665


@pytest.mark.django_db
def test_card_declares_every_key_of_the_data(release_root):
    declared = _declared_features(release_root)
    for records in _splits(release_root).values():
        for record in records:
            assert set(record) <= set(declared)
            assert set(record["malt"]) <= set(declared["malt"])
    assert declared["malt"]["labels"] == datasets.List(datasets.Value("string"))
    assert declared["malt"]["manually_reviewed"] == datasets.Value("bool")
    assert declared["timestamp"] == datasets.Value("float64")
    assert declared["extra_key"]["nested"] == datasets.List(
        {"a": datasets.Value("int64"), "b": datasets.List(datasets.Value("float64"))}
    )
    assert "action_type" in declared["decision"]["redirect_action"]


@pytest.mark.django_db
def test_dataset_card_parses_with_huggingface_hub(release_root):
    card = DatasetCard.load(release_root / "README.md")
    data = card.data
    assert data.license == "cc-by-4.0"
    assert data.size_categories == ["n<1K"]
    [config] = data.configs
    assert config["config_name"] == "default"
    assert config["data_files"] == [
        {"split": "reviewed", "path": "data/reviewed.jsonl"},
        {"split": "unreviewed", "path": "data/unreviewed.jsonl"},
    ]
    assert "## MALT counts" in card.text and "## Agreement" in card.text


def test_every_size_category_is_one_hugging_face_knows():
    from audit.publish.card import size_category

    resources = Path(datasets.__file__).parent / "utils/resources/size_categories.json"
    known = json.loads(resources.read_text())
    sizes = [0, 999, 1_000, 10**4, 10**5, 10**6, 10**7, 2 * 10**8, 10**9, 10**10, 10**11]
    assert all(size_category(n) in known for n in [*sizes, 10**12, 2 * 10**12])


@pytest.mark.django_db
def test_values_of_differing_json_types_load_as_json_text(tmp_path, auditor):
    # Declared as strings, they load with datasets in every case. Where a batch of lines mixes
    # the types, datasets gives each as JSON text (and, its own limitation, re-encodes those
    # lines with floats rounded to 10 digits: the card says so); a batch of one type is cast.
    records = [
        make_record(step_number=1, proposal={"target": "db"}, extra=1),
        make_record(step_number=2, proposal={"target": {"service": "db"}}, extra="one"),
        make_record(step_number=3, proposal={"target": ["a", 1]}, extra=True),
        make_record(step_number=4, proposal={"target": None}),
    ]
    first, *_ = import_records(records, tmp_path)
    confirm(first, auditor)
    release = publish_release(
        Transcript.objects.all(),
        version="1.0.0",
        include_unreviewed=True,
        output_dir=tmp_path / "releases",
    )
    root = Path(release.path)
    declared = _declared_features(root)
    assert declared["proposal"]["target"] == datasets.Value("string")
    assert declared["extra"] == datasets.Value("string")
    card = (root / "README.md").read_text()
    assert "declared as strings: extra, proposal.target." in card
    loaded = _load_dataset(root, tmp_path)
    [reviewed] = loaded["reviewed"].to_list()
    assert (reviewed["proposal"]["target"], reviewed["extra"]) == ("db", "1")
    mixed = loaded["unreviewed"].to_list()
    assert [json.loads(r["proposal"]["target"]) for r in mixed[:2]] == [{"service": "db"}, ["a", 1]]
    assert [json.loads(r["extra"]) for r in mixed[:2]] == ["one", True]
    assert mixed[2]["proposal"]["target"] is None and mixed[2]["extra"] is None
    dataset = mlcroissant.Dataset(jsonld=str(root / "croissant.json"))
    assert len(list(dataset.records(record_set="unreviewed"))) == 3


@pytest.mark.django_db
def test_a_release_with_nothing_reviewed_loads_with_both_clients(tmp_path):
    import_records([make_record(step_number=n) for n in range(3)], tmp_path)
    release = publish_release(
        Transcript.objects.all(),
        version="1.0.0",
        include_unreviewed=True,
        output_dir=tmp_path / "releases",
    )
    root = Path(release.path)
    assert (root / "data/reviewed.jsonl").read_bytes() == b""
    # datasets cannot make a split of an empty file, so the card lists the other one only.
    card = DatasetCard.load(root / "README.md")
    assert card.data.configs[0]["data_files"] == [
        {"split": "unreviewed", "path": "data/unreviewed.jsonl"}
    ]
    loaded = _load_dataset(root, tmp_path)
    assert set(loaded) == {"unreviewed"} and loaded["unreviewed"].num_rows == 3
    dataset = mlcroissant.Dataset(jsonld=str(root / "croissant.json"))
    assert list(dataset.records(record_set="reviewed")) == []
    assert len(list(dataset.records(record_set="unreviewed"))) == 3
    assert verify_release(root) == []


@pytest.mark.django_db
def test_the_card_names_times_that_datasets_gives_back_reformatted(tmp_path, auditor):
    # pyarrow takes a column of whole-second ISO date-times for timestamps, whatever the
    # features say: with every review made on a whole second, datasets reformats created_at.
    # The card cannot prevent it, so it says so; every other value still loads exactly.
    clock = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
    with mock.patch("django.utils.timezone.now", return_value=clock):
        items = import_records([make_record(step_number=n) for n in range(3)], tmp_path)
        for item in items:
            confirm(item, auditor)
        release = publish_release(
            Transcript.objects.all(), version="1.0.0", output_dir=tmp_path / "releases"
        )
    root = Path(release.path)
    card = (root / "README.md").read_text()
    assert "Every value of review&#46;reviews&#91;&#93;&#46;created&#95;at is a date" in card
    rows = _load_dataset(root, tmp_path)["reviewed"].to_list()
    expected = _splits(root)["reviewed"]
    for row, record in zip(rows, expected, strict=True):
        [review] = row["review"]["reviews"]
        assert review["created_at"] == "2026-12-01 12:00:00"
        assert record["review"]["reviews"][0]["created_at"] == "2026-12-01T12:00:00+00:00"
        review["created_at"] = record["review"]["reviews"][0]["created_at"]
        assert _hf_same(row, record)
