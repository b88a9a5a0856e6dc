from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Transcript audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # sqlite connects the SQLite pragmas; the post_migrate handlers of rollup and search put
        # back the triggers a migration that remakes audit_transcript on SQLite drops.
        from audit import rollup, search, sqlite  # noqa: F401
