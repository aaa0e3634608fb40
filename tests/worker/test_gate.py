"""The worker's gate between claim and run, driven step by step where timing matters."""

from __future__ import annotations

from typing import Any

from errands import Errands, JobState
from errands.backends.base import Claim, Outcome
from errands.worker.gate import Gate


def test_a_dependency_finishing_while_its_step_is_claimed_still_wakes_the_step() -> None:
    """The member's wake-up lands while the callback is claimed (a no-op on a running job); the
    gate, snoozing the callback, must notice the member finished and wake it itself."""
    app = Errands("memory://")

    @app.job(name="step")
    def step(*args: Any) -> None: ...

    handle = app.group([step.s(1)]).then(step.s()).perform()
    member_id, callback_id = handle.ids
    backend = app.backend
    (member,) = backend.claim_ids([member_id], worker_id="w", lease=30)
    backend.wake([callback_id])
    (callback,) = backend.claim_ids([callback_id], worker_id="w", lease=30)
    release = backend.release

    def member_finishes_first(claims: list[Claim], delay: float = 0.0) -> None:
        # the gate saw the member running; it finishes (and its wake-up finds the callback
        # running) just before the gate snoozes the callback
        backend.settle([Outcome(member.id, member.token, JobState.SUCCEEDED, result="1")])
        assert backend.wake([callback_id]) == 0
        release(claims, delay)

    backend.release = member_finishes_first  # type: ignore[method-assign]
    admitted = Gate(app, backend, lease=30).admit([callback])

    assert admitted.run == [] and admitted.failed == []
    record = backend.get(callback_id)
    assert record is not None and record.state == "available", "woken, not asleep for WAIT_POLL"
    assert record.attempts == 0


def test_a_worker_refuses_limits_its_backend_cannot_enforce(tmp_path: Any) -> None:
    from errands import ConfigurationError
    from errands.backends.base import Capability
    from errands.backends.memory import MemoryBackend
    from errands.worker import Worker

    class Unlimited(MemoryBackend):
        capabilities = MemoryBackend.capabilities - {Capability.LIMITS}

    app = Errands("memory://")
    app._backend = Unlimited("memory://", app.settings)

    @app.job(name="report", concurrency=2)
    def report() -> None: ...

    app.limit_queue("mail", rate_limit="5/s")
    import pytest

    with pytest.raises(ConfigurationError, match="job report, queue mail"):
        Worker(app, install_signals=False).start()
    with pytest.raises(ConfigurationError, match="Capability.LIMITS"):
        app.run_worker(burst=True)


def test_a_heartbeat_does_not_revive_the_slot_of_a_job_that_just_finished() -> None:
    app = Errands("memory://")

    @app.job(name="report", concurrency=1)
    def report() -> None: ...

    handle = report.perform()
    backend = app.backend
    (claim,) = backend.claim(None, 1, worker_id="w", lease=30)
    gate = Gate(app, backend, lease=30)
    assert [c.id for c, _ in gate.admit([claim]).run] == [handle.id]
    acquire = backend.acquire_slots

    def finishing_meanwhile(requests: Any, ttl: float) -> Any:
        gate.finished(claim.id)  # the job ends while the heartbeat's renewal is on the wire
        return acquire(requests, ttl)

    backend.acquire_slots = finishing_meanwhile  # type: ignore[method-assign]
    gate.renew()

    assert backend.slot_usage() == {}, "the renewed slot of the finished job was given back"
