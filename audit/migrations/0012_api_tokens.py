from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("audit", "0011_monitor_signals")]

    operations: list = []
