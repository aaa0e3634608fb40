"""The exceptions errands raises, and the two a handler may raise to steer its job.

::

    ErrandsError
    ├── ConfigurationError    bad URL, bad option, missing extra
    ├── UnknownJob            no handler registered under a name
    ├── SerializationError    arguments or a result JSON can't carry
    ├── BackendUnavailable    the store can't be reached or refuses work
    ├── JobTimeout            a handler ran past its timeout
    └── NotSupported          a query this backend can't answer

    Retry  (handler → worker)  run again after ``in_`` seconds
    Fail   (handler → worker)  fail now, no retry

``Retry`` and ``Fail`` derive from ``ErrandsError`` too, so a broad
``except ErrandsError`` in user code never hides a bug of ours as a bare Exception.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = [
    "BackendUnavailable",
    "ConfigurationError",
    "ErrandsError",
    "Fail",
    "JobTimeout",
    "NotSupported",
    "Retry",
    "SerializationError",
    "UnknownJob",
]


class ErrandsError(Exception):
    """Root of every exception errands raises."""


class ConfigurationError(ErrandsError, ValueError):
    """A URL, option or definition is invalid, or an optional extra is missing."""


class UnknownJob(ErrandsError, LookupError):
    """No handler is registered under this job name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no job handler is registered under the name {name!r}")
        self.name = name


class SerializationError(ErrandsError, TypeError):
    """A value can't be stored as JSON; ``path`` names where it sits (``kwargs['when']``)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class BackendUnavailable(ErrandsError, ConnectionError):
    """The backend could not be reached, or refused the work (disk full, out of memory, locked)."""


class JobTimeout(ErrandsError, TimeoutError):
    """A handler ran longer than its job's ``timeout``."""


class NotSupported(ErrandsError):
    """This backend can't answer this query; the README's capability table says which can."""


class Retry(ErrandsError):
    """Raised inside a handler: run this job again after ``in_`` seconds (counts as an attempt).

    >>> raise Retry(in_=30)
    """

    def __init__(self, in_: float | timedelta | None = None, reason: str = "") -> None:
        delay = in_.total_seconds() if isinstance(in_, timedelta) else in_
        if delay is not None and not (0 <= delay < float("inf")):
            raise ConfigurationError(f"Retry(in_=...) must be a finite delay >= 0, got {in_!r}")
        super().__init__(reason or (f"retry requested in {delay:g}s" if delay is not None else "retry requested"))
        self.in_ = delay
        self.reason = reason


class Fail(ErrandsError):
    """Raised inside a handler: fail this job now, without retrying.

    >>> raise Fail("customer account was deleted")
    """

    def __init__(self, reason: str = "failed by handler") -> None:
        super().__init__(reason)
        self.reason = reason
