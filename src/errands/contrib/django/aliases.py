"""``errands.contrib.django.aliases:ALIAS`` names the ``Errands`` app of ``TASKS[ALIAS]``, so the
``errands`` command line can be given a Django project's app like any other:
``errands worker errands.contrib.django.aliases:default`` (with ``DJANGO_SETTINGS_MODULE`` set).
``manage.py errands`` hands the worker supervisor this form, so each worker process it starts
sets Django up and finds the same app.
"""

from __future__ import annotations

import django
from django.apps import apps
from django.conf import settings

from .backend import DjangoErrands, get_app

__all__: list[str] = []


def __getattr__(alias: str) -> DjangoErrands:
    if alias.startswith("__"):  # importlib and pickle probe dunders; they are no aliases
        raise AttributeError(alias)
    if not apps.ready:  # a fresh process (a supervisor's child): set Django up from its settings
        django.setup()
    if alias not in (getattr(settings, "TASKS", None) or {}):
        raise AttributeError(f"settings.TASKS has no {alias!r} backend")
    return get_app(alias)
