from django.apps import AppConfig


class DegradationConfig(AppConfig):
    name = "degradation"
    verbose_name = "Degradation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from degradation import checks  # noqa: F401  (registers the system checks)
