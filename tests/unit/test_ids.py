"""Client-made ids: UUIDv7 text, unique, monotonic within a process, sortable by time."""

from __future__ import annotations

import threading
import time
import uuid

from errands._ids import deterministic_id, new_id


def test_new_ids_are_uuid7() -> None:
    value = new_id()
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_new_ids_carry_the_time() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    ms = int(value.replace("-", "")[:12], 16)
    assert before <= ms <= after + 1


def test_new_ids_are_strictly_increasing() -> None:
    ids = [new_id() for _ in range(20_000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_new_ids_are_unique_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(8)]

    def make(index: int) -> None:
        out[index] = [new_id() for _ in range(2000)]

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for chunk in out for i in chunk]
    assert len(set(every)) == len(every)
    assert all(chunk == sorted(chunk) for chunk in out)


def test_ids_sort_by_creation_time() -> None:
    first = new_id()
    time.sleep(0.002)  # two distinct milliseconds: what is being tested
    second = new_id()
    assert first < second


def test_deterministic_ids() -> None:
    a = deterministic_id(1_700_000_000_000, "sweep@2023")
    assert a == deterministic_id(1_700_000_000_000, "sweep@2023")
    assert a != deterministic_id(1_700_000_000_000, "other@2023")
    assert a < deterministic_id(1_700_000_001_000, "sweep@2023"), "ordered by the ms part"
    parsed = uuid.UUID(a)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert int(a.replace("-", "")[:12], 16) == 1_700_000_000_000
