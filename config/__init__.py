# The Celery app is loaded with Django (Celery's documented Django set-up), so that
# ``@shared_task`` and every publish use it, with the CELERY_* settings.
from config.celery import app as celery_app

__all__ = ["celery_app"]
