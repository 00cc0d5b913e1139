"""Settings of the bare project: what ``django-admin startproject`` and DRF give a new project.

The ceiling the tenant API is compared with is a project as a team starts one: startproject's
installed apps and middleware, DRF with its default authentication (session, basic), permission
(AllowAny) and renderers, DEBUG off. No database is touched by its views (SQLite in memory is
configured only because the auth and session apps expect one) and no cache.

Served by ``gunicorn bare.wsgi:application`` from ``bench/`` (bench/ceiling.py does it). Nothing is
read from the environment: the bare views are the same whatever the project is configured with.
"""

import secrets

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECRET_KEY = secrets.token_urlsafe(50)  # nothing is signed: a fresh key per process is fine
ROOT_URLCONF = "bare.urls"
WSGI_APPLICATION = "bare.wsgi.application"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"

USE_TZ = True
TIME_ZONE = "UTC"
