"""Backends: ``open_backend(url)`` picks one by the URL's scheme and imports it lazily, so a
missing optional extra is a ConfigurationError naming the extra to install."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .base import Backend, Capability

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["SCHEMES", "Backend", "Capability", "open_backend"]

# scheme -> (module, class, the extra whose packages the module needs)
SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("memory", "MemoryBackend", None),
    "sqlite": ("sqlite", "SqliteBackend", None),
    "redis": ("redis", "RedisBackend", "redis"),
    "rediss": ("redis", "RedisBackend", "redis"),
    "postgresql": ("postgres", "PostgresBackend", "postgres"),
    "postgres": ("postgres", "PostgresBackend", "postgres"),
    "mysql": ("mysql", "MysqlBackend", "mysql"),
    "mariadb": ("mysql", "MysqlBackend", "mysql"),
    "amqp": ("amqp", "AmqpBackend", "amqp"),
    "amqps": ("amqp", "AmqpBackend", "amqp"),
}


def backend_class(url: str) -> type[Backend]:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigurationError(f"unknown backend URL {_redact(url)!r}: expected one of {known}")
    module_name, class_name, extra = SCHEMES[scheme]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{module_name}":
            raise ConfigurationError(f"the {scheme}:// backend is not part of this release yet") from None
        if extra is None or (exc.name or "").startswith("errands"):
            raise
        raise ConfigurationError(
            f"the {scheme}:// backend needs the {exc.name!r} package: pip install 'errands[{extra}]'"
        ) from exc
    cls: type[Backend] = getattr(module, class_name)
    return cls


def open_backend(url: str, settings: Settings) -> Backend:
    """Build (not yet connect) the backend for ``url``."""
    return backend_class(url)(url, settings)


def _redact(url: str) -> str:
    """Hide a password in a URL shown to people: ``redis://:secret@h`` -> ``redis://:***@h``."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


redact_url = _redact
