"""The dataset card (README.md) and the Croissant metadata of a release, hostile text included."""

import hashlib
import json
from pathlib import Path

import pytest

from audit.models import Transcript
from audit.publish.card import croissant, dataset_card
from audit.publish.release import publish_release
from audit.publish.verify import verify_release


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
    assert dist["@type"] == "cr:FileObject"
    assert dist["contentUrl"] == "data/reviewed.jsonl"
    assert dist["encodingFormat"] == "application/jsonlines"
    assert dist["sha256"] == hashlib.sha256((root / "data/reviewed.jsonl").read_bytes()).hexdigest()
    [record_set] = meta["recordSet"]
    fields = {f["name"]: f for f in record_set["field"]}
    assert fields["alignment_category"]["source"]["extract"]["jsonPath"] == (
        "$.labels.alignment_category"
    )
    assert fields["is_misbehavior"]["dataType"] == "sc:Boolean"
    assert all(f["source"]["fileObject"]["@id"] == dist["@id"] for f in fields.values())


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
