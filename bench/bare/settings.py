"""Settings of the bare project: no database, no cache, no middleware, DRF's plainest defaults.

Served by ``gunicorn bare.wsgi:application`` from ``bench/`` (bench/ceiling.py does it). Nothing is
read from the environment: the bare views are the same whatever the project is configured with.
"""

import secrets

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECRET_KEY = secrets.token_urlsafe(50)  # nothing is signed: a fresh key per process is fine
ROOT_URLCONF = "bare.urls"
WSGI_APPLICATION = "bare.wsgi.application"

# DRF's request.user is an AnonymousUser (its UNAUTHENTICATED_USER default), which needs the auth
# app installed; AnonymousUser itself never touches the database.
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict] = {}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}

USE_TZ = True
TIME_ZONE = "UTC"

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_THROTTLE_CLASSES": [],
}
