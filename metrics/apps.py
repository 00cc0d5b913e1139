from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "metrics"
    verbose_name = "Metrics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from metrics import (
            checks,  # noqa: F401  (registers the checks)
            jobs,  # noqa: F401  (observes jobs through queues' signals)
        )
