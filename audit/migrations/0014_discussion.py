"""Issue 11, discussion: comments with their revisions, and "needs discussion" marks."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0013_guidelines"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Comment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "author",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "transcript",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="comments",
                        to="audit.transcript",
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "id"],
                "indexes": [
                    models.Index(fields=["transcript", "created_at", "id"], name="cm_thread"),
                ],
            },
        ),
        migrations.CreateModel(
            name="CommentRevision",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.PositiveIntegerField()),
                ("text", models.TextField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "comment",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="revisions",
                        to="audit.comment",
                    ),
                ),
            ],
            options={
                "ordering": ["comment", "number"],
                "constraints": [
                    models.UniqueConstraint(fields=("comment", "number"), name="cm_revision_once"),
                    models.CheckConstraint(
                        condition=models.Q(("number__gte", 1)), name="cm_revision_number"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("text", ""), _negated=True), name="cm_revision_text"
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="DiscussionMark",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("set_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("cleared_at", models.DateTimeField(blank=True, null=True)),
                (
                    "cleared_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "set_by",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "transcript",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="discussion_marks",
                        to="audit.transcript",
                    ),
                ),
            ],
            options={
                "ordering": ["set_at", "id"],
                "indexes": [
                    models.Index(fields=["transcript", "set_at"], name="dm_history"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("cleared_at__isnull", True)),
                        fields=("transcript",),
                        name="dm_open_once",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("cleared_at__isnull", True), ("cleared_by__isnull", True)),
                            models.Q(("cleared_at__isnull", False), ("cleared_by__isnull", False)),
                            _connector="OR",
                        ),
                        name="dm_cleared_both",
                    ),
                ],
            },
        ),
    ]
