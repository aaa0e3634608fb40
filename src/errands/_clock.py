"""The clock a backend may be given instead of its own (``Errands("memory://", clock=...)``).

Only the memory backend takes one: the server backends read the server's clock on purpose
(DESIGN §2.1), so a worker with a wrong clock neither steals leases nor fires a tick twice.
``errands.testing.FakeClock`` is the clock tests inject (STYLE 10.3: inject time, never
``mock.patch`` it).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Clock"]


class Clock(Protocol):
    """Anything with ``now() -> float``: epoch seconds, as ``time.time()`` gives them."""

    def now(self) -> float: ...
