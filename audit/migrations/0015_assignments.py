"""Reserved for issue 11 (filled in by hand)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0014_discussion"),
    ]

    operations: list[migrations.operations.base.Operation] = []
