"""Issue 11, saved views: named filter sets of the queue and the dashboard (written by hand)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0015_assignments"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations: list[migrations.operations.base.Operation] = [
        migrations.CreateModel(
            name="SavedView",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                (
                    "screen",
                    models.CharField(
                        choices=[("queue", "Review queue"), ("dashboard", "Dashboard")],
                        max_length=20,
                    ),
                ),
                ("shared", models.BooleanField(default=False)),
                ("query", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "owner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="saved_views",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["screen", "name", "id"],
                "indexes": [
                    models.Index(fields=["screen", "shared"], name="saved_view_shared"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("owner", "screen", "name"), name="saved_view_name_once"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("name", ""), _negated=True),
                        name="saved_view_name_set",
                    ),
                ],
            },
        ),
    ]
