"""The Backend primitives behind issue #9's features, driven directly: paused queues (claims
skip them, jobs stay available), release with a delay (a snooze that counts no attempt), wake
(a dependency finished), get_many, concurrency slots and rate limits shared by every caller,
and the unique_for / debounce forms of unique_key. The facade and the worker build limits,
pause/resume and workflows on exactly these."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from errands import Errands, JobState
from errands.backends.base import Backend, Capability, SlotRequest
from tests.conftest import wait_until

from .conftest import claim_one, make_app, new_job


@pytest.fixture
def peers(url: str, backend: Backend) -> Iterator[Callable[[], Backend]]:
    """Another handle on the test's store: a new app (its own connections) where several
    processes share the store, else the same backend (memory lives in one process)."""
    opened: list[Errands] = []

    def another() -> Backend:
        if Capability.MULTI_PROCESS not in backend.capabilities:
            return backend
        app = make_app(url)
        opened.append(app)
        return app.backend

    yield another
    for app in opened:
        app.close()


def _state(backend: Backend, job_id: str) -> str:
    record = backend.get(job_id)
    assert record is not None
    return record.state


# paused queues ---------------------------------------------------------------------------------


@pytest.mark.requires(Capability.QUEUE_CONTROL, Capability.QUERIES)
def test_a_paused_queue_is_skipped_by_claims_until_resumed(backend: Backend) -> None:
    mail, other = new_job(queue="mail"), new_job(queue="other")
    backend.enqueue([mail, other])
    assert backend.paused_queues() == frozenset()

    backend.set_paused(["mail"], True)
    backend.set_paused(["mail"], True)  # pausing twice changes nothing

    assert backend.paused_queues() == frozenset({"mail"})
    assert [c.id for c in backend.claim(None, 10, worker_id="w1", lease=30)] == [other.id]
    assert backend.claim(["mail"], 10, worker_id="w1", lease=30) == []
    assert backend.claim_ids([mail.id], worker_id="w1", lease=30) == []
    assert _state(backend, mail.id) == "available", "a paused queue's jobs wait, available"

    backend.set_paused(["mail"], False)

    assert backend.paused_queues() == frozenset()
    assert [c.id for c in backend.claim(["mail"], 10, worker_id="w1", lease=30)] == [mail.id]


@pytest.mark.requires(Capability.QUEUE_CONTROL, Capability.QUERIES)
def test_pausing_leaves_running_jobs_to_finish(backend: Backend) -> None:
    job = new_job(queue="mail")
    backend.enqueue([job])
    claim = claim_one(backend, ["mail"], lease=30)

    backend.set_paused(["mail"], True)

    assert backend.extend([claim], 30).lost == frozenset()
    from errands.backends.base import Outcome

    assert backend.settle([Outcome(claim.id, claim.token, JobState.SUCCEEDED, result="1")]) == []
    assert _state(backend, job.id) == "succeeded"


@pytest.mark.requires(Capability.QUEUE_CONTROL)
def test_paused_queues_are_seen_by_every_connection(peers: Callable[[], Backend]) -> None:
    first, second = peers(), peers()
    first.set_paused(["reports", "mail"], True)
    assert second.paused_queues() == frozenset({"reports", "mail"})
    second.set_paused(["reports"], False)
    assert first.paused_queues() == frozenset({"mail"})


# release with a delay (snooze) ------------------------------------------------------------------


@pytest.mark.requires(Capability.QUERIES)
def test_release_with_a_delay_schedules_the_job_without_counting_the_attempt(backend: Backend) -> None:
    job = new_job()
    backend.enqueue([job])
    claim = claim_one(backend, lease=30)
    before = backend.now()

    backend.release([claim], delay=0.4)

    record = backend.get(job.id)
    assert record is not None and record.state == "scheduled" and record.attempts == 0
    assert record.run_at is not None and before + 0.3 <= record.run_at <= backend.now() + 0.5
    assert backend.claim(None, 10, worker_id="w1", lease=30) == [], "not due yet"
    wait_until(lambda: backend.claim(None, 10, worker_id="w1", lease=30) != [] or None,
               timeout=5, message="the snoozed job to be claimable again")


@pytest.mark.requires(Capability.QUERIES)
def test_release_with_a_delay_ignores_claims_no_longer_owned(backend: Backend) -> None:
    job = new_job()
    backend.enqueue([job])
    claim = claim_one(backend, lease=30)
    from errands.backends.base import Outcome

    backend.settle([Outcome(claim.id, claim.token, JobState.SUCCEEDED, result="1")])
    backend.release([claim], delay=5)
    assert _state(backend, job.id) == "succeeded"


# workflows: wake and get_many ---------------------------------------------------------------------


@pytest.mark.requires(Capability.WORKFLOWS, Capability.QUERIES)
def test_wake_makes_scheduled_jobs_available_now_and_leaves_others(backend: Backend) -> None:
    waiting = new_job(delay=3600)
    available = new_job()
    running = new_job(queue="other")
    backend.enqueue([waiting, available, running])
    claim_one(backend, ["other"], lease=30)

    moved = backend.wake([waiting.id, available.id, running.id, waiting.id, "no-such-id"])

    assert moved == 1
    assert _state(backend, waiting.id) == "available"
    assert _state(backend, running.id) == "running"
    claimed = {c.id for c in backend.claim(["default"], 10, worker_id="w1", lease=30)}
    assert claimed == {waiting.id, available.id}


@pytest.mark.requires(Capability.QUERIES)
def test_get_many_returns_the_jobs_that_exist(backend: Backend) -> None:
    jobs = [new_job(args=f"[{i}]") for i in range(5)]
    backend.enqueue(jobs)
    wanted = [jobs[0].id, jobs[3].id, "missing-id", jobs[0].id]

    records = backend.get_many(wanted)

    assert sorted(r.id for r in records) == sorted([jobs[0].id, jobs[3].id])
    assert {r.id: r.args for r in records} == {jobs[0].id: "[0]", jobs[3].id: "[3]"}
    assert backend.get_many([]) == []


# concurrency slots ------------------------------------------------------------------------------


@pytest.mark.requires(Capability.LIMITS)
def test_slots_admit_at_most_limit_holders_per_key(backend: Backend) -> None:
    requests = [SlotRequest("job:report", f"h{i}", 2) for i in range(4)] + [SlotRequest("job:other", "h9", 1)]

    assert backend.acquire_slots(requests, ttl=30) == [True, True, False, False, True]
    assert backend.slot_usage() == {"job:report": 2, "job:other": 1}
    assert backend.acquire_slots([SlotRequest("job:report", "h0", 2)], ttl=30) == [True], "a holder keeps its slot"

    backend.release_slots([("job:report", "h0"), ("job:report", "never-held")])

    assert backend.acquire_slots([SlotRequest("job:report", "h2", 2), SlotRequest("job:report", "h3", 2)],
                                 ttl=30) == [True, False]
    assert backend.slot_usage()["job:report"] == 2


@pytest.mark.requires(Capability.LIMITS)
def test_a_slot_not_renewed_within_its_ttl_lapses(backend: Backend) -> None:
    assert backend.acquire_slots([SlotRequest("k", "dead-worker", 1)], ttl=0.3) == [True]
    assert backend.acquire_slots([SlotRequest("k", "live", 1)], ttl=30) == [False]
    wait_until(lambda: backend.acquire_slots([SlotRequest("k", "live", 1)], ttl=30) == [True] or None,
               timeout=5, message="the unrenewed slot to lapse")
    assert backend.slot_usage() == {"k": 1}


@pytest.mark.requires(Capability.LIMITS)
def test_concurrent_callers_never_exceed_a_slot_limit(peers: Callable[[], Backend]) -> None:
    backends = [peers() for _ in range(4)]
    granted: list[str] = []
    lock = threading.Lock()

    def grab(index: int) -> None:
        backend = backends[index]
        for n in range(10):
            holder = f"{index}-{n}"
            if backend.acquire_slots([SlotRequest("hot", holder, 3)], ttl=30) == [True]:
                with lock:
                    granted.append(holder)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(granted) == 3, granted
    assert backends[0].slot_usage() == {"hot": 3}


# rate limits ----------------------------------------------------------------------------------


@pytest.mark.requires(Capability.LIMITS)
def test_a_rate_limit_grants_a_burst_then_says_how_long_to_wait(backend: Backend) -> None:
    granted = [backend.take_rate("rate:mail", 3, 30.0) for _ in range(3)]
    assert granted == [0.0, 0.0, 0.0]

    wait = backend.take_rate("rate:mail", 3, 30.0)

    assert 9.0 <= wait <= 10.5, "one start per period/limit = 10 s after the burst"
    assert backend.take_rate("rate:other", 3, 30.0) == 0.0, "keys are independent"
    assert 9.0 <= backend.take_rate("rate:mail", 3, 30.0) <= 10.5, "a refusal counts nothing"


@pytest.mark.requires(Capability.LIMITS)
def test_a_rate_limit_refills_with_time(backend: Backend) -> None:
    assert backend.take_rate("fast", 2, 0.4) == 0.0
    assert backend.take_rate("fast", 2, 0.4) == 0.0
    assert backend.take_rate("fast", 2, 0.4) > 0.0
    wait_until(lambda: backend.take_rate("fast", 2, 0.4) == 0.0 or None, timeout=5,
               message="the rate limit to refill")


@pytest.mark.requires(Capability.LIMITS)
def test_concurrent_callers_share_one_rate(peers: Callable[[], Backend]) -> None:
    backends = [peers() for _ in range(4)]
    granted = []
    lock = threading.Lock()

    def take(index: int) -> None:
        for _ in range(10):
            if backends[index].take_rate("shared", 5, 3600.0) == 0.0:
                with lock:
                    granted.append(index)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(granted) == 5


# unique_for and debounce ---------------------------------------------------------------------------


def _succeed(backend: Backend, job_id: str) -> None:
    from errands.backends.base import Outcome

    claims = backend.claim_ids([job_id], worker_id="w1", lease=30) or backend.claim(None, 1, worker_id="w1", lease=30)
    assert [c.id for c in claims] == [job_id]
    assert backend.settle([Outcome(job_id, claims[0].token, JobState.SUCCEEDED, result="1")]) == []


@pytest.mark.requires(Capability.UNIQUE, Capability.QUERIES)
def test_unique_for_holds_the_key_after_the_job_finished(backend: Backend) -> None:
    first = new_job(unique_key="digest:7", unique_for=0.6)
    assert backend.enqueue([first])[0].created
    _succeed(backend, first.id)

    again = backend.enqueue([new_job(unique_key="digest:7", unique_for=0.6)])[0]

    assert (again.id, again.created) == (first.id, False), "finished, but created within the window"
    plain = backend.enqueue([new_job(unique_key="digest:7")])[0]
    assert plain.created, "without unique_for a finished holder frees the key"
    _succeed(backend, plain.id)
    result = wait_until(lambda: (r := backend.enqueue([new_job(unique_key="digest:7", unique_for=0.3)])[0]).created
                        and r or None, timeout=5, message="the window to pass")
    assert result.id not in (first.id, plain.id)


@pytest.mark.requires(Capability.UNIQUE, Capability.QUERIES)
def test_debounce_makes_the_last_enqueue_win_and_pushes_the_run(backend: Backend) -> None:
    first = new_job(unique_key="reindex:5", debounce=30.0, args="[1]")
    created = backend.enqueue([first])[0]
    assert created.created
    record = backend.get(first.id)
    assert record is not None and record.state == "scheduled"
    assert record.run_at is not None and record.run_at >= backend.now() + 25

    later = backend.enqueue([new_job(unique_key="reindex:5", debounce=0.3, args="[2]", kwargs='{"v": 2}',
                                     meta='{"m": 2}')])[0]

    assert (later.id, later.created) == (first.id, False)
    record = backend.get(first.id)
    assert record is not None and record.state == "scheduled" and record.args == "[2]"
    assert record.kwargs == '{"v": 2}' and record.meta == '{"m": 2}'
    assert record.run_at is not None and record.run_at <= backend.now() + 0.35, "the run moved to the last window"
    claims = wait_until(lambda: backend.claim(None, 10, worker_id="w1", lease=30) or None, timeout=5,
                        message="the debounced job to come due")
    assert [(c.id, c.args) for c in claims] == [(first.id, "[2]")]
    assert backend.get_many([first.id])[0].attempts == 1


@pytest.mark.requires(Capability.UNIQUE, Capability.QUERIES)
def test_debounce_leaves_a_running_holder_alone(backend: Backend) -> None:
    first = new_job(unique_key="reindex:6", debounce=0.0, args="[1]")
    backend.enqueue([first])
    claim = wait_until(lambda: backend.claim(None, 1, worker_id="w1", lease=30) or None, timeout=5,
                       message="the job to be claimable")[0]

    again = backend.enqueue([new_job(unique_key="reindex:6", debounce=5.0, args="[2]")])[0]

    assert (again.id, again.created) == (first.id, False)
    record = backend.get(first.id)
    assert record is not None and record.state == "running" and record.args == "[1]"
    assert claim.args == "[1]"
