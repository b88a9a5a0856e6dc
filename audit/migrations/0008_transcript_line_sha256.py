"""Transcript.line_sha256: the sha256 of each stored line, so a re-import skips lines stored
byte for byte without parsing them. Filled in for the rows already stored, then indexed."""

import hashlib

from django.db import migrations, models

CHUNK = 2000


def fill(apps, schema_editor):
    connection = schema_editor.connection
    table = apps.get_model("audit", "Transcript")._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} SET line_sha256 = encode(sha256(convert_to(raw, 'UTF8')), 'hex')"
            )
            return
        last = 0
        while True:
            cursor.execute(
                f"SELECT id, raw FROM {table} WHERE id > %s ORDER BY id LIMIT %s", [last, CHUNK]
            )
            rows = cursor.fetchall()
            if not rows:
                return
            cursor.executemany(
                f"UPDATE {table} SET line_sha256 = %s WHERE id = %s",
                [(hashlib.sha256(raw.encode("utf-8")).hexdigest(), pk) for pk, raw in rows],
            )
            last = rows[-1][0]


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0007_required_reviews_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="transcript",
            name="line_sha256",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="transcript",
            index=models.Index(fields=["line_sha256"], name="tr_line"),
        ),
    ]
