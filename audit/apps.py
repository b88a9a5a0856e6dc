from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Transcript audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit import sqlite  # noqa: F401  (connects the SQLite pragmas)
