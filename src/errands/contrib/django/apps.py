"""The Django app ``errands.contrib.django``: put it in INSTALLED_APPS for ``manage.py errands``
and to have ``manage.py migrate`` create errands' tables in a Django database it shares."""

from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.signals import setting_changed
from django.db.models.signals import post_migrate

from .backend import BACKEND_PATH, close_apps, get_app

logger = logging.getLogger("errands.django")

__all__ = ["ErrandsConfig"]


class ErrandsConfig(AppConfig):  # type: ignore[misc]  # Django is untyped
    name = "errands.contrib.django"
    label = "errands"
    verbose_name = "errands"

    def ready(self) -> None:
        # for every migrated app (this one has no models, so it never sends its own): cheap,
        # as an open backend has nothing more to do
        post_migrate.connect(create_tables, dispatch_uid="errands.create_tables")
        setting_changed.connect(_settings_changed)


def create_tables(using: str = "default", **kwargs: Any) -> None:
    """After ``migrate`` of a database that a TASKS alias keeps its jobs in, create errands' tables
    there too. Otherwise the first enqueue would, and inside a transaction that has already
    written, SQLite would make it wait for that very transaction's lock."""
    for alias, params in (getattr(settings, "TASKS", None) or {}).items():
        if params.get("BACKEND") != BACKEND_PATH:
            continue
        app = get_app(alias)
        if app.config.same_database and app.config.database == using:
            app.backend  # noqa: B018  # opening the backend creates or upgrades its tables
            logger.debug("errands tables ready in the %r database for TASKS[%r]", using, alias)


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("TASKS", "DATABASES"):  # override_settings in tests: the apps follow the settings
        close_apps()
