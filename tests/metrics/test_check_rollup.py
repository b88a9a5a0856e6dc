"""manage.py check_rollup: a rollup that no longer matches the transcripts is reported, and
--fix rebuilds it, so an operator who meets "audit_rollup is out of step" has a remedy."""

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from audit import rollup
from audit.models import Rollup
from tests.factories import import_fixture

pytestmark = pytest.mark.django_db


def test_a_rollup_out_of_step_is_reported_then_rebuilt(capsys):
    import_fixture("rule_s0")
    call_command("check_rollup")
    assert "The rollup matches the transcripts." in capsys.readouterr().out
    row = Rollup.including_unfinished.order_by("pk").first()
    Rollup.including_unfinished.filter(pk=row.pk).update(transcripts=F("transcripts") + 5)
    with pytest.raises(CommandError, match=r"1 combination\(s\) differ, 0 trigger\(s\) missing"):
        call_command("check_rollup")
    assert f"stored {row.transcripts + 5}, counted {row.transcripts}" in capsys.readouterr().out
    call_command("check_rollup", "--fix")
    assert "Rebuilt the rollup" in capsys.readouterr().out
    assert rollup.stored() == rollup.recount()
    call_command("check_rollup")
    assert "The rollup matches the transcripts." in capsys.readouterr().out
