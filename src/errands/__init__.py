"""errands: background jobs for Python, from a SQLite file to Redis, PostgreSQL, MySQL or RabbitMQ.

>>> from errands import Errands
>>> app = Errands()                     # sqlite:///errands.db in the current folder
>>> @app.job(retries=3)
... def send_welcome(user_id: int) -> None: ...
>>> send_welcome.perform(42)
"""

from __future__ import annotations

from ._states import JobState
from .app import Errands
from .context import JobContext, current_job
from .errors import (
    BackendUnavailable,
    ConfigurationError,
    ErrandsError,
    Fail,
    JobTimeout,
    NotSupported,
    Retry,
    SerializationError,
    UnknownJob,
)
from .jobs import JobFunction, JobHandle, JobInfo
from .retry import Constant, Exponential
from .workflows import Progress, Signature, WorkflowHandle

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "ConfigurationError",
    "Constant",
    "Errands",
    "ErrandsError",
    "Exponential",
    "Fail",
    "JobContext",
    "JobFunction",
    "JobHandle",
    "JobInfo",
    "JobState",
    "JobTimeout",
    "NotSupported",
    "Progress",
    "Retry",
    "SerializationError",
    "Signature",
    "UnknownJob",
    "WorkflowHandle",
    "__version__",
    "current_job",
]
