from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("audit", "0010_queue_search")]

    operations: list = []
