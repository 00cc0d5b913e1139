from django.apps import AppConfig


class DegradationConfig(AppConfig):
    name = "degradation"
    verbose_name = "Degradation"
    default_auto_field = "django.db.models.BigAutoField"
