"""Each backend's declared capabilities, pinned: a change is a reviewed decision, not drift."""

from __future__ import annotations

from errands.backends import backend_class
from errands.backends.base import Capability

from .conftest import BACKENDS

C = Capability
# what every store keeps beside the jobs: paused queues, limit slots and rates, workflow wake-ups
STORE = frozenset({C.QUERIES, C.PRIORITIES, C.UNIQUE, C.QUEUE_CONTROL, C.LIMITS, C.WORKFLOWS})
CAPABILITY_TABLE: dict[str, frozenset[Capability]] = {
    "memory": STORE | {C.PUSH_WAKEUP},
    "sqlite": STORE | {C.TRANSACTIONAL_ENQUEUE, C.MULTI_PROCESS, C.PERSISTENT},
    "redis": STORE | {C.MULTI_PROCESS, C.PERSISTENT, C.PUSH_WAKEUP},
    "postgres": STORE | {C.TRANSACTIONAL_ENQUEUE, C.MULTI_PROCESS, C.PERSISTENT, C.PUSH_WAKEUP},
    # no PUSH_WAKEUP: MySQL has no LISTEN/NOTIFY; idle workers poll an index probe (2-50 ms)
    "mysql": STORE | {C.TRANSACTIONAL_ENQUEUE, C.MULTI_PROCESS, C.PERSISTENT},
    # the broker alone: no records to query, no uniqueness; quorum queues deliver first in, first out
    "amqp": frozenset({C.MULTI_PROCESS, C.PERSISTENT, C.PUSH_WAKEUP}),
    # with a store (SQLite here): the store's capabilities, plus the broker's push, minus priority order
    "amqp+sqlite": STORE - {C.PRIORITIES} | {C.TRANSACTIONAL_ENQUEUE, C.MULTI_PROCESS, C.PERSISTENT, C.PUSH_WAKEUP},
}


def test_capability_table(backend_name: str, url: str) -> None:
    assert backend_name in CAPABILITY_TABLE, (
        f"{backend_name} is in BACKENDS but has no row in CAPABILITY_TABLE: add its declared capabilities"
    )
    declared = frozenset(backend_class(url).capabilities_for(url))
    assert declared == CAPABILITY_TABLE[backend_name], (
        f"{backend_name} declares {sorted(c.name for c in declared)}, "
        f"the table says {sorted(c.name for c in CAPABILITY_TABLE[backend_name])}"
    )


def test_every_backend_has_a_table_row() -> None:
    missing = sorted(set(BACKENDS) - set(CAPABILITY_TABLE))
    assert not missing, f"backends without a capability row: {missing}"


def test_declared_capabilities_are_capabilities(backend_name: str, url: str) -> None:
    declared = backend_class(url).capabilities_for(url)
    assert isinstance(declared, frozenset)
    assert all(isinstance(c, Capability) for c in declared)
