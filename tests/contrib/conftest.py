"""The Django project fixture (``tests/contrib/django_project``): set up once per test session,
since Django configures itself once per process, with a SQLite file and a fresh PostgreSQL
database of its own (created here, dropped at the end), migrated for real."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest

DJANGO_PROJECT = Path(__file__).parent / "django_project"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class DjangoProject:
    folder: Path  # the project: manage.py is here
    data: Path  # the SQLite files
    env: dict[str, str]  # what a manage.py subprocess needs


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoProject]:
    pytest.importorskip("django")
    import django
    import psycopg
    from django.core.management import call_command
    from django.db import connections

    data = tmp_path_factory.mktemp("django")
    database = f"errands_dj_{uuid4().hex[:12]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    env = {"DJSHOP_SQLITE": str(data / "site.db"), "DJSHOP_PG_DB": database,
           "DJSHOP_SEPARATE": str(data / "separate.db"), "DJANGO_SETTINGS_MODULE": "djproject.settings"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    sys.path.insert(0, str(DJANGO_PROJECT))
    try:
        django.setup()
        call_command("migrate", verbosity=0)
        call_command("migrate", database="pg", verbosity=0)
        yield DjangoProject(DJANGO_PROJECT, data, env)
    finally:
        from errands.contrib.django import close_apps

        close_apps()
        connections.close_all()
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        sys.path.remove(str(DJANGO_PROJECT))
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
