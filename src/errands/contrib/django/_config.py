"""Reading ``settings.TASKS[alias]`` into errands settings, and telling whether errands' store is
the Django database itself (then a task enqueued inside ``transaction.atomic()`` is written in
that very transaction)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ...config import Settings
from ...errors import ConfigurationError
from ...jobs import JobOptions

__all__ = ["BackendConfig", "database_url", "read_config", "same_database"]

# OPTIONS keys passed to Errands(...) as they are
SETTINGS_KEYS = ("lease", "store", "heartbeat", "poll_interval", "max_payload_bytes", "max_error_bytes")
# OPTIONS keys that are defaults of every task's job (Django's @task has no such arguments)
JOB_KEYS = ("retries", "timeout")
OTHER_KEYS = ("url", "database")
KNOWN_KEYS = frozenset(SETTINGS_KEYS + JOB_KEYS + OTHER_KEYS)
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


@dataclass(frozen=True)
class BackendConfig:
    """One ``TASKS`` alias, checked: ``database`` is the Django database alias whose transactions
    enqueues follow, ``same_database`` whether errands' store is that database."""

    alias: str
    settings: Settings
    job_options: JobOptions
    database: str
    same_database: bool


def read_config(alias: str, params: Mapping[str, Any], databases: Mapping[str, Mapping[str, Any]]) -> BackendConfig:
    """Check ``TASKS[alias]`` and build its config; a bad value raises ``ConfigurationError``
    naming the setting."""
    where = f"TASKS[{alias!r}]['OPTIONS']"
    options = params.get("OPTIONS") or {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"{where} must be a dict, got {options!r}")
    unknown = sorted(set(options) - KNOWN_KEYS)
    if unknown:
        raise ConfigurationError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
                                 f"known: {', '.join(sorted(KNOWN_KEYS))}")
    database = options.get("database", "default")
    if database not in databases:
        raise ConfigurationError(f"{where}['database'] is {database!r}, which is not in DATABASES")
    derived = database_url(databases[database])
    url = options.get("url")
    if url is None and derived is None:
        engine = databases[database].get("ENGINE", "?")
        raise ConfigurationError(f"{where} needs a 'url': the Django database {database!r} ({engine}) can't hold "
                                 "errands' jobs (SQLite files, PostgreSQL and MySQL/MariaDB can)")
    try:
        settings = Settings.build(url or derived, **{k: options[k] for k in SETTINGS_KEYS if k in options})
        job_options = JobOptions(**{k: options[k] for k in JOB_KEYS if k in options})
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    same = derived is not None and same_database(settings.url, derived)
    return BackendConfig(alias, settings, job_options, database, same)


def database_url(database: Mapping[str, Any]) -> str | None:
    """The errands URL of a Django database, or None for one errands can't use (an in-memory
    SQLite database, Oracle, ...)."""
    engine = str(database.get("ENGINE", ""))
    name = str(database.get("NAME") or "")
    if engine.endswith("sqlite3"):
        if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
            return None
        return "sqlite:///" + quote(os.path.abspath(name))  # an absolute path: sqlite:////abs/db
    scheme = "postgresql" if "postgresql" in engine else "mysql" if "mysql" in engine else None
    if scheme is None or not name:
        return None
    user = quote(str(database.get("USER") or ""), safe="")
    password = quote(str(database.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host = str(database.get("HOST") or "localhost")
    host = f"[{host}]" if ":" in host else host
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"{scheme}://{auth}{host}{port}/{quote(name, safe='')}"


def same_database(url: str, other: str) -> bool:
    """True when two errands URLs name the same SQLite file or the same server database."""
    return _target(url) == _target(other) is not None


def _target(url: str) -> tuple[str, ...] | None:
    parts = urlsplit(url)
    scheme = {"postgres": "postgresql", "mariadb": "mysql"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme == "sqlite":
        return (scheme, os.path.realpath(unquote(parts.path[1:])))
    if scheme not in _DEFAULT_PORTS:
        return None
    host = (parts.hostname or "localhost").lower()
    host = "127.0.0.1" if host in ("localhost", "::1") else host
    return (scheme, host, str(parts.port or _DEFAULT_PORTS[scheme]), unquote(parts.path.lstrip("/")))
