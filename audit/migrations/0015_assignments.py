"""Issue 11, assignments: an assignment (a selection handed to named auditors with K) and its
tasks (one per item and auditor, fixed when it is made)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0014_discussion"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Assignment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=200)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("selection", models.JSONField(blank=True, default=dict)),
                ("sample", models.PositiveIntegerField(blank=True, null=True)),
                ("seed", models.BigIntegerField(blank=True, null=True)),
                ("k", models.PositiveSmallIntegerField()),
                ("items", models.PositiveIntegerField(default=0)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "constraints": [
                    models.CheckConstraint(condition=~models.Q(name=""), name="as_name_set"),
                    models.CheckConstraint(condition=models.Q(k__gte=1), name="as_k_positive"),
                ],
            },
        ),
        migrations.CreateModel(
            name="AssignmentTask",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "assignment",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tasks",
                        to="audit.assignment",
                    ),
                ),
                (
                    "transcript",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="assignment_tasks",
                        to="audit.transcript",
                    ),
                ),
                (
                    "auditor",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="assignment_tasks",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["assignment", "transcript", "auditor"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("assignment", "transcript", "auditor"), name="as_task_once"
                    ),
                ],
                "indexes": [
                    models.Index(fields=["auditor", "transcript"], name="as_task_auditor"),
                    models.Index(fields=["transcript", "auditor"], name="as_task_item"),
                ],
            },
        ),
    ]
