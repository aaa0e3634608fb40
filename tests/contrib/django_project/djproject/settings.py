"""Settings of the test project: a SQLite ``default`` database and a PostgreSQL ``pg`` one, and
three errands task backends: two keep their jobs in the Django database they follow (so an
enqueue joins the caller's transaction), ``separate`` in a SQLite file of its own (so an enqueue
inside ``atomic()`` waits for the commit). The tests set the DJSHOP_* variables."""

import importlib.util
import os

SECRET_KEY = "errands-tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1", ".example.com"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "errands.contrib.django",
    "djshop",
]
if importlib.util.find_spec("django.tasks") is None:  # Django < 6: the django-tasks backport
    INSTALLED_APPS.append("django_tasks")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "djproject.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJSHOP_SQLITE"]},
    "pg": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["DJSHOP_PG_DB"],
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    },
}

_BACKEND = "errands.contrib.django.TasksBackend"
TASKS = {
    "default": {"BACKEND": _BACKEND, "QUEUES": ["default", "mail"], "OPTIONS": {"retries": 0}},
    "pg": {"BACKEND": _BACKEND, "QUEUES": ["default", "mail"], "OPTIONS": {"database": "pg", "retries": 0}},
    "separate": {
        "BACKEND": _BACKEND,
        "QUEUES": [],  # any queue
        "OPTIONS": {"url": "sqlite:///" + os.environ["DJSHOP_SEPARATE"], "retries": 0, "lease": 10},
    },
}
