"""Settings: one typed object, built once from keywords, then ``ERRANDS_*`` variables, then
defaults, and validated with errors that name the key and the bad value."""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from .encryption import ENV_VAR, parse_keys
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["DEFAULT_URL", "Settings", "check_job_name", "check_queue_name", "check_spool"]

DEFAULT_URL = "sqlite:///errands.db"

# One rule for queue names, so they are safe as SQL data, Redis keys and AMQP names alike:
# 1-100 of A-Z a-z 0-9 _ . : -, starting with a letter or digit, and not AMQP's reserved "amq.".
_QUEUE_RE = re.compile(r"(?!amq\.)[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
# Job names follow Python dotted names: 1-200 of letters, digits, _ . : -, not starting with . : -
_NAME_RE = re.compile(r"[A-Za-z0-9_<>][A-Za-z0-9_.:<>-]{0,199}")
MAX_UNIQUE_KEY = 512


def check_queue_name(queue: object) -> str:
    if not isinstance(queue, str) or not _QUEUE_RE.fullmatch(queue):
        raise ConfigurationError(
            f"invalid queue name {queue!r}: use 1-100 characters from A-Z a-z 0-9 _ . : -, "
            "starting with a letter or digit, and not starting with 'amq.'"
        )
    return queue


def check_job_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigurationError(
            f"invalid job name {name!r}: use 1-200 characters from A-Z a-z 0-9 _ . : -"
        )
    return name


def _positive(name: str, value: float, *, upper: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= upper):
        raise ConfigurationError(f"{name} must be a number > 0 (and <= {upper:g}), got {value!r}")
    return float(value)


def check_spool(url: str, spool: object, store: str | None = None) -> None:
    """Refuse a spool where it can't help: ``memory://`` and ``sqlite://`` are never "away" (an
    unusable local file would be as unusable a second time), and a spool must be a file."""
    if not isinstance(spool, str) or not spool.strip() or spool.strip() == ":memory:":
        raise ConfigurationError(f"spool must be the path of a SQLite file, got {spool!r}")
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("amqp", "amqps"):
        # with a store, enqueue is the store's commit and a broker outage is ridden out by
        # re-publishing: the spool is for when the store itself is a server that may be away
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        store = store or query.get("store")
        if store:
            check_spool(store, spool)
            return
    if scheme in ("memory", "sqlite"):
        raise ConfigurationError(
            f"spool= is for server backends (redis, postgresql, mysql): {scheme}:// is never "
            "unreachable, so there is nothing to spool for"
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a backend and a worker are configured with.

    ``lease``: seconds a claimed job stays owned without a heartbeat.
    ``heartbeat``: seconds between heartbeats (default lease / 3).
    ``poll_interval``: the longest an idle worker sleeps before looking again.
    ``max_payload_bytes``: arguments above this are refused at enqueue.
    ``max_error_bytes``: stored error text (with traceback) is cut to this.
    ``store``: a second backend URL that keeps job records when ``url`` can't (AMQP).
    ``clock``: what ``memory://`` reads the time from (``errands.testing.FakeClock``); the other
    backends keep their server's clock, so they refuse one.
    ``encryption_keys``: Fernet keys for ``encrypt=True`` jobs, the first encrypts (``errands.encryption``).
    ``spool``: a local SQLite file that keeps jobs while a server backend is unreachable (``errands.spool``).
    """

    url: str = DEFAULT_URL
    lease: float = 30.0
    heartbeat: float | None = None
    poll_interval: float = 0.5
    max_payload_bytes: int = 1024 * 1024
    max_error_bytes: int = 64 * 1024
    store: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    clock: Clock | None = None
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)  # secrets: never in a repr or a log
    spool: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or "://" not in self.url:
            raise ConfigurationError(f"url must look like scheme://..., got {self.url!r}")
        if self.clock is not None and not self.url.lower().startswith("memory://"):
            # a server backend decides times by its own clock (DESIGN 2.1): silently ignoring
            # the clock would make a frozen-time test pass for the wrong reason
            scheme = self.url.split("://")[0]
            raise ConfigurationError(f"clock= is for the memory:// backend only, not {scheme}://")
        if self.clock is not None and not callable(getattr(self.clock, "now", None)):
            raise ConfigurationError(f"clock must have a now() returning epoch seconds, got {self.clock!r}")
        _positive("lease", self.lease, upper=86400 * 7)
        if self.heartbeat is not None:
            _positive("heartbeat", self.heartbeat, upper=self.lease)
        _positive("poll_interval", self.poll_interval, upper=60)
        for name in ("max_payload_bytes", "max_error_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
                raise ConfigurationError(f"{name} must be an int >= 1024, got {value!r}")
        if self.spool is not None:
            check_spool(self.url, self.spool, self.store)

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat if self.heartbeat is not None else self.lease / 3

    @classmethod
    def build(cls, url: str | None = None, **overrides: Any) -> Settings:
        """Keywords win over ``ERRANDS_URL`` / ``ERRANDS_LEASE`` / ``ERRANDS_STORE`` /
        ``ERRANDS_ENCRYPTION_KEYS``, which win over defaults."""
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        values["url"] = url or os.environ.get("ERRANDS_URL") or DEFAULT_URL
        if "lease" not in values and os.environ.get("ERRANDS_LEASE"):
            values["lease"] = _env_float("ERRANDS_LEASE")
        if "store" not in values and os.environ.get("ERRANDS_STORE"):
            values["store"] = os.environ["ERRANDS_STORE"]
        if "encryption_keys" in values:
            values["encryption_keys"] = parse_keys(values["encryption_keys"], "encryption_keys")
        elif os.environ.get(ENV_VAR):
            values["encryption_keys"] = parse_keys(os.environ[ENV_VAR])
        if isinstance(values.get("spool"), os.PathLike):
            values["spool"] = os.fspath(values["spool"])
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _env_float(name: str) -> float:
    try:
        return float(os.environ[name])
    except ValueError:
        raise ConfigurationError(f"${name} must be a number, got {os.environ[name]!r}") from None
