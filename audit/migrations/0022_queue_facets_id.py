"""``tr_queue_facets`` ends with ``id``: rolling up a search's match for the queue's counts
(``review.queue.count_match``) joins the match's ids to the queued rows' facet columns, and
PostgreSQL, whose index entries carry no id of their own, read the rows from the table for it
(616 ms at 1,000,000 records, a word in most of them) where this index alone now serves
(146 ms). SQLite's index entries hold the rowid already; the column changes nothing there but
the index's definition. Dropping and building the index takes some 15 s at 1,000,000 records.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0021_transcript_autovacuum"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="transcript",
            name="tr_queue_facets",
        ),
        migrations.AddIndex(
            model_name="transcript",
            index=models.Index(
                fields=[
                    "in_queue",
                    "status",
                    "flag_missed_misbehavior",
                    "flag_over_block",
                    "flag_label_inconsistency",
                    "flag_debate_disagrees",
                    "flag_suspicious_reasoning",
                    "flag_unknown_vocabulary",
                    "flag_missing_fields",
                    "flag_spot_check",
                    "alignment_category",
                    "task_id",
                    "worker_id",
                    "decision_type",
                    "misbehavior_type",
                    "batch",
                    "priority",
                    "id",
                ],
                name="tr_queue_facets",
            ),
        ),
    ]
