from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BatchesConfig(AppConfig):
    name = "batches"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_create_schedules, sender=self)
        # Connects the receiver that deletes a document's file with its row.
        import batches.documents.store  # noqa: F401


def _create_schedules(using: str = "default", **kwargs) -> None:
    """`migrate` creates the rescue schedule (no data migration: it is not schema)."""
    from django.db import connections
    from django_q.models import Schedule

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # django_q not migrated yet (e.g. `migrate batches` alone)
    from batches.engine.tasks import ensure_schedules
    from batches.notifications.tasks import ensure_schedules as ensure_notification_schedules
    from batches.retention import ensure_schedule as ensure_retention_schedule

    ensure_schedules()
    ensure_notification_schedules()
    ensure_retention_schedule()
