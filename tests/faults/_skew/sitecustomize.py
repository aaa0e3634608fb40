"""Loaded at interpreter start when this folder is first on PYTHONPATH: shifts this process's
wall clock (``time.time``, ``time.time_ns``, ``datetime.now``/``utcnow``) by
``$FAULT_CLOCK_SKEW`` seconds, as a machine whose clock runs ahead or behind would. Monotonic
clocks are left alone, as NTP leaves them."""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time

_SKEW = float(os.environ.get("FAULT_CLOCK_SKEW", "0") or 0)

if _SKEW:
    _real_time, _real_time_ns = _time.time, _time.time_ns

    def _time_shifted() -> float:
        return _real_time() + _SKEW

    def _time_ns_shifted() -> int:
        return _real_time_ns() + int(_SKEW * 1e9)

    _time.time = _time_shifted
    _time.time_ns = _time_ns_shifted

    class _ShiftedDatetime(_datetime.datetime):
        __slots__ = ()  # the C type's size, which compiled extensions check at import
        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> _datetime.datetime:  # type: ignore[override]
            return _datetime.datetime.fromtimestamp(_time_shifted(), tz)

        @classmethod
        def utcnow(cls) -> _datetime.datetime:  # type: ignore[override]
            return _datetime.datetime.fromtimestamp(_time_shifted(), _datetime.timezone.utc).replace(tzinfo=None)

    _datetime.datetime = _ShiftedDatetime  # type: ignore[misc]
