"""Job metadata (``meta``): a JSON object stored with a job at enqueue and handed back by claim,
get and list, unchanged, on every backend; what JSON can't carry is refused at enqueue and
nothing is stored. It is what tracing context (and later workflow links) travels in."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pytest

from errands import Errands, JobState, SerializationError, current_job
from errands.backends.base import Backend, Capability, JobQuery, Outcome
from tests.conftest import wait_until

from ._stored import stored_jobs
from .conftest import claim_all, claim_one, new_job

META = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tenant": "acmé ☃",
        "nested": {"ids": [1, 2, 3], "ok": True, "none": None}}


def _echo(app: Errands):  # type: ignore[no-untyped-def]
    @app.job(retries=0)
    def echo(n: int) -> int:
        return n

    return echo


# the Backend interface ------------------------------------------------------------------------
@pytest.mark.requires(Capability.QUERIES)
def test_meta_round_trips_through_claim_get_and_list(backend: Backend) -> None:
    text = json.dumps(META)
    with_meta, without = new_job(meta=text), new_job()
    backend.enqueue([with_meta, without])
    records = {r.id: r for r in backend.list(JobQuery())}
    assert json.loads(records[with_meta.id].meta) == META and records[without.id].meta is None
    claims = {c.id: c for c in backend.claim(None, 10, worker_id="w", lease=30)}
    assert json.loads(claims[with_meta.id].meta) == META and claims[without.id].meta is None
    record = backend.get(with_meta.id)
    assert record is not None and json.loads(record.meta) == META  # type: ignore[arg-type]


@pytest.mark.requires(Capability.QUERIES)
def test_meta_stays_through_a_retry_and_a_settle(backend: Backend) -> None:
    job = new_job(meta='{"k":"v"}')
    backend.enqueue([job])
    first = claim_one(backend)
    backend.settle([Outcome(first.id, first.token, JobState.SCHEDULED, error="boom", retry_in=0)])
    second = claim_one(backend)
    assert second.meta == '{"k":"v"}' and second.attempts == 2
    backend.settle([Outcome(second.id, second.token, JobState.SUCCEEDED, result="1")])
    record = backend.get(job.id)
    assert record is not None and record.state == "succeeded" and record.meta == '{"k":"v"}'


def test_a_batch_keeps_each_jobs_own_meta(backend: Backend) -> None:
    jobs = [new_job(meta=json.dumps({"n": n})) if n % 2 else new_job() for n in range(20)]
    backend.enqueue(jobs)
    claims = claim_all(backend, 20)
    by_id = {c.id: c.meta for c in claims}
    for n, job in enumerate(jobs):
        assert by_id[job.id] == (json.dumps({"n": n}) if n % 2 else None)


# the public API --------------------------------------------------------------------------------
@pytest.mark.requires(Capability.QUERIES)
def test_with_options_meta_shows_in_job_info(app: Errands) -> None:
    echo = _echo(app)
    handle = echo.with_options(meta=META).perform(1)
    plain = echo.perform(2)
    info, other = app.get_job(handle.id), app.get_job(plain.id)
    assert info is not None and info.meta == META
    assert other is not None and other.meta == {}
    listed = {i.id: i.meta for i in app.list_jobs()}
    assert listed == {handle.id: META, plain.id: {}}


@pytest.mark.requires(Capability.QUERIES)
def test_perform_many_and_perform_at_carry_meta(app: Errands) -> None:
    echo = _echo(app).with_options(meta={"batch": "b1"})
    handles = echo.perform_many([((n,), {}) for n in range(5)])
    later = echo.perform_at(datetime(2100, 1, 1, tzinfo=timezone.utc), 9)
    for handle in [*handles, later]:
        info = app.get_job(handle.id)
        assert info is not None and info.meta == {"batch": "b1"}


@pytest.mark.requires(Capability.QUERIES)
def test_the_caller_changing_its_dict_later_changes_nothing(app: Errands) -> None:
    given: dict[str, Any] = {"a": 1}
    echo = _echo(app).with_options(meta=given)
    given["a"] = 2
    info = app.get_job(echo.perform(1).id)
    assert info is not None and info.meta == {"a": 1}


def test_a_handler_reads_its_meta(app: Errands, flavour: str) -> None:
    seen: dict[str, Any] = {}
    if flavour == "sync":
        @app.job(name="reader")
        def reader() -> None:
            seen["meta"] = current_job().meta
    else:
        @app.job(name="reader")
        async def reader() -> None:
            seen["meta"] = current_job().meta

    reader.with_options(meta=META).perform()
    app.run_worker(concurrency=2, burst=True)
    assert seen["meta"] == META
    reader.perform()
    app.run_worker(concurrency=2, burst=True)
    assert seen["meta"] == {}


def test_a_handler_reads_its_meta_on_a_running_worker(app: Errands) -> None:
    seen: list[Any] = []

    @app.job()
    def reader() -> None:
        seen.append(current_job().meta)

    with app.worker(concurrency=2):
        reader.with_options(meta={"via": "worker"}).perform()
        wait_until(lambda: seen, timeout=10, message="the handler to run")
    assert seen == [{"via": "worker"}]


@pytest.mark.parametrize("bad", [
    ["not", "an", "object"], "text", {1: "int key"}, {"when": datetime.now(timezone.utc)}, {"x": math.nan},
    {"x": (1, 2)}, {"x": "nul\x00"}, {"x": "\ud800"}, {"k\x00": 1},
])
def test_bad_meta_is_refused_and_nothing_is_stored(app: Errands, bad: Any) -> None:
    echo = _echo(app)
    with pytest.raises(SerializationError, match="meta"):
        echo.with_options(meta=bad).perform(1)
    assert stored_jobs(app) == 0


def test_meta_counts_against_max_payload_bytes(url: str) -> None:
    app = Errands(url, max_payload_bytes=2048)
    try:
        echo = _echo(app)
        echo.with_options(meta={"pad": "x" * 1900}).perform(1)  # alone it fits
        with pytest.raises(SerializationError, match="max_payload_bytes"):
            echo.with_options(meta={"pad": "x" * 2048}).perform(1)
        with pytest.raises(SerializationError, match="max_payload_bytes"):  # a batch: all or none
            echo.with_options(meta={"pad": "x" * 1000}).perform_many([((1,), {}), (("y" * 1100,), {})])
        assert app.stats()["available"] == 1
    finally:
        app.close()


@pytest.mark.requires(Capability.QUERIES)
def test_empty_meta_stores_nothing(app: Errands, backend: Backend) -> None:
    handle = _echo(app).with_options(meta={}).perform(1)
    record = backend.get(handle.id)
    assert record is not None and record.meta is None
    info = app.get_job(handle.id)
    assert info is not None and info.meta == {}
