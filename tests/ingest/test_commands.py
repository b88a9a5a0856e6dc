"""import_transcripts: exit codes, the file:line: field: problem report, --json, --rejects."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import ImportBatch, Transcript
from tests.factories import DATA_DIR, make_record, write_jsonl

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("import_transcripts", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_imports_several_files_and_reports_counts():
    out, _ = run(str(DATA_DIR / "rule_s0.jsonl"), str(DATA_DIR / "noisy_s1.jsonl"))
    assert "rule_s0.jsonl: 105 lines, 105 imported, 0 duplicates, 0 rejected" in out
    assert Transcript.objects.count() == 210


def test_json_output_has_one_object_with_every_batch():
    run(str(DATA_DIR / "rule_s0.jsonl"))
    out, _ = run(str(DATA_DIR / "rule_s0.jsonl"), "--json")
    payload = json.loads(out)
    [batch] = payload["batches"]
    assert {
        k: batch[k] for k in ("file", "lines", "imported", "duplicates", "rejected", "errors")
    } == {
        "file": str(DATA_DIR / "rule_s0.jsonl"),
        "lines": 105,
        "imported": 0,
        "duplicates": 105,
        "rejected": 0,
        "errors": [],
    }
    assert len(batch["sha256"]) == 64


def test_bad_line_fails_the_command_and_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [make_record(), make_record(step_number="two")])
    with pytest.raises(CommandError) as excinfo:
        run(str(path))
    assert excinfo.value.returncode == 1
    assert Transcript.objects.count() == 0 and ImportBatch.objects.count() == 0


def test_bad_line_report_goes_to_stderr(tmp_path, capsys):
    path = write_jsonl(tmp_path / "bad.jsonl", [make_record(), make_record(step_number="two")])
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_transcripts", str(path), stdout=StringIO(), stderr=err)
    assert f'{path}:2: step_number: expected an integer, got "two"' in err.getvalue()


def test_json_reports_errors_with_line_numbers(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(make_record()) + "\n{oops\n")
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("import_transcripts", str(path), "--json", stdout=out, stderr=StringIO())
    [batch] = json.loads(out.getvalue())["batches"]
    assert batch["errors"][0]["line"] == 2
    assert batch["errors"][0]["error"].startswith("json: not valid JSON")
    assert batch["imported"] == 0


def test_skip_invalid_with_rejects_file_keeps_bad_lines_verbatim(tmp_path):
    path = tmp_path / "mixed.jsonl"
    bad = '{"session_id": "s", "step_number": "x"}'
    path.write_text(json.dumps(make_record()) + "\n" + bad + "\n")
    rejects = tmp_path / "rejects.jsonl"
    out, _ = run(str(path), "--skip-invalid", "--rejects", str(rejects))
    assert "1 imported" in out and "1 rejected" in out
    assert rejects.read_text() == bad + "\n"


def test_rejects_without_skip_invalid_is_refused(tmp_path):
    with pytest.raises(CommandError, match="--rejects needs --skip-invalid"):
        run(str(DATA_DIR / "rule_s0.jsonl"), "--rejects", str(tmp_path / "r.jsonl"))


def test_dry_run_writes_nothing():
    out, _ = run(str(DATA_DIR / "rule_s0.jsonl"), "--dry-run")
    assert "105 imported" in out and "dry run" in out
    assert Transcript.objects.count() == 0


def test_reviews_option_sets_k(tmp_path):
    run(str(DATA_DIR / "rule_s0.jsonl"), "--reviews", "2")
    assert set(Transcript.objects.values_list("required_reviews", flat=True)) == {2}


def test_missing_file_fails_with_a_clear_message(tmp_path):
    err = StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_transcripts", str(tmp_path / "none.jsonl"), stdout=StringIO(), stderr=err
        )
    assert "none.jsonl: file: cannot open" in err.getvalue()


def test_progress_bar_is_shown_on_a_terminal(monkeypatch):
    import io as _io

    class Terminal(_io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    call_command(
        "import_transcripts", str(DATA_DIR / "rule_s0.jsonl"), stdout=StringIO(), stderr=StringIO()
    )
    shown = terminal.getvalue()
    assert "rule_s0.jsonl" in shown and "100%" in shown


def test_no_progress_bar_when_not_a_terminal(capsys):
    call_command("import_transcripts", str(DATA_DIR / "rule_s0.jsonl"), stdout=StringIO())
    assert "100%" not in capsys.readouterr().err


def test_model_and_run_source_options_set_the_batch_metadata(tmp_path):
    path = write_jsonl(tmp_path / "run.jsonl", [make_record()])
    run(str(path), "--model", " sentinel-7b ", "--run-source", "noisy policy")
    batch = ImportBatch.objects.get()
    assert (batch.model, batch.run_source) == ("sentinel-7b", "noisy policy")


def test_every_file_of_one_command_gets_the_same_run_metadata():
    run(str(DATA_DIR / "rule_s0.jsonl"), str(DATA_DIR / "noisy_s1.jsonl"), "--model", "m")
    assert list(ImportBatch.objects.values_list("model", "run_source")) == [("m", "")] * 2


def test_without_the_options_the_run_metadata_is_unknown():
    run(str(DATA_DIR / "rule_s0.jsonl"))
    assert ImportBatch.objects.values_list("model", "run_source").get() == ("", "")


@pytest.mark.parametrize("option", ["--model", "--run-source"])
def test_run_metadata_over_200_characters_is_a_clear_error(option):
    with pytest.raises(CommandError) as excinfo:
        run(str(DATA_DIR / "rule_s0.jsonl"), option, "x" * 201)
    assert str(excinfo.value) == f"{option} is 201 characters long; at most 200 are allowed"
    assert ImportBatch.objects.count() == 0 and Transcript.objects.count() == 0


def test_reimport_with_other_run_metadata_adds_nothing_and_no_batch():
    run(str(DATA_DIR / "rule_s0.jsonl"), "--model", "first")
    out, _ = run(str(DATA_DIR / "rule_s0.jsonl"), "--model", "second")
    assert "0 imported, 105 duplicates" in out and "nothing new" in out
    assert ImportBatch.objects.values_list("model", flat=True).get() == "first"
