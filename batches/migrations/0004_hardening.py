"""Issue 13: the high-priority permission, and the table of Django's database cache (the default
cache when REDIS_URL is unset), so `migrate` alone prepares every deployment."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):

    dependencies = [
        ("batches", "0003_result_conversation_index"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="batch",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("use_high_priority", "Can give a batch high priority")],
                "verbose_name_plural": "batches",
            },
        ),
        migrations.RunPython(create_cache_table, migrations.RunPython.noop, elidable=True),
    ]
