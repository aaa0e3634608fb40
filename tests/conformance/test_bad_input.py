"""FAULTS.md "Bad input": each is a clear, typed error at the call, or that one job fails with a
clear error while the worker goes on and no other job is touched."""

from __future__ import annotations

import asyncio
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from errands import ConfigurationError, Errands, JobState, SerializationError, UnknownJob
from errands.backends.base import Backend, Capability
from errands.worker import Worker
from tests.conftest import wait_until

from ._stored import stored_jobs
from .conftest import new_job


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


class Custom:
    pass


def _final(app: Errands, job_id: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    def finished():  # type: ignore[no-untyped-def]
        info = app.get_job(job_id)
        return info if info is not None and info.state in ("succeeded", "failed", "cancelled") else None

    return wait_until(finished, timeout=timeout, message=f"job {job_id} to finish")


@pytest.fixture
def echo(app: Errands):  # type: ignore[no-untyped-def]
    @app.job(retries=0)
    def echo(*args: Any, **kwargs: Any) -> Any:
        return [list(args), kwargs]

    return echo


# 1. unknown names ------------------------------------------------------------------------------


def test_perform_unknown_name_raises(app: Errands) -> None:
    with pytest.raises(UnknownJob) as caught:
        app.perform("nope", 1)
    assert caught.value.name == "nope" and "nope" in str(caught.value)
    with pytest.raises(UnknownJob):
        app.perform_in(5, "nope")
    assert stored_jobs(app) == 0


@pytest.mark.requires(Capability.QUERIES)
def test_stored_records_that_cannot_run_fail_and_the_worker_goes_on(app: Errands, backend: Backend, echo) -> None:  # type: ignore[no-untyped-def]
    bad = {
        "unknown handler": new_job(name="ghost_handler"),
        "args a dict": new_job(name="echo", args='{"a": 1}'),
        "kwargs a list": new_job(name="echo", kwargs="[1, 2]"),
        "truncated JSON": new_job(name="echo", args="[1, 2"),
        "not JSON": new_job(name="echo", kwargs="\x80\x81 nope"),
        "100,000 deep": new_job(name="echo", args="[" * 100_000 + "]" * 100_000),
    }
    backend.enqueue(list(bad.values()))
    good = echo.perform_many([((i,), {}) for i in range(20)])
    app.run_worker(concurrency=4, burst=True)
    for what, job in bad.items():
        info = app.get_job(job.id)
        assert info is not None, what
        assert info.state == JobState.FAILED, f"{what}: {info.state}"
        assert info.attempts == 1, f"{what}: a record that can't run is not retried"
        assert info.error, what
    assert "UnknownJob" in (app.get_job(bad["unknown handler"].id).error or "")  # type: ignore[union-attr]
    assert "ghost_handler" in (app.get_job(bad["unknown handler"].id).error or "")  # type: ignore[union-attr]
    for handle in good:
        info = app.get_job(handle.id)
        assert info is not None and info.state == JobState.SUCCEEDED and info.result == [info.args, {}]
    # reading the broken records back never raises either
    listed = app.list_jobs(state="failed", limit=100)
    assert {j.id for j in listed} == {j.id for j in bad.values()}


# 2-5, 7. arguments JSON can't carry ---------------------------------------------------------------

REFUSED = {
    "datetime": datetime(2030, 1, 1, tzinfo=timezone.utc),
    "date": date(2030, 1, 1),
    "Decimal": Decimal("1.10"),
    "set": {1, 2},
    "frozenset": frozenset({1}),
    "bytes": b"\x00\x01",
    "bytearray": bytearray(b"ab"),
    "lambda": lambda: None,
    "custom object": Custom(),
    "tuple": (1, 2),
    "non-str key": {1: "one"},
    "None key": {None: "x"},
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "NUL in str": "a\x00b",
    "lone surrogate": "\ud800",
    "NUL in key": {"a\x00": 1},
    "surrogate in key": {"\udfff": 1},
    "100,000 deep": _deep(100_000),
    "type": int,
    "complex": 1j,
}


@pytest.mark.parametrize("what", sorted(REFUSED))
def test_unstorable_kwarg_is_refused_naming_it(app: Errands, echo, what: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SerializationError) as caught:
        echo.perform(1, when=REFUSED[what])
    assert "kwargs['when']" in str(caught.value)
    assert caught.value.path.startswith("kwargs['when']")
    assert stored_jobs(app) == 0


@pytest.mark.parametrize("what", ["datetime", "set", "nan", "lone surrogate", "tuple"])
def test_unstorable_positional_and_nested_are_named(app: Errands, echo, what: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SerializationError, match=r"args\[1\]"):
        echo.perform("fine", REFUSED[what])
    with pytest.raises(SerializationError) as caught:
        echo.perform(payload={"items": [1, {"deep": REFUSED[what]}]})
    assert caught.value.path.startswith("kwargs['payload']['items'][1]['deep']")
    with pytest.raises(SerializationError):
        app.perform("echo", x=REFUSED[what])
    assert stored_jobs(app) == 0


@pytest.mark.parametrize("kwargs", [{1: "one"}, {"a\x00": 1}, {"\udfff": 1}])
def test_bad_keyword_names_are_refused(app: Errands, echo, kwargs: dict[Any, Any]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SerializationError):
        echo.perform_many([((), {"fine": 1}), ((), kwargs)])
    if all(isinstance(k, str) for k in kwargs):
        with pytest.raises(SerializationError):
            echo.perform(**kwargs)
        with pytest.raises(SerializationError):
            app.perform("echo", **kwargs)
    assert stored_jobs(app) == 0


@pytest.mark.parametrize("value", [2**53 + 1, 2**63, 2**64 + 1, -(2**63) - 1, 10**40, -(2**53) - 1])
@pytest.mark.requires(Capability.QUERIES)
def test_big_integers_round_trip_exactly(app: Errands, value: int) -> None:
    @app.job(retries=0)
    def plus_one(n: int) -> int:
        assert type(n) is int
        return n + 1

    handle = plus_one.perform(value)
    stored = app.get_job(handle.id)
    assert stored is not None and stored.args == [value] and type(stored.args[0]) is int
    app.run_worker(concurrency=1, burst=True)
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.SUCCEEDED and info.result == value + 1


@pytest.mark.requires(Capability.QUERIES)
def test_strings_that_are_data(app: Errands, echo) -> None:  # type: ignore[no-untyped-def]
    tricky = ["", "'; DROP TABLE jobs;--", "\u202eevil", "\U0001f600", "a\nb\tc", "\\x00", '{"a":1}', "\u2028"]
    handle = echo.perform(*tricky, key="\U0001f600")
    info = app.get_job(handle.id)
    assert info is not None and info.args == tricky and info.kwargs == {"key": "\U0001f600"}


# 8. payload size ----------------------------------------------------------------------------------


@pytest.mark.requires(Capability.QUERIES)
def test_payload_above_the_limit_is_refused(app: Errands, echo) -> None:  # type: ignore[no-untyped-def]
    limit = app.settings.max_payload_bytes
    with pytest.raises(SerializationError, match="max_payload_bytes"):
        echo.perform("x" * (20 * 1024 * 1024))
    with pytest.raises(SerializationError, match="max_payload_bytes"):
        echo.perform(blob="é" * (limit // 2 + 1))  # counted in UTF-8 bytes, not characters
    fits = echo.perform("x" * (limit - 100))
    assert app.get_job(fits.id) is not None
    assert sum(app.stats().values()) == 1


def test_payload_limit_is_configurable(url: str) -> None:
    from .conftest import make_app

    small = make_app(url, max_payload_bytes=4096)
    try:
        @small.job()
        def store(blob: str) -> None: ...

        with pytest.raises(SerializationError, match="4096"):
            store.perform("x" * 5000)
        assert store.perform("x" * 1000).created
    finally:
        small.close()


# 14. times ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [-5, -math.inf, timedelta(days=-3)])
@pytest.mark.requires(Capability.QUERIES)
def test_negative_delay_means_now(app: Errands, backend: Backend, echo, delay: Any) -> None:  # type: ignore[no-untyped-def]
    handle = echo.perform_in(delay, 1)
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.AVAILABLE
    assert info.run_at is not None and info.run_at.timestamp() >= backend.now() - 3


@pytest.mark.parametrize("delay", [math.nan, math.inf, 1e12, timedelta(days=10**6), "5", True, [5]])
def test_impossible_delays_are_refused(app: Errands, echo, delay: Any) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError):
        echo.perform_in(delay, 1)
    assert stored_jobs(app) == 0


@pytest.mark.parametrize("when", [
    datetime(2030, 1, 1),  # naive
    datetime(9999, 12, 31, tzinfo=timezone.utc),
    "2030-01-01T00:00:00Z",
    1893456000,
])
def test_impossible_run_at_is_refused(app: Errands, echo, when: Any) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError):
        echo.perform_at(when, 1)
    with pytest.raises(ConfigurationError):
        app.perform_at(when, "echo", 1)
    assert stored_jobs(app) == 0


# 15. definitions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"retries": -1}, {"retries": 10**9}, {"retries": 1.5}, {"retries": True},
    {"timeout": 0}, {"timeout": -1}, {"timeout": math.nan}, {"timeout": math.inf},
    {"priority": 10**6}, {"priority": -(10**6)}, {"priority": "high"},
    {"queue": ""}, {"backoff": True}, {"backoff": "fast"},
])
def test_bad_job_options_fail_at_definition(app: Errands, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        @app.job(**options)
        def handler() -> None: ...
    assert "handler" not in app.registry
    with pytest.raises(UnknownJob):
        app.perform("handler")


@pytest.mark.parametrize("schedule", [
    {"cron": "*/0 * * * *"}, {"cron": "61 * * * *"}, {"cron": "* * * *"}, {"cron": "not a cron"},
    {"cron": 5}, {"every": 0}, {"every": -1}, {"every": math.nan}, {"every": timedelta(0)},
    {}, {"cron": "* * * * *", "every": 60},
])
def test_bad_periodic_schedules_fail_at_definition(app: Errands, schedule: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        @app.periodic(**schedule)
        def tick() -> None: ...
    assert app.periodics == []
    with pytest.raises(UnknownJob):
        app.perform("tick")  # a refused definition registers nothing


def test_bad_with_options_fail_before_enqueue(app: Errands, echo) -> None:  # type: ignore[no-untyped-def]
    for options in ({"priority": 10**6}, {"retries": -1}, {"timeout": 0}, {"unique_key": ""},
                    {"unique_key": "k" * 100_000}, {"unique_key": "a\x00b"},
                    {"unique_key": "\ud800"}, {"queue": "*"}):
        with pytest.raises(ConfigurationError):
            echo.with_options(**options).perform(1)
    assert stored_jobs(app) == 0


# 12. queue names --------------------------------------------------------------------------------------

ODD_QUEUES = [
    "x'; DROP TABLE jobs;--", "*", "{tag}", "a:b", "q\nq", "", "q" * 10_000, "../../etc/passwd",
    "\u202eevil", "amq.gen", "%", "_", "a b", "default\x00", "ÄÖÜ",
]


@pytest.mark.parametrize("queue", ODD_QUEUES, ids=range(len(ODD_QUEUES)))
@pytest.mark.requires(Capability.QUERIES)
def test_odd_queue_names_are_refused_by_one_rule_or_are_data(app: Errands, backend: Backend, queue: str) -> None:
    @app.job(name="plain")
    def plain() -> None: ...

    bystander = plain.perform()
    try:
        app.job(name="odd", queue=queue)(lambda: None)
    except ConfigurationError:
        # the same rule everywhere a queue is named
        with pytest.raises(ConfigurationError):
            plain.with_options(queue=queue)
        with pytest.raises(ConfigurationError):
            Worker(app, queues=[queue])
    else:
        odd = app.perform("odd")
        info = app.get_job(odd.id)
        assert info is not None and info.queue == queue
        assert [j.id for j in app.list_jobs(queue=queue)] == [odd.id]
        assert app.stats(by_queue=True)[queue]["available"] == 1
        assert [c.id for c in backend.claim([queue], 5, worker_id="w", lease=5)] == [odd.id]
    # as a filter it is only ever data: it matches no other queue
    assert backend.claim([queue], 5, worker_id="w", lease=5) == []
    assert app.list_jobs(queue=queue, state="available") == []
    assert app.get_job(bystander.id).state == JobState.AVAILABLE  # type: ignore[union-attr]
    assert [c.id for c in backend.claim(None, 5, worker_id="w", lease=5)] == [bystander.id]


# 16. results and errors -------------------------------------------------------------------------------


@pytest.mark.requires(Capability.QUERIES)
def test_unserializable_result_fails_without_retry(app: Errands, flavour: str) -> None:
    def body() -> Any:
        return {"when": datetime.now(timezone.utc)}

    handler = _flavoured(flavour, body)
    job = app.job(name="returns_a_datetime", retries=3, backoff=0)(handler)
    handle = job.perform()
    app.run_worker(concurrency=1, burst=True)
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.FAILED and info.attempts == 1
    assert "SerializationError" in (info.error or "") and "result" in (info.error or "")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


@pytest.mark.requires(Capability.QUERIES)
def test_exception_whose_str_raises(app: Errands, flavour: str, echo) -> None:  # type: ignore[no-untyped-def]
    def body() -> None:
        raise Unprintable()

    job = app.job(name="unprintable", retries=0)(_flavoured(flavour, body))
    handle = job.perform()
    after = echo.perform(1)
    app.run_worker(concurrency=1, burst=True)
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.FAILED
    assert "Unprintable" in (info.error or "")
    assert app.get_job(after.id).state == JobState.SUCCEEDED  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_huge_error_message_is_capped(app: Errands, flavour: str) -> None:
    def body() -> None:
        raise ValueError("HEAD" + "x" * (10 * 1024 * 1024) + "TAIL")

    job = app.job(name="loud", retries=0)(_flavoured(flavour, body))
    handle = job.perform()
    app.run_worker(concurrency=1, burst=True)
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.FAILED and info.error is not None
    assert len(info.error.encode("utf-8")) <= app.settings.max_error_bytes
    assert info.error.startswith("ValueError: HEAD")


# 17. BaseExceptions raised by a handler ------------------------------------------------------------------

BASE_EXCEPTIONS = {
    "SystemExit": lambda: SystemExit(3),
    "KeyboardInterrupt": lambda: KeyboardInterrupt(),
    "GeneratorExit": lambda: GeneratorExit(),
    "CancelledError": lambda: asyncio.CancelledError(),
}


@pytest.mark.parametrize("kind", sorted(BASE_EXCEPTIONS))
@pytest.mark.requires(Capability.QUERIES)
def test_base_exceptions_fail_the_job_and_the_worker_goes_on(app: Errands, flavour: str, echo, kind: str) -> None:  # type: ignore[no-untyped-def]
    def body() -> None:
        raise BASE_EXCEPTIONS[kind]()

    job = app.job(name="escapes", retries=1, backoff=0)(_flavoured(flavour, body))
    with app.worker(concurrency=2):
        handle = job.perform()
        info = _final(app, handle.id)
        later = echo.perform("still alive")
        after = _final(app, later.id)
    assert info.state == JobState.FAILED and info.attempts == 2
    assert kind in (info.error or "")
    assert after.state == JobState.SUCCEEDED


def _flavoured(flavour: str, body: Any) -> Any:
    if flavour == "sync":
        def sync_handler() -> Any:
            return body()
        return sync_handler

    async def async_handler() -> Any:
        await asyncio.sleep(0)
        return body()
    return async_handler
