from django.apps import AppConfig


class QueuesConfig(AppConfig):
    name = "queues"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from queues import checks, heartbeat  # noqa: F401  (system checks; worker signals)

        if settings.JOBS_DIAGNOSTIC_KINDS:
            from queues import diagnostics  # noqa: F401  (registers the diagnostic kinds)
