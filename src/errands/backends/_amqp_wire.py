"""What errands puts on RabbitMQ: the names of its exchanges and queues, and how a job is
written into a message and read back. Pure functions, no connection: the backend and its link
threads share them, and they are unit-tested without a broker.

Topology (``P`` is the URL's ``prefix``, default ``errands``):

* ``P.jobs``, a direct exchange; work queue ``P.q.<queue>`` is bound to it by ``<queue>``.
  Work queues are durable quorum queues: replicated, and the broker counts redeliveries
  (``x-delivery-count``), which is how a job that kills every consumer gets its attempts counted.
* ``P.delay.<ms>``: a fanout exchange and a quorum queue whose messages expire after ``ms`` and
  are dead-lettered (at-least-once) to ``P.jobs`` with their original routing key: ``perform_in``
  and retry backoff without a broker plugin. Delays are rounded *up* to a bucket so a handful of
  queues serve every delay. They never expire: RabbitMQ's ``x-expires`` counts a queue without
  consumers as unused however many messages wait in it, and would delete pending retries.
* ``P.failed``: the dead-letter queue of a backend without a store (retries exhausted).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

__all__ = ["MAX_DELAY_MS", "Envelope", "Topology", "delay_bucket_ms", "delivery_count"]

# Quorum queues reject a TTL above 2^32-1 ms; a longer wait takes several hops (the claim sees
# the job is not due and sends it round again), so the cap is a day to keep delay queues few.
MAX_DELAY_MS = 24 * 3600 * 1000
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,49}")
DELIVERY_LIMIT = 2000  # the broker's own backstop, above any max_attempts errands accepts (1000)


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str = "errands"

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix) or self.prefix.startswith("amq."):
            raise ConfigurationError(
                f"invalid amqp prefix {self.prefix!r}: 1-50 of A-Z a-z 0-9 _ . : -, not 'amq.'")

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.jobs"

    @property
    def failed_queue(self) -> str:
        return f"{self.prefix}.failed"

    def work_queue(self, queue: str) -> str:
        # queue names are checked by config.check_queue_name (safe AMQP characters, <= 100)
        return f"{self.prefix}.q.{queue}"

    def delay_name(self, ms: int) -> str:
        return f"{self.prefix}.delay.{ms}"

    def work_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT}

    def delay_arguments(self, ms: int) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": ms,
            "x-dead-letter-exchange": self.exchange,
            # at-least-once dead-lettering needs reject-publish: a full queue refuses, never drops
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


def delay_bucket_ms(seconds: float) -> int:
    """The delay queue for a wait of ``seconds``: tenths up to a second, whole seconds up to a
    minute, then rounded up to
    1/16 of the power of two below it (at most ~6% late), capped at ``MAX_DELAY_MS``. Never early:
    a job that arrives before its ``run_at`` would only be sent round again."""
    ms = max(1, math.ceil(seconds * 1000))
    if ms <= 1000:
        return math.ceil(ms / 100) * 100
    if ms <= 60_000:
        return min(60_000, math.ceil(ms / 1000) * 1000)
    step = 1 << max(0, ms.bit_length() - 5)
    return min(MAX_DELAY_MS, math.ceil(ms / step) * step)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A job as one message carries it. Without a store the message is the whole record, so it
    holds everything a ``Claim`` and a failed-job listing need; with a store only ``id`` and
    ``queue`` matter (the record lives in the store). ``attempts`` counts attempts already used
    when the message was published; the broker's ``x-delivery-count`` adds the deliveries lost
    since (a consumer that died holding it)."""

    id: str
    name: str
    queue: str
    args: str = "[]"
    kwargs: str = "{}"
    attempts: int = 0
    max_attempts: int = 1
    priority: int = 0
    run_at: float | None = None
    created_at: float | None = None
    timeout: float | None = None
    meta: str | None = None
    error: str | None = None
    finished_at: float | None = None

    def to_body(self) -> bytes:
        return json.dumps({name: getattr(self, name) for name in _FIELDS}, separators=(",", ":"),
                          allow_nan=False).encode()

    @classmethod
    def from_body(cls, body: bytes) -> Envelope:
        """Decode defensively: ValueError naming what is wrong, never a half-read job."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("message body is not a JSON object")
        values: dict[str, Any] = {}
        for name, kinds in _FIELDS.items():
            value = data.get(name)
            if value is None and name in _REQUIRED:
                raise ValueError(f"message has no {name!r}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise ValueError(f"message field {name!r} has the wrong type: {value!r}")
            if value is not None:
                values[name] = value
        return cls(**values)


_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str,), "queue": (str,), "args": (str,), "kwargs": (str,),
    "attempts": (int,), "max_attempts": (int,), "priority": (int,), "run_at": (int, float),
    "created_at": (int, float), "timeout": (int, float), "meta": (str,), "error": (str,),
    "finished_at": (int, float),
}
_REQUIRED = frozenset({"id", "name", "queue"})


def delivery_count(headers: Mapping[str, Any] | None) -> int:
    """Deliveries of this message the broker saw returned (quorum queues' ``x-delivery-count``)."""
    value = (headers or {}).get("x-delivery-count", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
