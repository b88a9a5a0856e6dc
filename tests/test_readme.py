"""The README's commands, as written (issue 10): every ``manage.py`` line names the venv's
interpreter (a fresh machine's ``python`` has no Django), names a command that exists, and
parses with that command's own parser, each optional part in brackets included; every ``make``
target it names exists. ``.ci/run`` runs ``make lint``, ``make test`` and ``make run`` as
written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
VENV_PYTHON = ".venv/bin/python manage.py "
# A line of a code block, or an inline code span, that runs manage.py through the venv.
COMMAND = re.compile(
    r"^\.venv/bin/python manage\.py (.+)$|`\.venv/bin/python manage\.py ([^`]+)`", re.M
)
OPTIONAL = re.compile(r"\[([^\]]*)\]")
# Placeholders of numbers, given a sample value so the option's type is checked too.
NUMBERS = {"K": "2", "ID": "1", "N": "10"}
# Commands from libraries whose parser checks this process's settings (db_worker: that its
# --backend default is a database backend; the tests run tasks in-process): checked to exist.
NOT_PARSED = {"db_worker"}


def _commands() -> list[str]:
    found = []
    for line, inline in COMMAND.findall(README):
        text = (line or inline).split("  #")[0].split(" # ")[0].strip()
        found.append(text)
    return found


def _argvs(text: str) -> list[list[str]]:
    """The command line without its optional parts, then with each alternative of each."""

    def split(part: str) -> list[str]:
        tokens = shlex.split(part.replace("...", " "))
        return [
            "7" if n and tokens[n - 1] == "--seed" else NUMBERS.get(token, token)
            for n, token in enumerate(tokens)
        ]

    base = split(OPTIONAL.sub(" ", text))
    return [base] + [
        base + split(alternative)
        for group in OPTIONAL.findall(text)
        for alternative in group.split("|")
    ]


def test_the_readme_names_manage_py_commands_at_all():
    assert len(_commands()) >= 20


def test_no_command_uses_a_bare_python():
    bare = re.findall(r"(?<![/\w.])python3? manage\.py[^\n`]*", README)
    assert bare == [], "use .venv/bin/python (a fresh machine's python has no Django)"


@pytest.mark.parametrize("text", _commands())
def test_each_manage_py_command_parses_as_written(text):
    argv = shlex.split(OPTIONAL.sub(" ", text))
    name = argv[0]
    commands = get_commands()
    assert name in commands, f"README names a command that does not exist: {name}"
    if name in NOT_PARSED:
        return
    command = load_command_class(commands[name], name)
    for args in _argvs(text):
        parser = command.create_parser("manage.py", name)
        # Django's parser raises CommandError (not SystemExit) on an unknown or bad option.
        parser.parse_args(args[1:])


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-z][\w-]*):", MAKEFILE, re.M))
    blocks = "\n".join(re.findall(r"^```[a-z]*\n(.*?)^```", README, re.M | re.S))
    named = set(re.findall(r"`make (\w[\w-]*)", README)) | set(
        re.findall(r"^make (\w[\w-]*)", blocks, re.M)
    )
    assert named, "the README names no make target"
    assert named <= targets, named - targets


def test_make_help_says_how_to_serve_elsewhere_and_how_to_import():
    help_text = MAKEFILE.split("\nhelp:", 1)[1].split("\n\n", 1)[0]
    for word in ("PORT", "HOST", "import_transcripts"):
        assert word in help_text, word
