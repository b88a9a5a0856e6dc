"""The monitor signals as columns (issue 12, ``audit.metrics.monitors``): the CoT and debate
scores the evaluation reads, whether the decision and the debate's final decision stop the
action, filled in for the rows already stored from their stored record, then the partial index
the evaluation's read of settled rows is served by.

The columns are nullable without a default, so SQLite adds them with ``ALTER TABLE ADD COLUMN``
(no table rebuild: the rollup's and the search index's triggers stay). The back-fill reads the
rows a chunk at a time (keyset on id), so memory stays flat whatever the table holds. It sets
only columns no trigger counts: on SQLite no trigger fires; on PostgreSQL each chunk is one
``UPDATE ... FROM unnest(...)`` statement, so the rollup's statement trigger runs once a chunk.

What a value becomes is frozen here, so this migration means the same forever: the rules are
those of ``audit.ingest.records.signal_columns`` at the time of writing, and
``tests/metrics/test_monitors_columns.py`` checks that both give the same columns.
"""

import json
import math

from django.db import migrations, models
from django.db.models import Q

CHUNK = 1000
APPROVE = "APPROVE"
FLOATS = (
    ("cot_analysis", "reasoning_quality"),
    ("cot_analysis", "faithfulness_score"),
    ("debate_result", "prosecutor_strength"),
    ("debate_result", "advocate_strength"),
    ("debate_result", "decision_confidence"),
)
COLUMNS = (
    "decision_stops",
    "debate_stops",
    "reasoning_quality",
    "faithfulness_score",
    "cot_is_suspicious",
    "prosecutor_strength",
    "advocate_strength",
    "decision_confidence",
)
FLAGS = (
    "flag_missed_misbehavior",
    "flag_over_block",
    "flag_label_inconsistency",
    "flag_debate_disagrees",
    "flag_suspicious_reasoning",
    "flag_unknown_vocabulary",
    "flag_missing_fields",
    "flag_spot_check",
)


def _number(value):
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _object(record, key):
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, dict) else {}


def _stops(stored):
    """From the stored, upper-cased decision column: "" is no decision."""
    return stored != APPROVE if stored else None


def signal_values(raw, decision_type, debate_decision):
    """The new columns of one stored row, in ``COLUMNS`` order."""
    try:
        record = json.loads(raw)
    except ValueError:
        record = {}
    cot = _object(record, "cot_analysis")
    suspicious = cot.get("is_suspicious")
    numbers = {key: _number(_object(record, obj).get(key)) for obj, key in FLOATS}
    return (
        _stops(decision_type),
        _stops(debate_decision),
        numbers["reasoning_quality"],
        numbers["faithfulness_score"],
        suspicious if isinstance(suspicious, bool) else None,
        numbers["prosecutor_strength"],
        numbers["advocate_strength"],
        numbers["decision_confidence"],
    )


def fill(apps, schema_editor):
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    table = quote(apps.get_model("audit", "Transcript")._meta.db_table)
    postgresql = connection.vendor == "postgresql"
    if postgresql:
        types = ("boolean", "boolean", "float8", "float8", "boolean", "float8", "float8", "float8")
        arrays = ", ".join(f"%s::{kind}[]" for kind in ("bigint", *types))
        update = (
            f"UPDATE {table} AS t SET "
            + ", ".join(f"{quote(c)} = v.{quote(c)}" for c in COLUMNS)
            + f" FROM unnest({arrays}) AS v(id, {', '.join(quote(c) for c in COLUMNS)})"
            " WHERE t.id = v.id"
        )
    else:
        update = (
            f"UPDATE {table} SET "
            + ", ".join(f"{quote(c)} = %s" for c in COLUMNS)
            + " WHERE id = %s"
        )
    last = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"SELECT id, raw, decision_type, debate_decision FROM {table} "
                "WHERE id > %s ORDER BY id LIMIT %s",
                [last, CHUNK],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            values = [(pk, *signal_values(raw, dt, dd)) for pk, raw, dt, dd in rows]
            if postgresql:
                cursor.execute(update, [list(column) for column in zip(*values, strict=True)])
            else:
                cursor.executemany(update, [(*row[1:], row[0]) for row in values])
            last = rows[-1][0]


class Migration(migrations.Migration):
    dependencies = [("audit", "0010_queue_search")]

    operations = [
        migrations.AddField(
            model_name="transcript",
            name="decision_stops",
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="transcript",
            name="debate_stops",
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="transcript",
            name="reasoning_quality",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="transcript",
            name="faithfulness_score",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="transcript",
            name="cot_is_suspicious",
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="transcript",
            name="prosecutor_strength",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="transcript",
            name="advocate_strength",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="transcript",
            name="decision_confidence",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="transcript",
            index=models.Index(
                fields=[
                    "status",
                    "batch",
                    "task_id",
                    "final_misbehavior_type",
                    "final_is_misbehavior",
                    *FLAGS,
                    "decision_stops",
                    "debate_stops",
                    "deception_risk",
                    "reasoning_quality",
                    "faithfulness_score",
                    "cot_is_suspicious",
                    "prosecutor_strength",
                    "advocate_strength",
                    "decision_confidence",
                    "reward",
                ],
                condition=Q(status__in=("confirmed", "relabeled", "adjudicated")),
                name="tr_monitor_signals",
            ),
        ),
    ]
