"""The in-process backend: dicts, heaps and one lock. The reference implementation of the
Backend contract (the conformance suite's fastest target) and the store for tests and scripts.
Nothing survives the process."""

from __future__ import annotations

import builtins
import heapq
import itertools
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from .._states import ACTIVE_STATES, JobState
from .base import (
    Backend,
    CancelResult,
    Capability,
    Claim,
    Counts,
    Enqueued,
    Extended,
    JobQuery,
    JobRecord,
    Maintenance,
    NewJob,
    Outcome,
    SlotRequest,
    Throughput,
    WorkerInfo,
    check_buckets,
    empty_counts,
    gcra,
    grant_slots,
    throughput_buckets,
)

__all__ = ["MemoryBackend"]

_AVAILABLE, _SCHEDULED, _RUNNING = JobState.AVAILABLE.value, JobState.SCHEDULED.value, JobState.RUNNING.value
_TERMINAL = {JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value}
_ACTIVE = {s.value for s in ACTIVE_STATES}


@dataclass
class _Job:
    record: JobRecord
    token: str | None = None
    lease_until: float = 0.0
    version: int = 0  # bumped on each move, so stale heap entries are recognised and skipped


class MemoryBackend(Backend):
    capabilities = frozenset({Capability.QUERIES, Capability.PUSH_WAKEUP, Capability.PRIORITIES, Capability.UNIQUE,
                              Capability.QUEUE_CONTROL, Capability.LIMITS, Capability.WORKFLOWS})

    def __init__(self, url: str, settings: object) -> None:
        super().__init__(url, settings)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._available: dict[str, list[tuple[int, float, str, int]]] = {}
        self._scheduled: list[tuple[float, str, int]] = []
        self._running: set[str] = set()
        self._unique: dict[str, str] = {}
        self._unique_created: dict[str, tuple[str, float]] = {}  # key -> (last job, created_at): unique_for
        self._paused: set[str] = set()
        self._slots: dict[str, dict[str, float]] = {}  # key -> {holder: expires at}
        self._rates: dict[str, float] = {}  # key -> theoretical arrival time (GCRA)
        self._versions = itertools.count(1)
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}  # id -> (info, expires at)

    def now(self) -> float:
        # an injected clock (errands.testing.FakeClock) freezes and advances time in tests:
        # every lease, run_at and cron tick here is read through this one method
        clock = self.settings.clock
        return clock.now() if clock is not None else time.time()

    # helpers (lock held) ---------------------------------------------------------------------
    def _move(self, job: _Job, state: str, now: float, **changes: object) -> None:
        """The one place a job changes state: keeps heaps, the running set and unique keys true."""
        record = job.record
        if record.state == _RUNNING:
            self._running.discard(record.id)
        if state in _TERMINAL and record.unique_key and self._unique.get(record.unique_key) == record.id:
            del self._unique[record.unique_key]
        if state in _TERMINAL:
            changes.setdefault("finished_at", now)
        job.record = replace(record, state=state, **changes)  # type: ignore[arg-type]
        job.version = next(self._versions)  # global, so a purged id enqueued again can't match old entries
        record = job.record
        if state == _AVAILABLE:
            entry = (-record.priority, record.run_at or now, record.id, job.version)
            heapq.heappush(self._available.setdefault(record.queue, []), entry)
            self._wakeup.notify_all()
        elif state == _SCHEDULED:
            heapq.heappush(self._scheduled, (record.run_at or now, record.id, job.version))
        elif state == _RUNNING:
            self._running.add(record.id)
        if state != _RUNNING:
            job.token = None

    def _promote(self, now: float, limit: int) -> int:
        promoted = 0
        while self._scheduled and self._scheduled[0][0] <= now and promoted < limit:
            _, job_id, version = heapq.heappop(self._scheduled)
            job = self._jobs.get(job_id)
            if job and job.version == version and job.record.state == _SCHEDULED:
                self._move(job, _AVAILABLE, now)
                promoted += 1
        return promoted

    def _owned(self, job_id: str, token: str) -> _Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.token != token or job.record.state != _RUNNING:
            return None
        return job

    def _claimable(self, queues: Sequence[str] | None) -> builtins.list[str]:
        return [q for q in (self._available if queues is None else queues) if q not in self._paused]

    def _pop_best(self, queues: Sequence[str] | None) -> _Job | None:
        names = self._claimable(queues)
        best_queue, best_entry = None, None
        for queue in names:
            heap = self._available.get(queue)
            while heap:
                entry = heap[0]
                job = self._jobs.get(entry[2])
                if job and job.version == entry[3] and job.record.state == _AVAILABLE:
                    break
                heapq.heappop(heap)
            if heap and (best_entry is None or heap[0] < best_entry):
                best_queue, best_entry = queue, heap[0]
        if best_entry is None or best_queue is None:
            return None
        heapq.heappop(self._available[best_queue])
        return self._jobs[best_entry[2]]

    # producer ----------------------------------------------------------------------------------
    def enqueue(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> list[Enqueued]:
        now = self.now()
        with self._lock:
            results: list[Enqueued] = []
            for new in jobs:
                if new.id in self._jobs:
                    results.append(Enqueued(new.id, False))
                    continue
                holder = self._unique_holder(new, now)
                if holder is not None:
                    results.append(Enqueued(holder, False))
                    continue
                run_at = new.run_at if new.run_at is not None else now + new.delay
                if new.debounce is not None:
                    run_at = now + new.debounce
                record = JobRecord(
                    id=new.id, name=new.name, queue=new.queue, args=new.args, kwargs=new.kwargs,
                    state="new", attempts=0, max_attempts=new.max_attempts, priority=new.priority,
                    run_at=run_at, created_at=now, unique_key=new.unique_key, timeout=new.timeout,
                    meta=new.meta,
                )
                job = _Job(record)
                self._jobs[new.id] = job
                if new.unique_key:
                    self._unique[new.unique_key] = new.id
                    self._unique_created[new.unique_key] = (new.id, now)
                self._move(job, _SCHEDULED if run_at > now else _AVAILABLE, now)
                results.append(Enqueued(new.id, True))
            return results

    def _unique_holder(self, new: NewJob, now: float) -> str | None:
        """The job that holds ``new``'s unique key, after a debounce moved it (lock held)."""
        key = new.unique_key
        if not key:
            return None
        holder = self._unique.get(key)
        if holder is None:
            recent = self._unique_created.get(key)
            if new.unique_for is not None and recent is not None and recent[1] > now - new.unique_for \
                    and recent[0] in self._jobs:
                return recent[0]
            return None
        job = self._jobs[holder]
        if new.debounce is not None and job.record.state in (_SCHEDULED, _AVAILABLE):
            self._move(job, _SCHEDULED, now, args=new.args, kwargs=new.kwargs, meta=new.meta,
                       run_at=now + new.debounce)
        return holder

    # worker ------------------------------------------------------------------------------------
    def claim(self, queues: Sequence[str] | None, limit: int, *, worker_id: str, lease: float) -> list[Claim]:
        now = self.now()
        claims: list[Claim] = []
        with self._lock:
            self._promote(now, 10_000)
            while len(claims) < limit:
                job = self._pop_best(queues)
                if job is None:
                    break
                claims.append(self._take(job, now, worker_id, lease))
        return claims

    def claim_ids(self, job_ids: Sequence[str], *, worker_id: str, lease: float) -> list[Claim]:
        now = self.now()
        claims: list[Claim] = []
        with self._lock:
            for job_id in dict.fromkeys(job_ids):
                job = self._jobs.get(job_id)
                record = job.record if job is not None else None
                if job is not None and record is not None and record.queue not in self._paused and (
                        record.state == _AVAILABLE or (record.state == _SCHEDULED and (record.run_at or 0) <= now)):
                    claims.append(self._take(job, now, worker_id, lease))  # its stale heap entry is skipped later
        return claims

    def _take(self, job: _Job, now: float, worker_id: str, lease: float) -> Claim:
        """Move one job to running under a new token (lock held)."""
        token = secrets.token_hex(16)
        self._move(job, _RUNNING, now, attempts=job.record.attempts + 1, started_at=now, worker_id=worker_id,
                   cancel_requested=False)
        job.token, job.lease_until = token, now + lease
        record = job.record
        return Claim(record.id, record.name, record.queue, record.args, record.kwargs, record.attempts,
                     record.max_attempts, token, record.timeout, record.priority, record.meta)

    def extend(self, claims: Sequence[Claim], lease: float) -> Extended:
        now = self.now()
        lost: set[str] = set()
        cancel: set[str] = set()
        with self._lock:
            for claim in claims:
                job = self._owned(claim.id, claim.token)
                if job is None:
                    lost.add(claim.id)
                    continue
                job.lease_until = now + lease
                if job.record.cancel_requested:
                    cancel.add(claim.id)
        return Extended(frozenset(lost), frozenset(cancel))

    def settle(self, outcomes: Sequence[Outcome]) -> list[str]:
        now = self.now()
        fenced: list[str] = []
        with self._lock:
            for outcome in outcomes:
                job = self._owned(outcome.id, outcome.token)
                if job is None:
                    fenced.append(outcome.id)
                    continue
                state = outcome.state.value
                changes: dict[str, object] = {"error": outcome.error if outcome.error is not None
                                              else job.record.error}
                if state == _SCHEDULED:
                    changes["run_at"] = now + outcome.retry_in
                    if outcome.retry_in <= 0:
                        state = _AVAILABLE
                elif state == JobState.SUCCEEDED.value:
                    changes["result"] = outcome.result
                self._move(job, state, now, **changes)
        return fenced

    def release(self, claims: Sequence[Claim], delay: float = 0.0) -> None:
        now = self.now()
        with self._lock:
            for claim in claims:
                job = self._owned(claim.id, claim.token)
                if job is not None:
                    self._move(job, _SCHEDULED if delay > 0 else _AVAILABLE, now,
                               attempts=max(job.record.attempts - 1, 0), run_at=now + max(delay, 0.0))

    # queue control, workflows, limits -----------------------------------------------------------
    def set_paused(self, queues: Sequence[str], paused: bool) -> None:
        with self._lock:
            if paused:
                self._paused.update(queues)
            else:
                self._paused.difference_update(queues)
                self._wakeup.notify_all()

    def paused_queues(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._paused)

    def wake(self, job_ids: Sequence[str]) -> int:
        now = self.now()
        moved = 0
        with self._lock:
            for job_id in dict.fromkeys(job_ids):
                job = self._jobs.get(job_id)
                if job is not None and job.record.state == _SCHEDULED:
                    self._move(job, _AVAILABLE, now, run_at=now)
                    moved += 1
        return moved

    def acquire_slots(self, requests: Sequence[SlotRequest], ttl: float) -> builtins.list[bool]:
        now = self.now()
        with self._lock:
            live = {r.key: {h for h, expires in self._slots.get(r.key, {}).items() if expires > now} for r in requests}
            granted, held = grant_slots(requests, live)
            for key in live:
                self._slots[key] = {h: e for h, e in self._slots.get(key, {}).items() if e > now}
            for key, holder in held:
                self._slots[key][holder] = now + ttl
        return granted

    def release_slots(self, held: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            for key, holder in held:
                holders = self._slots.get(key)
                if holders is not None:
                    holders.pop(holder, None)
                    if not holders:
                        del self._slots[key]

    def slot_usage(self) -> dict[str, int]:
        now = self.now()
        with self._lock:
            return {key: n for key, holders in self._slots.items()
                    if (n := sum(1 for expires in holders.values() if expires > now))}

    def take_rate(self, key: str, limit: int, period: float) -> float:
        now = self.now()
        with self._lock:
            wait, tat = gcra(self._rates.get(key), now, limit, period)
            if wait == 0.0:
                self._rates[key] = tat
            return wait

    def maintain(self, limit: int = 1000) -> Maintenance:
        now = self.now()
        with self._lock:
            promoted = self._promote(now, limit)
            requeued = failed = 0
            expired = [i for i in self._running if self._jobs[i].lease_until <= now][:limit]
            for job_id in expired:
                job = self._jobs[job_id]
                record = job.record
                error = f"worker lost while running (attempt {record.attempts}/{record.max_attempts})"
                if record.cancel_requested:  # the cancel outlives the worker that was asked to stop
                    self._move(job, JobState.CANCELLED.value, now, error=error)
                elif record.attempts >= record.max_attempts:
                    self._move(job, JobState.FAILED.value, now, error=error)
                    failed += 1
                else:
                    self._move(job, _AVAILABLE, now, error=error, run_at=now)
                    requeued += 1
        return Maintenance(promoted, requeued, failed)

    def wait(self, queues: Sequence[str] | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if any(self._available.get(q) for q in self._claimable(queues)):
                    return
                if self._scheduled and self._scheduled[0][0] <= self.now():
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._wakeup.wait(remaining):
                    return

    def notify(self) -> None:
        with self._lock:
            self._wakeup.notify_all()

    # queries -----------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.record if job else None

    def list(self, query: JobQuery) -> list[JobRecord]:
        with self._lock:
            records = [job.record for job in self._jobs.values()]
        selected = [
            r for r in records
            if (query.state is None or r.state == query.state.value)
            and (query.queue is None or r.queue == query.queue)
            and (query.name is None or r.name == query.name)
            and (query.before_id is None or r.id < query.before_id)
        ]
        selected.sort(key=lambda r: r.id, reverse=True)
        return selected[: query.limit]

    def counts(self, *, by_queue: bool = False) -> Counts:
        with self._lock:
            records = [job.record for job in self._jobs.values()]
        if not by_queue:
            totals = empty_counts()
            for r in records:
                if r.state in totals:
                    totals[r.state] += 1
            return totals
        nested: dict[str, dict[str, int]] = {}
        for r in records:
            bucket = nested.setdefault(r.queue, empty_counts())
            if r.state in bucket:
                bucket[r.state] += 1
        return nested

    def retry(self, job_ids: Sequence[str]) -> int:
        now = self.now()
        moved = 0
        with self._lock:
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None or job.record.state not in (JobState.FAILED.value, JobState.CANCELLED.value):
                    continue
                key = job.record.unique_key
                if key and key in self._unique:
                    continue  # another job holds the key now; retrying would make two
                if key:
                    self._unique[key] = job_id
                record = job.record
                self._move(
                    job, _AVAILABLE, now, run_at=now, finished_at=None, cancel_requested=False,
                    max_attempts=max(record.max_attempts, record.attempts + 1),
                )
                moved += 1
        return moved

    def cancel(self, job_ids: Sequence[str]) -> Mapping[str, CancelResult]:
        now = self.now()
        results: dict[str, CancelResult] = {}
        with self._lock:
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None:
                    results[job_id] = CancelResult.NOT_FOUND
                elif job.record.state in (_AVAILABLE, _SCHEDULED):
                    self._move(job, JobState.CANCELLED.value, now)
                    results[job_id] = CancelResult.CANCELLED
                elif job.record.state == _RUNNING:
                    job.record = replace(job.record, cancel_requested=True)
                    results[job_id] = CancelResult.REQUESTED
                else:
                    results[job_id] = CancelResult.FINISHED
        return results

    def purge(self, state: JobState, older_than: float) -> int:
        with self._lock:
            doomed = [
                job_id for job_id, job in self._jobs.items()
                if job.record.state == state.value and (job.record.finished_at or 0) < older_than
            ]
            for job_id in doomed:
                del self._jobs[job_id]
        return len(doomed)

    # observability -------------------------------------------------------------------------
    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        now = self.now()
        with self._lock:
            self._workers[info.id] = (replace(info, last_seen=now), now + ttl)

    def remove_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def workers(self) -> builtins.list[WorkerInfo]:
        now = self.now()
        with self._lock:
            for worker_id in [i for i, (_, expires) in self._workers.items() if expires <= now]:
                del self._workers[worker_id]
            alive = [info for info, _ in self._workers.values()]
        return sorted(alive, key=lambda w: (w.started_at, w.id))

    def throughput(self, since: float, bucket: float) -> Throughput:
        now = self.now()
        check_buckets(since, bucket, now)
        with self._lock:
            finished = [(job.record.finished_at, job.record.state) for job in self._jobs.values()
                        if job.record.finished_at is not None and job.record.finished_at >= since]
        return throughput_buckets(since, bucket, now,
                                  ((int((at - since) // bucket), state, 1) for at, state in finished))
