"""Redis-only behaviour: key layout and hash tags, URL options, blocking wake-ups, retention,
records and keys damaged by hand, NOSCRIPT recovery, the server checks at open(), memory
exhaustion, and concurrent claimers. Shared behaviour is tested in tests/conformance.

Each test works under its own key prefix on the shared server (127.0.0.1:6379) and deletes
those keys afterwards; tests that flush scripts or reconfigure the server start a private one."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

redis = pytest.importorskip("redis")
from redis.crc import key_slot

from errands._ids import new_id
from errands.backends import open_backend
from errands.backends.base import JobQuery, NewJob, Outcome, SlotRequest
from errands.backends.redis import RedisBackend, escape_queue, parse_duration
from errands.config import Settings
from errands.errors import BackendUnavailable, ConfigurationError
from errands.jobs import JobState
from tests.conftest import wait_until
from tests.faults._servers import RedisServer, free_port

SHARED = "redis://127.0.0.1:6379/0"


def job(queue: str = "default", **fields: Any) -> NewJob:
    values: dict[str, Any] = {"id": new_id(), "name": "noop", "queue": queue, "args": "[]", "kwargs": "{}",
                              "max_attempts": 3}
    values.update(fields)
    return NewJob(**values)


def make(url: str) -> RedisBackend:
    backend = open_backend(url, Settings(url=url))
    assert isinstance(backend, RedisBackend)
    backend.open()
    return backend


def drop(client: Any, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def raw() -> Iterator[Any]:
    client = redis.Redis.from_url(SHARED)
    yield client
    client.close()


@pytest.fixture
def prefix(raw: Any) -> Iterator[str]:
    name = f"tr{uuid.uuid4().hex[:10]}"
    yield name
    drop(raw, name)


@pytest.fixture
def backend(prefix: str) -> Iterator[RedisBackend]:
    instance = make(f"{SHARED}?prefix={prefix}")
    yield instance
    instance.close()


def keys_of(raw: Any, prefix: str) -> list[str]:
    return sorted(k.decode("utf-8", "surrogateescape") for k in raw.scan_iter(match=f"{prefix}:*", count=1000))


# key layout --------------------------------------------------------------------------------------

ODD_QUEUES = ["default", "a:b", "{tag}", "q\nq", "", "x'; DROP TABLE jobs;--", "*", "\u202eevil", "%41"]


def test_keys_live_under_the_prefix_and_each_queue_shares_one_hash_tag(backend: RedisBackend, raw: Any,
                                                                       prefix: str) -> None:
    for queue in ODD_QUEUES:
        backend.enqueue([job(queue), job(queue, delay=60), job(queue, unique_key="u{1}")])
    claims = backend.claim(None, 100, worker_id="w", lease=30)
    assert len(claims) == 2 * len(ODD_QUEUES)
    assert {c.queue for c in claims} == set(ODD_QUEUES)
    backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims[::2]])

    keys = keys_of(raw, prefix)
    assert all(k.startswith(prefix + ":") for k in keys)
    tags: dict[str, set[int]] = {}
    for key in keys:
        rest = key[len(prefix) + 1:]
        if rest.startswith("{"):
            tag = rest[1:rest.index("}")]
            tags.setdefault(tag, set()).add(key_slot(key.encode("utf-8", "surrogateescape")))
        else:
            assert rest in ("queues", "newqueue"), key
    assert set(tags) == {escape_queue(q) for q in ODD_QUEUES}
    assert all(len(slots) == 1 for slots in tags.values()), "one queue's keys span several cluster slots"
    # the escaping is injective and never lets a name open or close a hash tag
    assert len({escape_queue(q) for q in ODD_QUEUES}) == len(ODD_QUEUES)
    assert all("{" not in escape_queue(q) and "}" not in escape_queue(q) for q in ODD_QUEUES)

    counts = backend.counts(by_queue=True)
    assert set(counts) == set(ODD_QUEUES)
    for queue in ODD_QUEUES:
        assert sum(counts[queue].values()) == 3
        assert {r.queue for r in backend.list(JobQuery(queue=queue))} == {queue}
    assert backend.get(claims[0].id) is not None


def test_url_options(prefix: str) -> None:
    backend = make(f"{SHARED}?prefix={prefix}&retention=12h&failed_retention=forever&socket_timeout=3")
    try:
        assert (backend.prefix, backend.retention, backend.failed_retention) == (prefix, 43200.0, 0.0)
        assert backend.client.connection_pool.connection_kwargs["socket_timeout"] == 3.0
        assert backend.now() == pytest.approx(time.time(), abs=5)
    finally:
        backend.close()
    assert RedisBackend(SHARED, Settings(url=SHARED)).prefix == "errands"
    for bad in ("prefix=a{b}", "prefix=", "retention=soon", "retention=-1d", "failed_retention=0"):
        with pytest.raises(ConfigurationError):
            RedisBackend(f"{SHARED}?{bad}", Settings(url=SHARED))


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1.5h", 5400.0),
                                               ("7d", 604800.0), ("2w", 1209600.0), ("forever", 0.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration("retention", text) == seconds


# wake-ups ------------------------------------------------------------------------------------------


@pytest.fixture
def private(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def _blocked_wait(backend: RedisBackend, server: RedisServer, queues: list[str] | None,
                  timeout: float) -> tuple[threading.Thread, list[float]]:
    """Start ``backend.wait`` on a thread and return once its BLPOP is parked on the server."""
    woke: list[float] = []

    def run() -> None:
        backend.wait(queues, timeout)
        woke.append(time.monotonic())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    admin = redis.Redis(port=server.port)
    try:
        wait_until(lambda: admin.info("clients")["blocked_clients"] == 1, timeout=5, message="a blocked BLPOP")
    finally:
        admin.close()
    return thread, woke


@pytest.mark.parametrize("queues", [["mail"], None])
def test_blocked_wait_wakes_within_milliseconds_of_an_enqueue(private: RedisServer, queues: list[str] | None) -> None:
    waiter, producer = make(private.url()), make(private.url())
    try:
        producer.enqueue([job("mail")])  # the queue is known; its token is consumed by this claim
        assert len(waiter.claim(queues, 10, worker_id="w", lease=30)) == 1
        thread, woke = _blocked_wait(waiter, private, queues, 10.0)
        enqueued = time.monotonic()
        producer.enqueue([job("mail")])
        thread.join(5)
        assert woke and woke[0] - enqueued < 0.1, f"woke {woke[0] - enqueued if woke else None}s after enqueue"
        assert len(waiter.claim(queues, 10, worker_id="w", lease=30)) == 1
    finally:
        waiter.close()
        producer.close()


def test_wait_on_every_queue_sees_a_queue_created_while_it_blocks(private: RedisServer) -> None:
    waiter, producer = make(private.url()), make(private.url())
    try:
        thread, woke = _blocked_wait(waiter, private, None, 10.0)
        enqueued = time.monotonic()
        producer.enqueue([job("brand-new")])
        thread.join(5)
        assert woke and woke[0] - enqueued < 0.1
        assert [c.queue for c in waiter.claim(None, 10, worker_id="w", lease=30)] == ["brand-new"]
    finally:
        waiter.close()
        producer.close()


def test_idle_wait_blocks_until_timeout_or_the_next_scheduled_job(backend: RedisBackend) -> None:
    backend.enqueue([job("q")])
    backend.claim(["q"], 10, worker_id="w", lease=30)
    started = time.monotonic()
    backend.wait(["q"], 0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    backend.enqueue([job("q", delay=0.2)])
    started = time.monotonic()
    backend.wait(["q"], 5.0)
    assert time.monotonic() - started < 1.0, "wait ignored the scheduled job due in 0.2 s"
    assert len(backend.claim(["q"], 10, worker_id="w", lease=30)) == 1


def test_notify_wakes_a_blocked_wait_of_this_process(private: RedisServer) -> None:
    backend = make(private.url())
    try:
        thread, woke = _blocked_wait(backend, private, ["q"], 10.0)
        notified = time.monotonic()
        backend.notify()
        thread.join(5)
        assert woke and woke[0] - notified < 0.1
    finally:
        backend.close()


def test_wait_never_raises_when_the_server_is_gone(tmp_path: Path) -> None:
    backend = make(f"redis://127.0.0.1:{free_port()}/0?prefix=gone")
    started = time.monotonic()
    backend.wait(["q"], 0.3)
    backend.wait(None, 0.3)
    assert time.monotonic() - started < 3.0
    backend.close()


# damaged data ----------------------------------------------------------------------------------------


def test_an_id_whose_record_is_gone_is_skipped_and_counted(backend: RedisBackend, raw: Any, prefix: str) -> None:
    first, gone, last = job(), job(), job()
    backend.enqueue([first, gone, last])
    raw.delete(f"{prefix}:{{default}}:job:{gone.id}")
    assert [r.id for r in backend.list(JobQuery())] == [last.id, first.id]
    claims = backend.claim(["default"], 10, worker_id="w", lease=30)
    assert [c.id for c in claims] == [first.id, last.id]
    assert backend.skipped >= 1
    assert raw.zscore(f"{prefix}:{{default}}:available", gone.id) is None  # dropped from the index
    assert backend.counts()["available"] == 0


def test_a_key_of_the_wrong_type_affects_its_queue_only(backend: RedisBackend, raw: Any, prefix: str) -> None:
    good, bad = job("good"), job("bad")
    backend.enqueue([good, bad])
    raw.delete(f"{prefix}:{{bad}}:available")
    raw.set(f"{prefix}:{{bad}}:available", "not a sorted set")

    claims = backend.claim(None, 10, worker_id="w", lease=30)
    assert [c.id for c in claims] == [good.id]
    assert "bad" in backend.queue_errors and "not a zset" in backend.queue_errors["bad"]
    assert backend.settle([Outcome(good.id, claims[0].token, JobState.SUCCEEDED)]) == []
    assert backend.counts(by_queue=True) == {"good": {**dict.fromkeys(backend.counts(), 0), "succeeded": 1}}
    assert backend.get(bad.id) is not None and backend.get(good.id) is not None
    with pytest.raises(BackendUnavailable, match="not a zset"):
        backend.enqueue([job("bad")])
    backend.enqueue([job("good")])
    assert backend.maintain().promoted == 0
    assert len(backend.claim(["good", "bad"], 10, worker_id="w", lease=30)) == 1


def test_corrupt_records_fail_in_place_and_the_others_are_claimed(backend: RedisBackend, raw: Any,
                                                                  prefix: str) -> None:
    jobs = [job() for _ in range(4)]
    backend.enqueue(jobs)
    base = f"{prefix}:{{default}}:job:"
    raw.hset(base + jobs[0].id, "attempts", "-1")
    raw.hset(base + jobs[1].id, "state", "zombie")
    raw.hset(base + jobs[2].id, "args", b"\xff\xfe not utf-8")
    claims = backend.claim(["default"], 10, worker_id="w", lease=30)
    assert [c.id for c in claims] == [jobs[2].id, jobs[3].id]
    assert isinstance(claims[0].args, bytes)  # raw: the worker's decoder fails that one job
    for corrupt in jobs[:2]:
        record = backend.get(corrupt.id)
        assert record is not None and record.state == "failed"
        assert record.error is not None and record.error.startswith("corrupt job record")
    assert backend.corrupt == 2


# retention ---------------------------------------------------------------------------------------------


def test_retention_ttl_and_purge_by_maintenance(prefix: str, raw: Any) -> None:
    backend = make(f"{SHARED}?prefix={prefix}&retention=1s&failed_retention=forever")
    try:
        done, dead = job(), job(max_attempts=1)
        backend.enqueue([done, dead])
        claims = {c.id: c for c in backend.claim(None, 10, worker_id="w", lease=30)}
        backend.settle([Outcome(done.id, claims[done.id].token, JobState.SUCCEEDED, result="1"),
                        Outcome(dead.id, claims[dead.id].token, JobState.FAILED, error="boom")])
        base = f"{prefix}:{{default}}:job:"
        assert 0 < raw.ttl(base + done.id) <= 3601  # the backstop TTL: retention + an hour
        assert raw.ttl(base + dead.id) == -1  # failed_retention=forever: kept

        def purged() -> bool:
            backend.maintain()
            return backend.get(done.id) is None

        wait_until(purged, timeout=10, message="maintain() to purge the succeeded job")
        assert backend.counts()["succeeded"] == 0 and backend.counts()["failed"] == 1
        assert backend.retry([dead.id]) == 1 and raw.ttl(base + dead.id) == -1
    finally:
        backend.close()


def test_retried_job_loses_its_ttl(prefix: str, raw: Any) -> None:
    backend = make(f"{SHARED}?prefix={prefix}&failed_retention=1d")
    try:
        dead = job()
        backend.enqueue([dead])
        claim = backend.claim(None, 1, worker_id="w", lease=30)[0]
        backend.settle([Outcome(dead.id, claim.token, JobState.FAILED, error="boom")])
        key = f"{prefix}:{{default}}:job:{dead.id}"
        assert raw.ttl(key) > 86400
        assert backend.retry([dead.id]) == 1
        assert raw.ttl(key) == -1
        assert backend.purge(JobState.FAILED, time.time() + 10) == 0
    finally:
        backend.close()


# server: scripts, configuration, memory, availability -------------------------------------------------


def test_scripts_reload_after_script_flush(private: RedisServer) -> None:
    backend = make(private.url())
    admin = redis.Redis(port=private.port)
    try:
        backend.enqueue([job()])
        admin.script_flush()
        backend.enqueue([job()])  # the pipelined path
        admin.script_flush()
        claims = backend.claim(None, 10, worker_id="w", lease=30)  # the single-call path
        assert len(claims) == 2
        admin.script_flush()
        assert backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims]) == []
    finally:
        backend.close()
        admin.close()


def test_open_warns_when_redis_may_evict_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer(tmp_path / "lru", "--maxmemory-policy", "allkeys-lru") as server:
        with caplog.at_level(logging.WARNING, logger="errands"):
            backend = make(server.url())
        backend.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("maxmemory-policy=allkeys-lru" in m and "noeviction" in m for m in warnings), warnings


def test_no_warning_with_noeviction(private: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="errands"):
        make(private.url()).close()
    assert not [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]


def test_out_of_memory_is_backend_unavailable_and_recovers(private: RedisServer) -> None:
    backend = make(private.url())
    admin = redis.Redis(port=private.port)
    try:
        kept = backend.enqueue([job()])[0].id
        admin.config_set("maxmemory", 1)  # below what is used: every write that grows memory is refused
        with pytest.raises(BackendUnavailable, match="out of memory"):
            backend.enqueue([job(), job()])
        admin.config_set("maxmemory", 0)
        assert backend.counts()["available"] == 1  # the refused batch left nothing behind
        assert backend.enqueue([job()])[0].created
        assert backend.get(kept) is not None
    finally:
        admin.config_set("maxmemory", 0)
        backend.close()
        admin.close()


def test_a_down_server_is_backend_unavailable_within_seconds() -> None:
    backend = make(f"redis://127.0.0.1:{free_port()}/0?prefix=down")  # open() itself does not raise
    try:
        for call in (lambda: backend.enqueue([job()]), lambda: backend.claim(None, 1, worker_id="w", lease=1),
                     backend.now, lambda: backend.counts()):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="cannot reach redis"):
                call()
            assert time.monotonic() - started < 5.0
    finally:
        backend.close()


# concurrency -------------------------------------------------------------------------------------------


def test_eight_threads_claiming_never_claim_one_job_twice(prefix: str) -> None:
    url = f"{SHARED}?prefix={prefix}"
    shared = make(url)
    own = [make(url) for _ in range(4)]
    total = 2000
    for start in range(0, total, 500):
        shared.enqueue([job(f"q{i % 3}", priority=i % 5) for i in range(start, start + 500)])
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def claimer(backend: RedisBackend, n: int) -> None:
        barrier.wait()
        while True:
            claims = backend.claim(None if n % 2 else ["q0", "q1", "q2"], 7, worker_id=f"w{n}", lease=30)
            if not claims:
                return
            backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims[::2]])
            with lock:
                claimed.extend(c.id for c in claims)

    threads = [threading.Thread(target=claimer, args=(own[n // 2] if n % 2 else shared, n)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        duplicates = [i for i, n in Counter(claimed).items() if n > 1]
        assert not duplicates and len(claimed) == total
        counts = shared.counts()
        assert counts["succeeded"] + counts["running"] == total and counts["available"] == 0
    finally:
        for backend in (shared, *own):
            backend.close()


# paused queues, limits, unique_for (#9) ------------------------------------------------------------

ODD_KEYS = ["*", "?", "[a-z]", "{tag}", "a:b", "%", "", "q\nq", "x'; return 1 --", "\u202eevil"]


def test_pause_and_limit_keys_live_under_the_prefix_in_one_slot_each(backend: RedisBackend, raw: Any,
                                                                     prefix: str) -> None:
    backend.enqueue([job(q) for q in ODD_QUEUES])
    backend.set_paused(ODD_QUEUES, True)
    assert backend.acquire_slots([SlotRequest(k, "h", 5) for k in ODD_KEYS], ttl=30) == [True] * len(ODD_KEYS)
    assert all(backend.take_rate(k, 5, 60.0) == 0.0 for k in ODD_KEYS)

    keys = keys_of(raw, prefix)
    assert all(k.startswith(prefix + ":") for k in keys)
    for queue in ODD_QUEUES:  # each flag sits in its queue's slot
        flag = f"{prefix}:{{{escape_queue(queue)}}}:paused"
        assert flag in keys
        assert key_slot(flag.encode("utf-8", "surrogateescape")) == \
            key_slot(f"{prefix}:{{{escape_queue(queue)}}}:available".encode("utf-8", "surrogateescape"))
    limit_keys = [k for k in keys if k.startswith(f"{prefix}:{{:limits}}:")]
    assert len(limit_keys) == 2 * len(ODD_KEYS) + 1  # a slot set and a rate per key, and the index
    assert len({key_slot(k.encode("utf-8", "surrogateescape")) for k in limit_keys}) == 1
    assert ":limits" not in {escape_queue(q) for q in ODD_QUEUES}, "no queue's tag is the limits' tag"


def test_names_with_lua_and_glob_metacharacters_are_data(backend: RedisBackend) -> None:
    backend.enqueue([job("*"), job("a")])
    backend.set_paused(["*"], True)
    assert backend.paused_queues() == frozenset({"*"})
    assert [c.queue for c in backend.claim(None, 10, worker_id="w", lease=30)] == ["a"], "'*' paused only itself"

    assert backend.acquire_slots([SlotRequest("*", "h1", 1), SlotRequest("a", "h2", 1),
                                  SlotRequest("%", "h3", 1), SlotRequest("*", "h4", 1)], ttl=30) == \
        [True, True, True, False]
    assert backend.slot_usage() == {"*": 1, "a": 1, "%": 1}
    assert backend.take_rate("[a]", 1, 60.0) == 0.0
    assert backend.take_rate("a", 1, 60.0) == 0.0, "'[a]' is no pattern that matches 'a'"
    assert backend.take_rate("[a]", 1, 60.0) > 0.0


def test_wait_blocks_while_the_only_available_jobs_are_paused(backend: RedisBackend) -> None:
    backend.enqueue([job("q")])  # its wake-up token is still there when the pause comes
    backend.set_paused(["q"], True)
    for _ in range(10):
        backend.enqueue([job("q")])
    backend.enqueue([job("q", delay=0.1)])
    for queues in (["q"], None):
        claims, rounds, started = 0, 0, time.monotonic()
        while time.monotonic() - started < 0.6:  # a worker's idle loop
            claims += len(backend.claim(queues, 10, worker_id="w", lease=30))
            backend.wait(queues, 0.6 - (time.monotonic() - started))
            rounds += 1
        assert claims == 0
        assert rounds <= 3, "woke for nothing it may claim"  # the timeout, and once for the due job
        assert backend.counts()["available"] == 12, "paused jobs wait, available"
    started = time.monotonic()
    backend.wait(["q"], 0.3)
    assert time.monotonic() - started >= 0.25, "woke for a paused queue"


def test_resuming_wakes_a_blocked_wait(private: RedisServer) -> None:
    waiter, admin = make(private.url()), make(private.url())
    try:
        admin.set_paused(["mail"], True)
        admin.enqueue([job("mail")])
        assert waiter.claim(["mail"], 10, worker_id="w", lease=30) == []
        thread, woke = _blocked_wait(waiter, private, ["mail"], 10.0)
        admin.enqueue([job("mail")])
        thread.join(0.3)
        assert not woke, "an enqueue to a paused queue woke a worker that may not claim it"
        resumed = time.monotonic()
        admin.set_paused(["mail"], False)
        thread.join(5)
        assert woke and woke[0] - resumed < 0.1
        assert len(waiter.claim(["mail"], 10, worker_id="w", lease=30)) == 2
    finally:
        waiter.close()
        admin.close()


def test_limit_keys_expire_once_nothing_in_them_is_live(backend: RedisBackend, raw: Any, prefix: str) -> None:
    base = f"{prefix}:{{:limits}}:"
    backend.acquire_slots([SlotRequest("k", "h", 1)], ttl=0.2)
    assert 0 < raw.pttl(base + "slot:k") <= 1200
    assert backend.take_rate("r", 10, 1.0) == 0.0
    assert 0 < raw.pttl(base + "rate:r") <= 200
    live = (base + "slot:", base + "rate:")
    wait_until(lambda: not [k for k in keys_of(raw, prefix) if k.startswith(live)] or None, timeout=5,
               message="limit keys to expire")
    assert backend.slot_usage() == {}
    backend.acquire_slots([SlotRequest("k", "h", 1)], ttl=30)
    backend.release_slots([("k", "h")])
    assert not raw.exists(base + "slot:k") and raw.zcard(base + "slots") == 0


def test_a_purged_job_is_forgotten_by_unique_for(backend: RedisBackend, raw: Any, prefix: str) -> None:
    first = job(unique_key="u", unique_for=3600.0)
    backend.enqueue([first])
    claim = backend.claim(None, 1, worker_id="w", lease=30)[0]
    backend.settle([Outcome(first.id, claim.token, JobState.SUCCEEDED, result="1")])
    assert backend.enqueue([job(unique_key="u", unique_for=3600.0)])[0].id == first.id
    assert raw.hget(f"{prefix}:{{default}}:unique_last", "u") == first.id.encode()

    assert backend.purge(JobState.SUCCEEDED, time.time() + 10) == 1

    assert not raw.exists(f"{prefix}:{{default}}:unique_last")
    assert backend.enqueue([job(unique_key="u", unique_for=3600.0)])[0].created
