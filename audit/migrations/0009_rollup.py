"""The rollup: transcripts counted per combination of the columns the dashboard's figures and
the admin's filter choices read (issue 14), kept by triggers on ``audit_transcript``.

Triggers rather than application code, so that no write path can forget it: the importer's raw
``executemany`` INSERT, its deletes of unfinished batches, verdicts and adjudications, K changes
and anything an operator runs by hand all update it in their own transaction.

- SQLite: row triggers. INSERT adds one to the row's combination (an upsert); DELETE takes one
  off; UPDATE OF a counted column, when one of them changed, moves one from the old combination
  to the new one. A combination left with none is deleted.
- PostgreSQL: statement triggers with transition tables, so a statement (a chunk's INSERT, a
  chunk of K changes, a COPY) changes each combination once with the net difference, in key
  order (two writers lock shared rows in the same order). ``UPDATE OF`` cannot be combined with
  transition tables, so the UPDATE trigger fires on every update and does nothing when no
  counted column changed (the old and new rows cancel out).

An update that moves a row out of a combination that is not there means the rollup is out of
step with the table: the write is refused rather than let the counts drift silently. A delete
is not refused (nothing to take off): emptying the tables in any order (``flush``, which on
SQLite deletes table by table) must work.

The frozen SQL lives here (not in ``audit.rollup``) so this migration means the same forever;
``audit.rollup.DIMENSIONS`` lists the same columns and ``tests/metrics/test_rollup.py`` checks
that the two agree.
"""

from typing import Any

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

TEXT = (
    "task_id",
    "worker_id",
    "decision_type",
    "misbehavior_type",
    "correct_decision",
    "alignment_category",
    "final_misbehavior_type",
    "final_correct_decision",
    "final_alignment_category",
    "status",
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
BOOLEAN = (
    "is_misbehavior",
    "was_true_positive",
    "was_false_positive",
    "was_false_negative",
    "oversight_correct",
    "final_is_misbehavior",
    *FLAGS,
)
INTEGER = ("batch_id", "required_reviews")
DIMENSIONS = (*INTEGER, *TEXT, *BOOLEAN)
COLUMNS = ", ".join(DIMENSIONS)

SQLITE_TRIGGERS = ("audit_rollup_insert", "audit_rollup_update", "audit_rollup_delete")
PG_TRIGGERS = SQLITE_TRIGGERS
PG_FUNCTIONS = SQLITE_TRIGGERS


def _encoding(row: str, *, vendor: str) -> str:
    """SQL for the combination's identity: every column in order, each text length-prefixed in
    bytes, so no two combinations encode alike whatever their text holds."""
    parts = []
    for column in DIMENSIONS:
        value = f"{row}{column}"
        if column in TEXT:
            if vendor == "sqlite":
                parts.append(f"length(CAST({value} AS BLOB)) || ':' || {value}")
            else:
                parts.append(f"octet_length({value})::text || ':' || {value}")
        elif column in BOOLEAN and vendor != "sqlite":
            parts.append(f"{value}::int::text")
        else:
            parts.append(f"{value}" if vendor == "sqlite" else f"{value}::text")
    return " || ',' || ".join(parts)


def _key(row: str, *, vendor: str) -> str:
    # SQLite indexes any length of text; a PostgreSQL index entry holds at most ~2.7 kB, less
    # than ten 200-character columns of multi-byte text, so there the key is a digest.
    encoding = _encoding(row, vendor=vendor)
    if vendor == "sqlite":
        return encoding
    return f"encode(sha256(convert_to({encoding}, 'UTF8')), 'hex')"


def _sqlite_statements() -> list[str]:
    def values(row: str) -> str:
        return ", ".join(f"{row}.{column}" for column in DIMENSIONS)

    def add(row: str) -> str:
        return (
            f"INSERT INTO audit_rollup (combination, {COLUMNS}, transcripts) "
            f"VALUES ({_key(row + '.', vendor='sqlite')}, {values(row)}, 1) "
            "ON CONFLICT (combination) DO UPDATE SET transcripts = transcripts + 1;"
        )

    def remove(row: str, *, checked: bool = True) -> str:
        key = _key(row + ".", vendor="sqlite")
        check = (
            "SELECT RAISE(ABORT, 'audit_rollup is out of step with audit_transcript') "
            f"WHERE NOT EXISTS (SELECT 1 FROM audit_rollup WHERE combination = {key});\n"
        )
        return (
            (check if checked else "")
            + f"UPDATE audit_rollup SET transcripts = transcripts - 1 WHERE combination = {key};\n"
            f"DELETE FROM audit_rollup WHERE combination = {key} AND transcripts = 0;"
        )

    changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in DIMENSIONS)
    return [
        f"CREATE TRIGGER audit_rollup_insert AFTER INSERT ON audit_transcript "
        f"BEGIN {add('NEW')} END",
        f"CREATE TRIGGER audit_rollup_delete AFTER DELETE ON audit_transcript "
        f"BEGIN {remove('OLD', checked=False)} END",
        f"CREATE TRIGGER audit_rollup_update AFTER UPDATE OF {COLUMNS} ON audit_transcript "
        f"WHEN {changed} BEGIN {remove('OLD')} {add('NEW')} END",
    ]


def _pg_statements() -> list[str]:
    key = _key("", vendor="postgresql")

    def grouped(source: str, sign: str) -> str:
        return f"SELECT {COLUMNS}, {sign}count(*) AS n FROM {source} GROUP BY {COLUMNS}"

    def apply(
        delta: str, *, increments: bool = True, decrements: bool = True, checked: bool = True
    ) -> str:
        # Increments as upserts, decrements as updates that must each find their row; both in
        # key order. Empty combinations go.
        return (upsert(delta) if increments else "") + (
            decrement(delta, checked=checked) if decrements else ""
        )

    def upsert(delta: str) -> str:
        return f"""
    INSERT INTO audit_rollup (combination, {COLUMNS}, transcripts)
    SELECT {key}, {COLUMNS}, n FROM ({delta}) AS delta WHERE n > 0 ORDER BY 1
    ON CONFLICT (combination)
    DO UPDATE SET transcripts = audit_rollup.transcripts + EXCLUDED.transcripts;"""

    def decrement(delta: str, *, checked: bool) -> str:
        check = (
            """
        IF found <> wanted THEN
            RAISE EXCEPTION 'audit_rollup is out of step with audit_transcript';
        END IF;"""
            if checked
            else ""
        )
        return f"""
    SELECT count(*) INTO wanted FROM ({delta}) AS delta WHERE n < 0;
    IF wanted > 0 THEN
        WITH decrements AS (
            SELECT {key} AS combination, n FROM ({delta}) AS delta WHERE n < 0 ORDER BY 1
        ), locked AS (
            SELECT audit_rollup.id, decrements.n
            FROM audit_rollup JOIN decrements USING (combination)
            ORDER BY audit_rollup.combination FOR UPDATE OF audit_rollup
        )
        UPDATE audit_rollup SET transcripts = audit_rollup.transcripts + locked.n
        FROM locked WHERE audit_rollup.id = locked.id;
        GET DIAGNOSTICS found = ROW_COUNT;{check}
        DELETE FROM audit_rollup WHERE transcripts = 0;
    END IF;"""

    def function(name: str, delta: str, **parts: bool) -> str:
        return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    found bigint;
BEGIN{apply(delta, **parts)}
    RETURN NULL;
END
$$"""

    changes = (
        f"SELECT {COLUMNS}, sum(n) AS n FROM ({grouped('new_rows', '')} UNION ALL "
        f"{grouped('old_rows', '-')}) AS changes GROUP BY {COLUMNS} HAVING sum(n) <> 0"
    )
    return [
        function("audit_rollup_insert", grouped("new_rows", ""), decrements=False),
        function("audit_rollup_delete", grouped("old_rows", "-"), increments=False, checked=False),
        function("audit_rollup_update", changes),
        "CREATE INDEX audit_rollup_empty ON audit_rollup (id) WHERE transcripts = 0",
        "CREATE TRIGGER audit_rollup_insert AFTER INSERT ON audit_transcript "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION audit_rollup_insert()",
        "CREATE TRIGGER audit_rollup_delete AFTER DELETE ON audit_transcript "
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION audit_rollup_delete()",
        "CREATE TRIGGER audit_rollup_update AFTER UPDATE ON audit_transcript "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION audit_rollup_update()",
    ]


def _backfill(vendor: str) -> str:
    return (
        f"INSERT INTO audit_rollup (combination, {COLUMNS}, transcripts) "
        f"SELECT {_key('', vendor=vendor)}, {COLUMNS}, count(*) FROM audit_transcript "
        f"GROUP BY {COLUMNS}"
    )


def install(connection: Any) -> None:
    """Fill the rollup from the stored rows, then create the triggers that keep it, on this
    connection (in the caller's transaction)."""
    vendor = connection.vendor
    if vendor == "sqlite":
        statements = _sqlite_statements()
    elif vendor == "postgresql":
        statements = _pg_statements()
    else:
        raise NotImplementedError(
            f"the rollup has triggers for SQLite and PostgreSQL, not {vendor}"
        )
    with connection.cursor() as cursor:
        for statement in [_backfill(vendor), *statements]:
            cursor.execute(statement)


def uninstall(connection: Any) -> None:
    """Drop the triggers (and their functions); the table's rows stay."""
    vendor = connection.vendor
    with connection.cursor() as cursor:
        for trigger in SQLITE_TRIGGERS:
            if vendor == "sqlite":
                cursor.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON audit_transcript")
        if vendor == "postgresql":
            for function in PG_FUNCTIONS:
                cursor.execute(f"DROP FUNCTION IF EXISTS {function}()")
            cursor.execute("DROP INDEX IF EXISTS audit_rollup_empty")


def create_triggers(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    install(schema_editor.connection)


def drop_triggers(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    uninstall(schema_editor.connection)


def _boolean() -> Any:
    return models.BooleanField()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0008_transcript_line_sha256"),
    ]

    operations = [
        migrations.CreateModel(
            name="Rollup",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("combination", models.TextField(unique=True)),
                ("task_id", models.CharField(blank=True, max_length=200)),
                ("worker_id", models.CharField(blank=True, max_length=200)),
                ("decision_type", models.CharField(blank=True, max_length=200)),
                ("is_misbehavior", _boolean()),
                ("misbehavior_type", models.CharField(blank=True, max_length=200)),
                ("correct_decision", models.CharField(blank=True, max_length=200)),
                ("was_true_positive", _boolean()),
                ("was_false_positive", _boolean()),
                ("was_false_negative", _boolean()),
                ("oversight_correct", _boolean()),
                ("alignment_category", models.CharField(blank=True, max_length=200)),
                ("final_is_misbehavior", _boolean()),
                ("final_misbehavior_type", models.CharField(blank=True, max_length=200)),
                ("final_correct_decision", models.CharField(blank=True, max_length=200)),
                ("final_alignment_category", models.CharField(max_length=32)),
                *((flag, _boolean()) for flag in FLAGS),
                ("required_reviews", models.PositiveSmallIntegerField()),
                ("status", models.CharField(max_length=16)),
                ("transcripts", models.PositiveIntegerField()),
                (
                    "batch",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="audit.importbatch",
                    ),
                ),
            ],
            options={"managed": True},
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
