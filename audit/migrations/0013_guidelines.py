"""Versioned review guidelines (issue 11): ``GuidelineVersion`` (append-only, numbered from 1)
and ``Review.guideline_version``, the version a review was made under (null for reviews made
before guidelines were versioned). No data migration seeds version 1: the first read creates it
from the default rubric (``audit.team.guidelines.current``), so a flushed test database gets it
back too."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0012_api_tokens"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="GuidelineVersion",
            fields=[
                ("number", models.PositiveIntegerField(primary_key=True, serialize=False)),
                ("text", models.TextField()),
                ("note", models.CharField(blank=True, max_length=200)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
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
                "ordering": ["-number"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(number__gte=1), name="guideline_number_positive"
                    )
                ],
            },
        ),
        migrations.AddField(
            model_name="review",
            name="guideline_version",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="audit.guidelineversion",
            ),
        ),
    ]
