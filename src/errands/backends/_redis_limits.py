"""The Redis backend's global concurrency and rate limits (a mixin of ``RedisBackend``).

Every limit key lives after one fixed hash tag, ``<prefix>:{:limits}:`` (no escaped queue name
contains ``:``, so it is no queue's tag): each call is one script on one Redis Cluster slot,
atomic across every process. Keys, the limit key as data after the tag::

    <prefix>:{:limits}:slot:<key>   zset    holder -> when its hold lapses (server time)
    <prefix>:{:limits}:slots        zset    limit key -> its latest lapse (for slot_usage)
    <prefix>:{:limits}:rate:<key>   string  the GCRA theoretical arrival time

Each expires once nothing in it is live any more, so the limits never need a purge.
See ``redis_lua/acquire_slots.lua``, ``release_slots.lua``, ``slot_usage.lua``, ``take_rate.lua``.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._redis_codec import text
from .base import SlotRequest

__all__ = ["RedisLimits"]


class RedisLimits:
    """``acquire_slots`` / ``release_slots`` / ``slot_usage`` / ``take_rate`` for RedisBackend."""

    if TYPE_CHECKING:  # provided by RedisBackend
        prefix: str

        def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

    @property
    def _limits(self) -> str:
        return f"{self.prefix}:{{:limits}}:"

    def acquire_slots(self, requests: Sequence[SlotRequest], ttl: float) -> builtins.list[bool]:
        if not requests:
            return []
        if not math.isfinite(ttl):
            raise ConfigurationError(f"a slot's ttl must be finite seconds, got {ttl!r}")
        args: list[Any] = [repr(float(ttl))]
        for request in requests:
            args += [request.key, request.holder, int(request.limit)]
        return [bool(int(held)) for held in self._script("acquire_slots", [self._limits], args)]

    def release_slots(self, held: Sequence[tuple[str, str]]) -> None:
        if held:
            self._script("release_slots", [self._limits], [item for pair in held for item in pair])

    def slot_usage(self) -> dict[str, int]:
        flat = self._script("slot_usage", [self._limits], [])
        return {text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def take_rate(self, key: str, limit: int, period: float) -> float:
        if not (limit >= 1 and math.isfinite(period) and period > 0):
            raise ConfigurationError(f"a rate limit needs limit >= 1 per period > 0 seconds, "
                                     f"got {limit!r} per {period!r}")
        granted, wait = self._script("take_rate", [self._limits], [key, int(limit), repr(float(period))])
        return 0.0 if int(granted) else max(float(wait), 1e-6)
