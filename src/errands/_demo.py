"""The app behind ``errands demo``: three small jobs of the kind a web app hands to a queue.

A few percent of jobs fail on their first attempt, the way a busy SMTP server or a slow object
store fails in real life, and succeed when retried. Which ones is decided by the job's key, so
every run fails the same jobs. Retries wait 0 s so the demo stays quick.
"""

from __future__ import annotations

import hashlib
import random
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .app import Errands
from .context import current_job
from .errors import Retry
from .jobs import JobFunction

__all__ = ["Demo", "create_demo"]

FIRST_ATTEMPT_FAILURE_PERCENT = 3
_NAMES = ["Ada", "Grace", "Linus", "Guido", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Tim"]
_WELCOME = string.Template(
    "Subject: Welcome to Errands, $first!\n"
    "To: $first <$email>\n\n"
    "Hi $first,\n\nthanks for signing up. Your account number is $user_id.\n"
    "Your first report is ready at https://example.com/reports/$user_id\n\n— the Errands team\n"
)


def fails_first(key: int) -> bool:
    """Whether the job for ``key`` fails its first attempt (spread evenly over the job kinds)."""
    return (key * 7919) % 100 < FIRST_ATTEMPT_FAILURE_PERCENT


@dataclass
class Demo:
    app: Errands
    jobs: list[JobFunction[Any, Any]]
    retried: int = 0  # first attempts that failed on purpose
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def failed_once(self) -> None:
        with self._lock:
            self.retried += 1

    def batches(self, count: int, size: int) -> Iterator[tuple[JobFunction[Any, Any], list[Any]]]:
        """``count`` calls, round robin over the jobs, as ``(job, [(args, kwargs), ...])`` batches."""
        for start in range(0, count, size):
            keys = range(start, min(start + size, count))
            for kind, job in enumerate(self.jobs):
                calls = [_call(kind, key) for key in keys if key % len(self.jobs) == kind]
                if calls:
                    yield job, calls


def _call(kind: int, key: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if kind == 0:
        return (key,), {}
    if kind == 1:
        return (f"img-{key:07d}",), {"width": 32}
    return (key,), {"month": "2025-10"}


def create_demo(url: str) -> Demo:
    app = Errands(url)
    demo = Demo(app, [])

    def transient(key: int, error: BaseException) -> None:
        if fails_first(key) and current_job().attempt == 1:
            demo.failed_once()
            raise error

    @app.job(queue="mail", retries=3, backoff=0)
    def send_welcome_email(user_id: int) -> dict[str, Any]:
        first = _NAMES[user_id % len(_NAMES)]
        message = _WELCOME.substitute(first=first, email=f"{first.lower()}.{user_id}@example.com", user_id=user_id)
        transient(user_id, ConnectionError("SMTP 421 4.7.0 try again later (simulated)"))
        return {"to": f"{first.lower()}.{user_id}@example.com", "bytes": len(message.encode())}

    @app.job(queue="media", retries=3, backoff=0)
    def make_thumbnail(image_id: str, width: int = 32) -> dict[str, Any]:
        key = int(image_id.rsplit("-", 1)[1])
        side = width * 2
        pixels = random.Random(key).randbytes(side * side)  # a synthetic grayscale "upload"
        transient(key, TimeoutError(f"object store read of {image_id} timed out (simulated)"))
        # nearest-neighbour halving: every other pixel of every other row
        thumb = b"".join(pixels[row * side:(row + 1) * side:2] for row in range(0, side, 2))
        return {"image": image_id, "size": f"{width}x{width}", "etag": hashlib.sha256(thumb).hexdigest()[:16]}

    @app.job(queue="reports", retries=3)
    def compute_report_row(account_id: int, month: str) -> dict[str, Any]:
        rng = random.Random(f"{account_id}:{month}")
        invoices = [rng.randint(500, 50_000) for _ in range(rng.randint(1, 20))]  # cents
        # Retry(in_=0): the handler chooses its own delay, whatever the job's backoff says
        transient(account_id, Retry(in_=0, reason="ledger replica is lagging (simulated)"))
        total = sum(invoices)
        return {"account": account_id, "month": month, "invoices": len(invoices), "total_cents": total,
                "vat_cents": round(total * 0.2)}

    demo.jobs = [send_welcome_email, make_thumbnail, compute_report_row]
    return demo
