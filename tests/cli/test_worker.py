"""``errands worker``: in-process (-p 1) and supervised (-p N) workers under signals."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import wait_until

from .conftest import Proc, Project

pytestmark = pytest.mark.slow

KILL = getattr(signal, "SIGKILL", signal.SIGTERM)
CHILD_STARTED = r"started worker process (\d+) \(pid (\d+)\)"
WORKER_READY = r"errands\.worker: worker \S+ started"


def child_pids(proc: Proc, count: int) -> dict[int, int]:
    """Worker number -> pid of the first ``count`` children the supervisor started."""
    return {int(m.group(1)): int(m.group(2)) for m in proc.wait_for(CHILD_STARTED, count=count)}


def job_state(project: Project, job_id: str) -> str:
    info = project.client.get_job(job_id)
    return str(info.state) if info is not None else "missing"


def test_worker_runs_until_sigterm_then_exits_0(project: Project) -> None:
    worker = project.spawn("worker", "tapp:app", "-c", "2")
    worker.wait_for(WORKER_READY)
    handle = project.client.perform("add", 2, 3)
    assert handle.wait(timeout=30).result == 5
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_worker_queue_option_limits_what_runs(project: Project) -> None:
    other = project.client.perform("add", 1, 1)
    slow = project.client.perform("nap", 0)
    project.ok("worker", "tapp:app", "-q", "slow", "--burst")
    assert (job_state(project, slow.id), job_state(project, other.id)) == ("succeeded", "available")


def test_supervised_workers_finish_running_jobs_on_sigterm_and_exit_0(project: Project) -> None:
    supervisor = project.spawn("worker", "tapp:app", "-p", "2", "-c", "1", "--grace", "30")
    pids = child_pids(supervisor, 2)
    supervisor.wait_for(WORKER_READY, count=2)
    handle = project.client.perform("nap", 1.0)
    wait_until(lambda: job_state(project, handle.id) == "running", timeout=30, message="the nap to start")

    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0
    assert job_state(project, handle.id) == "succeeded"  # finished within the grace period, not put back
    stopped = supervisor.wait_for(r"\[(\d+)\] errands\.worker: worker \S+ stopped after", count=2)
    assert {int(m.group(1)) for m in stopped} == set(pids.values())


def test_a_supervised_child_killed_with_sigkill_is_restarted(project: Project) -> None:
    supervisor = project.spawn("worker", "tapp:app", "-p", "2", "-c", "1")
    pids = child_pids(supervisor, 2)
    supervisor.wait_for(WORKER_READY, count=2)

    victim = pids[1]
    os.kill(victim, KILL)
    supervisor.wait_for(rf"worker process 1 \(pid {victim}\) was killed by \w+ unexpectedly; restarting")
    restarted = supervisor.wait_for(CHILD_STARTED, count=3)[2]
    assert int(restarted.group(1)) == 1 and int(restarted.group(2)) != victim
    supervisor.wait_for(WORKER_READY, count=3)

    handles = [project.client.perform("add", n, n) for n in range(4)]
    assert [h.wait(timeout=30).result for h in handles] == [0, 2, 4, 6]
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0


def test_supervised_burst_exits_0_when_the_work_is_done(project: Project) -> None:
    handles = [project.client.perform("add", n, 1) for n in range(20)]
    result = project.run("worker", "tapp:app", "-p", "2", "--burst", timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("finished its burst") == 2
    assert {job_state(project, h.id) for h in handles} == {"succeeded"}


def test_children_stop_when_the_supervisor_is_killed(project: Project) -> None:
    supervisor = project.spawn("worker", "tapp:app", "-p", "2", "-c", "1")
    child_pids(supervisor, 2)
    supervisor.wait_for(WORKER_READY, count=2)
    supervisor.signal(KILL)
    supervisor.wait(30)
    # the children share the supervisor's stderr pipe, so their goodbyes still arrive
    supervisor.wait_for("the supervisor is gone: stopping", count=2)
    supervisor.wait_for(r"errands\.worker: worker \S+ stopped after", count=2)


def test_processes_need_a_backend_they_can_share(project: Project) -> None:
    project.env["ERRANDS_TEST_URL"] = "memory://"
    result = project.run("worker", "tapp:app", "-p", "2", "--burst")
    assert result.returncode == 2 and "use -p 1" in result.stderr
