"""RabbitMQ without a store: the broker is the whole record. What it can answer (delivery,
retries through delay queues, the dead-letter queue, queue depths) works; what it can't raises
NotSupported. Against the RabbitMQ on 127.0.0.1:5672; with a store, amqp+sqlite runs the
conformance suite."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from errands import Errands
from errands.backends.base import Claim, NewJob
from errands.errors import BackendUnavailable, ConfigurationError, NotSupported
from tests import _amqp_cleanup as amqp_cleanup
from tests.conformance.conftest import _amqp_cleanup
from tests.conftest import wait_until

pytest.importorskip("pika")


@pytest.fixture
def url() -> Iterator[str]:
    amqp_cleanup.install()  # what the test declares is recorded, and deleted by _amqp_cleanup
    value = f"amqp://guest:guest@127.0.0.1:5672/?prefix=t{uuid.uuid4().hex[:8]}"
    yield value
    _amqp_cleanup(value)


@pytest.fixture
def app(url: str) -> Iterator[Errands]:
    instance = Errands(url, lease=1.0, poll_interval=0.05)
    yield instance
    instance.stop(timeout=2)
    instance.close()


def test_jobs_run_once_each_and_retries_end_in_the_dead_letter_queue(app: Errands) -> None:
    ran: list[int] = []
    lock = threading.Lock()

    @app.job()
    def add(n: int) -> int:
        with lock:
            ran.append(n)
        return n

    @app.job(retries=1, backoff=0.1)
    def broken() -> None:
        raise ValueError("broken on purpose")

    for n in range(50):
        add.perform(n)
    add.perform_many([((n,), {}) for n in range(50, 100)])
    failing = broken.perform()
    with app.worker(concurrency=4):
        wait_until(lambda: len(ran) == 100 and len(app.list_jobs(state="failed")) == 1, timeout=30)
    assert sorted(ran) == list(range(100))
    [failed] = app.list_jobs(state="failed")
    assert failed.id == failing.id and failed.attempts == 2 and failed.max_attempts == 2
    assert failed.error is not None and "ValueError: broken on purpose" in failed.error
    assert app.stats()["failed"] == 1


def test_retry_job_sends_a_failed_job_back_and_purge_empties_the_dead_letter_queue(app: Errands) -> None:
    calls: list[int] = []

    @app.job(retries=0)
    def once_broken() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time")
        return "ok"

    @app.job(retries=0)
    def always_broken() -> None:
        raise RuntimeError("always")

    handle = once_broken.perform()
    always_broken.perform()
    with app.worker(concurrency=2):
        wait_until(lambda: len(app.list_jobs(state="failed")) == 2, timeout=20)
        assert app.retry_job(handle.id) is True
        wait_until(lambda: len(calls) == 2, timeout=20)
    assert [j.name for j in app.list_jobs(state="failed")] == ["always_broken"]
    assert app.purge("failed") == 1
    assert app.list_jobs(state="failed") == []


def test_perform_in_waits_in_a_delay_queue(app: Errands) -> None:
    ran: list[float] = []

    @app.job()
    def later() -> None:
        ran.append(1.0)

    later.perform_in(1.5)
    with app.worker(concurrency=1):
        assert app.stats()["available"] == 0  # still in the delay queue, not the work queue
        wait_until(lambda: ran, timeout=20)


def test_a_job_whose_consumer_dies_every_time_fails_as_a_poison_pill(url: str) -> None:
    """A lost delivery may be one the dead consumer had prefetched and never started, so it
    counts towards WORKER_LOST_LIMIT (3) deaths, however few the job's attempts (2 here)."""
    producer = Errands(url, lease=1.0)
    job_id = str(uuid.uuid4())
    producer.backend.enqueue([NewJob(job_id, "deadly", "default", "[]", "{}", max_attempts=2)])
    for attempt in (1, 2, 2):  # each "worker" claims it and dies without an ack (the last attempt, again)
        worker = Errands(url, lease=1.0)
        claims: list[Claim] = []

        def claimed(worker: Errands = worker, claims: list[Claim] = claims) -> bool:
            claims.extend(worker.backend.claim(None, 1, worker_id="w", lease=1.0))
            return bool(claims)

        wait_until(claimed, timeout=10)
        assert claims[0].id == job_id and claims[0].attempts == attempt
        worker.close()  # the connection closes with the delivery unacked: the broker requeues it
    last = Errands(url, lease=1.0)
    try:
        wait_until(lambda: not last.backend.claim(None, 1, worker_id="w", lease=1.0)
                   and len(last.list_jobs(state="failed")) == 1, timeout=10)
        [failed] = last.list_jobs(state="failed")
        assert failed.id == job_id and "worker lost while running (3 deliveries died with their consumer)" in (failed.error or "")
    finally:
        last.close()
        producer.close()


def test_what_the_broker_cannot_answer_raises_not_supported(app: Errands) -> None:
    @app.job()
    def noop() -> None: ...

    handle = noop.perform()
    for call in (lambda: app.get_job(handle.id), lambda: app.list_jobs(state="succeeded"),
                 lambda: app.cancel_job(handle.id),
                 lambda: noop.with_options(unique_key="k").perform()):
        with pytest.raises(NotSupported, match="store"):
            call()


def test_a_store_must_keep_records() -> None:
    with pytest.raises(ConfigurationError, match="store"):
        Errands("amqp://guest:guest@127.0.0.1:5672/", store="amqp://127.0.0.1/").backend  # noqa: B018


def test_an_unreachable_broker_is_backend_unavailable() -> None:
    app = Errands("amqp://guest:guest@127.0.0.1:1/?prefix=nobody")
    try:
        with pytest.raises(BackendUnavailable, match="rabbitmq"):
            app.backend.enqueue([NewJob(str(uuid.uuid4()), "x", "default", "[]", "{}", max_attempts=1)])
    finally:
        app.close()


def test_with_a_store_the_store_keeps_records_and_answers_queries(url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = Errands(url, store=f"sqlite:///{tmp_path / 'store.db'}", lease=1.0, poll_interval=0.05)

    @app.job()
    def double(n: int) -> int:
        return n * 2

    @app.job(retries=0)
    def broken() -> None:
        raise ValueError("no")

    try:
        handles = [double.perform(n) for n in range(20)]
        bad = broken.perform()
        delayed = double.perform_in(1.0, 100)
        with app.worker(concurrency=4):
            wait_until(lambda: app.stats()["succeeded"] == 21 and app.stats()["failed"] == 1, timeout=30)
            assert app.retry_job(bad.id) is True
            wait_until(lambda: (app.get_job(bad.id) or bad).attempts == 2  # type: ignore[union-attr]
                       and app.get_job(bad.id).state == "failed", timeout=20)  # type: ignore[union-attr]
        assert [app.get_job(h.id).result for h in handles] == [n * 2 for n in range(20)]  # type: ignore[union-attr]
        assert app.get_job(delayed.id).result == 200  # type: ignore[union-attr]
        assert app.get_job(bad.id).error.startswith("ValueError: no")  # type: ignore[union-attr]
    finally:
        app.stop(timeout=2)
        app.close()


def test_with_a_store_a_job_left_without_a_message_is_republished(url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A crash between the store's commit and the publish leaves a record with no message:
    maintenance publishes it (only once the work queue holds no ready message)."""
    store = f"sqlite:///{tmp_path / 'store.db'}"
    app = Errands(url, store=store, lease=1.0, poll_interval=0.05)
    ran: list[int] = []

    @app.job()
    def orphan(n: int) -> None:
        ran.append(n)

    try:
        # written to the store alone, as if the producer died before publishing
        app.backend.store.enqueue([NewJob(str(uuid.uuid4()), "orphan", "default", "[7]", "{}",  # type: ignore[attr-defined]
                                          max_attempts=1)])
        with app.worker(concurrency=1):
            wait_until(lambda: ran == [7], timeout=30)
    finally:
        app.stop(timeout=2)
        app.close()
