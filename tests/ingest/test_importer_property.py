"""Property: whatever JSON the exporter could write around the required fields is kept exactly,
and its strict export re-imports as the same record."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.ingest.importer import import_file
from audit.models import Transcript
from audit.publish.export import dump_record, export_record
from tests.factories import make_record


def same(a, b) -> bool:
    """Equal as JSON text, so NaN equals NaN (and key order counts)."""
    return json.dumps(a) == json.dumps(b)


def strict_loads(line: str):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(line, parse_constant=refuse)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    # NaN and the infinities too: the exporter writes them, and so may its input.
    | st.floats()
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.django_db
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    extra=st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=4),
    reasoning=st.text(),
    step=st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
def test_any_extra_content_round_trips_losslessly(tmp_path, extra, reasoning, step):
    Transcript.objects.all().delete()
    record = make_record(step_number=step, proposal={"worker_reasoning": reasoning})
    record["vendor"] = extra
    line = json.dumps(record)
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    result = import_file(path, skip_invalid=False)
    assert result.imported == 1, list(result.report_lines())
    stored = Transcript.objects.get()
    assert stored.text.raw == line
    assert same(json.loads(stored.text.raw), record)
    assert stored.step_number == step
    # And it comes back out of an export unchanged apart from the review and malt blocks.
    exported = export_record(stored)
    strict = dump_record(exported)
    assert exported.pop("malt")["has_chain_of_thought"] is bool(reasoning.strip())
    assert exported.pop("review")["manually_reviewed"] is False
    assert same(exported, record)  # key order too
    # A second import of the same content is a duplicate, never a second row.
    assert import_file(path).duplicates == 1
    # The export line is strict JSON, adds nothing to its own database, and imported into
    # another one is the same record under the same fingerprint.
    strict_loads(strict)
    export_path = tmp_path / "export.jsonl"
    export_path.write_text(strict + "\n", encoding="utf-8")
    assert import_file(export_path).duplicates == 1
    fingerprint = stored.fingerprint
    Transcript.objects.all().delete()
    assert import_file(export_path).imported == 1
    again = Transcript.objects.get()
    assert again.fingerprint == fingerprint
    back = export_record(again)
    back.pop("malt")
    # The first export's blocks are kept inside the new review block (``review.earlier``).
    assert back.pop("review")["earlier"]["manually_reviewed"] is False
    assert same(back, record), (back, record)


@pytest.mark.django_db
def test_number_spelling_survives_because_the_line_is_kept_verbatim(tmp_path):
    line = json.dumps(make_record()).replace('"reward": 0.5', '"reward": 0.10000000000000000001')
    line = line.replace('"timestamp": 1795504945.25', '"timestamp": 1e400')
    path = tmp_path / "n.jsonl"
    path.write_text(line + "\n")
    assert import_file(path).imported == 1
    stored = Transcript.objects.get()
    raw = stored.text.raw
    assert '"reward": 0.10000000000000000001' in raw and '"timestamp": 1e400' in raw
    assert stored.timestamp is None  # infinity is not a usable time; the raw keeps it
