"""The Backend interface: the only part of any backend the core may call.

Sync and batch-first: every write takes a batch, because round trips decide
throughput, and the singular forms live in the facade. Records in, records out;
times cross this interface as float seconds since the epoch, read from the
backend's own clock (``Backend.now``) wherever it decides leases and ``run_at``.

Rules every implementation keeps (and ``tests/conformance`` checks):

* **Atomic per job.** Each call moves each job in one atomic step.
* **Claim order**: higher ``priority`` first, then earlier ``run_at``, then
  insertion order (job ids are time-sortable).
* **Fencing.** ``claim`` gives each claim a fresh ``token``; ``extend``,
  ``settle`` and ``release`` change a job only while that token still owns it,
  so a late answer from a worker whose lease was reclaimed is a counted no-op.
* **Attempts are counted at claim**; a lease that expires with attempts used up
  fails the job ("worker lost while running (attempt k/n)").
* **Idempotent enqueue.** Ids come from the client; enqueuing an id that exists
  creates nothing. A ``unique_key`` held by an unfinished job returns that job.
* **Thread-safe.** Worker threads call one backend object at once.

Observability (the dashboard, ``errands stats`` and metrics; optional: the defaults raise
``NotSupported``, so a backend opts out explicitly): a **worker registry**
(``register_worker`` / ``remove_worker`` / ``workers``, liveness by the backend's clock) and
**throughput** (jobs finished per time bucket, read from ``finished_at``).
"""

from __future__ import annotations

import abc
import builtins
import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from .._states import JobState
from ..errors import ConfigurationError, NotSupported

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "Backend",
    "CancelResult",
    "Capability",
    "Claim",
    "Counts",
    "Enqueued",
    "Extended",
    "JobQuery",
    "JobRecord",
    "Maintenance",
    "NewJob",
    "Outcome",
    "SlotRequest",
    "Throughput",
    "WorkerInfo",
]


class Capability(str, Enum):
    """What a backend can do beyond the required core; the README's table lists them per backend."""

    TRANSACTIONAL_ENQUEUE = "transactional_enqueue"  # app.transaction(conn)
    MULTI_PROCESS = "multi_process"  # several worker processes share the store
    PERSISTENT = "persistent"  # jobs survive a restart of every process
    QUERIES = "queries"  # get_job / list_jobs / stats by state
    PUSH_WAKEUP = "push_wakeup"  # idle workers are woken, not only polled
    PRIORITIES = "priorities"  # claim order follows priority (quorum queues deliver FIFO)
    UNIQUE = "unique"  # unique_key (with unique_for / debounce) and enqueue-by-existing-id return the existing job
    QUEUE_CONTROL = "queue_control"  # pause_queues / resume_queues: claims skip paused queues
    LIMITS = "limits"  # global concurrency and rate limits: acquire_slots / take_rate
    WORKFLOWS = "workflows"  # chains and groups: wake, get_many, release(delay=)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to store. ``args``/``kwargs`` are JSON text made by the codec.
    ``run_at`` (absolute) wins over ``delay`` (seconds from the backend's now)."""

    id: str
    name: str
    queue: str
    args: str
    kwargs: str
    max_attempts: int
    priority: int = 0
    run_at: float | None = None
    delay: float = 0.0
    unique_key: str | None = None
    timeout: float | None = None
    meta: str | None = None  # JSON object text (tracing context, workflow links); None means {}
    # with unique_key (Capability.UNIQUE): a job with this key created less than ``unique_for``
    # seconds ago holds the key even once finished (a throttle)
    unique_for: float | None = None
    # with unique_key: a not-yet-started holder takes this job's args/kwargs/meta and moves its
    # run_at to now + ``debounce`` (the last enqueue wins); none: stored to run in ``debounce`` s
    debounce: float | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """``created`` is False when the id already existed or ``unique_key`` matched an unfinished job
    (then ``id`` is that job's id)."""

    id: str
    created: bool


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker owns until ``lease_until``, proven by ``token``."""

    id: str
    name: str
    queue: str
    args: str
    kwargs: str
    attempts: int
    max_attempts: int
    token: str
    timeout: float | None = None
    priority: int = 0
    meta: str | None = None  # as stored by NewJob.meta


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the worker decided for one claim. ``state`` is SUCCEEDED, FAILED, CANCELLED, or
    SCHEDULED for a retry ``retry_in`` seconds from the backend's now. ``result`` is JSON text."""

    id: str
    token: str
    state: JobState
    result: str | None = None
    error: str | None = None
    retry_in: float = 0.0


@dataclass(frozen=True, slots=True)
class Extended:
    """Answer to a heartbeat: claims whose lease was lost, and running jobs asked to stop."""

    lost: frozenset[str] = frozenset()
    cancel_requested: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Maintenance:
    promoted: int = 0  # scheduled jobs made available
    requeued: int = 0  # expired leases put back
    failed: int = 0  # expired leases whose attempts were used up


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A stored job as the backend holds it: JSON still as text, times as epoch seconds.
    The facade decodes it (defensively) into ``JobInfo``."""

    id: str
    name: str
    queue: str
    args: str
    kwargs: str
    state: str
    attempts: int
    max_attempts: int
    priority: int
    run_at: float | None
    created_at: float | None
    started_at: float | None = None
    finished_at: float | None = None
    result: str | None = None
    error: str | None = None
    unique_key: str | None = None
    timeout: float | None = None
    worker_id: str | None = None
    cancel_requested: bool = False
    meta: str | None = None  # as stored by NewJob.meta


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """One of at most ``limit`` slots of ``key``, held by ``holder`` (a running job: ``id:token``)."""

    key: str
    holder: str
    limit: int


@dataclass(frozen=True, slots=True)
class JobQuery:
    state: JobState | None = None
    queue: str | None = None
    name: str | None = None
    limit: int = 100
    before_id: str | None = None  # paging: only ids older than this one (newest first)


class CancelResult(str, Enum):
    CANCELLED = "cancelled"  # was scheduled or available; now cancelled
    REQUESTED = "requested"  # was running; the worker is asked to stop it at its next heartbeat
    FINISHED = "finished"  # already succeeded, failed or cancelled: nothing to do
    NOT_FOUND = "not_found"

    def __str__(self) -> str:
        return self.value


Counts = dict[str, Any]  # {"scheduled": n, ...} or, by queue, {"queue": {"scheduled": n, ...}}


def empty_counts() -> dict[str, int]:
    return {state.value: 0 for state in JobState}


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker process, as the registry keeps it. ``queues`` empty: every queue.
    ``running``: ids of the jobs it holds (claimed, not yet settled). Times are epoch seconds;
    ``last_seen`` is stamped by the backend (its clock) at each ``register_worker``, so the value
    passed in is ignored."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: float
    last_seen: float = 0.0
    running: tuple[str, ...] = ()
    processed: int = 0


Throughput = list[tuple[float, int, int]]  # [(bucket_start, succeeded, failed), ...] oldest first
MAX_BUCKETS = 10_000


def throughput_buckets(since: float, bucket: float, now: float,
                       rows: Iterable[tuple[Any, str, int]]) -> Throughput:
    """Fold ``(bucket index, state, count)`` rows (index = ``floor((finished_at - since) /
    bucket)``) into the dense list ``Backend.throughput`` returns: one entry per bucket from
    ``since`` up to the one holding ``now``, empty buckets included, other states ignored."""
    check_buckets(since, bucket, now)
    size = max(1, math.ceil((now - since) / bucket)) if now > since else 1
    succeeded, failed = [0] * size, [0] * size
    for index, state, count in rows:
        try:
            i = int(index)
        except (TypeError, ValueError, OverflowError):
            continue  # a finished_at written by hand as junk
        if 0 <= i < size:
            if state == JobState.SUCCEEDED.value:
                succeeded[i] += int(count)
            elif state == JobState.FAILED.value:
                failed[i] += int(count)
    return [(since + i * bucket, succeeded[i], failed[i]) for i in range(size)]


def gcra(tat: float | None, now: float, limit: int, period: float) -> tuple[float, float]:
    """One step of the generic cell rate algorithm behind ``Backend.take_rate``: given the stored
    theoretical arrival time ``tat`` (None: never used), return ``(0.0, new_tat)`` when a start is
    granted (store ``new_tat``), else ``(seconds to wait, tat)`` (store nothing)."""
    interval = period / limit
    start = now if tat is None else max(tat, now)
    new_tat = start + interval
    if new_tat - now <= period + 1e-9:
        return 0.0, new_tat
    return new_tat - period - now, start


def grant_slots(requests: Sequence[SlotRequest],
                live: dict[str, set[str]]) -> tuple[builtins.list[bool], builtins.list[tuple[str, str]]]:
    """Decide ``acquire_slots`` for a batch, given each key's live holders (read under the keys'
    locks): ``(granted per request, the (key, holder) pairs to hold)``. A holder keeps its own
    slot; earlier requests of the batch count against later ones."""
    granted: builtins.list[bool] = []
    held: dict[tuple[str, str], None] = {}
    for request in requests:
        holders = live.setdefault(request.key, set())
        ok = request.holder in holders or len(holders) < request.limit
        if ok:
            holders.add(request.holder)
            held[(request.key, request.holder)] = None
        granted.append(ok)
    return granted, builtins.list(held)


def check_buckets(since: float, bucket: float, now: float) -> None:
    if not (isinstance(bucket, (int, float)) and bucket > 0 and math.isfinite(bucket)):
        raise ConfigurationError(f"throughput bucket must be seconds > 0, got {bucket!r}")
    if not (isinstance(since, (int, float)) and math.isfinite(since)):
        raise ConfigurationError(f"throughput since must be epoch seconds, got {since!r}")
    if (now - since) / bucket > MAX_BUCKETS:
        raise ConfigurationError(f"throughput asks for more than {MAX_BUCKETS} buckets: "
                                 f"since={since!r}, bucket={bucket!r}")


class Backend(abc.ABC):
    """Base class of every backend. Subclasses set ``capabilities`` and implement the abstract
    methods; ``now``/``wait``/``notify`` have usable defaults."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings

    @classmethod
    def capabilities_for(cls, url: str) -> frozenset[Capability]:
        """What a backend built from ``url`` can do, before building it (a paired backend's
        answer depends on its URL's store)."""
        return cls.capabilities

    # lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect and run idempotent setup (schema, scripts). Safe to call twice."""

    def close(self) -> None:
        """Release connections. The object may be opened again."""

    def now(self) -> float:
        """The backend's clock, in epoch seconds: it decides leases, ``run_at`` and cron ticks."""
        return time.time()

    # producer --------------------------------------------------------------------------------
    @abc.abstractmethod
    def enqueue(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> list[Enqueued]:
        """Store every job in one atomic step (all or none), in one round trip where possible.
        With ``connection`` (Capability.TRANSACTIONAL_ENQUEUE) write through the caller's own
        connection and leave its transaction open."""

    # worker ----------------------------------------------------------------------------------
    def expect_work(self, queues: Collection[str], longest_timeout: float | None) -> None:
        """Told by a worker at start: the queues its handlers use and its longest handler timeout
        (None: a handler has none). A backend that must subscribe to queues by name (AMQP)
        consumes these when asked for every queue, and checks server limits against the timeout."""

    @abc.abstractmethod
    def claim(self, queues: Sequence[str] | None, limit: int, *, worker_id: str, lease: float) -> list[Claim]:
        """Atomically promote due scheduled jobs, then move up to ``limit`` available jobs of
        ``queues`` (None: every queue) to running: attempts += 1, a new token, a lease of
        ``lease`` seconds."""

    def claim_ids(self, job_ids: Sequence[str], *, worker_id: str, lease: float) -> list[Claim]:
        """Claim exactly these jobs, as ``claim`` would (attempts += 1, a new token, a lease), each
        only if it is available or scheduled and due; others are left as they are and not
        returned. Duplicates in ``job_ids`` claim once. A store paired with a broker (AMQP) claims
        what the broker delivered this way, so a duplicate delivery can never run a job twice."""
        raise NotSupported(f"{type(self).__name__} can't claim jobs by id")

    @abc.abstractmethod
    def extend(self, claims: Sequence[Claim], lease: float) -> Extended:
        """Heartbeat: push the lease of every claim still owned; report the lost and the cancelled."""

    @abc.abstractmethod
    def settle(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply outcomes, each only while its token owns the job. Returns the ids not applied
        (fenced). Idempotent: a replay changes nothing."""

    @abc.abstractmethod
    def release(self, claims: Sequence[Claim], delay: float = 0.0) -> None:
        """Put owned claims back without counting the attempt: available (graceful shutdown), or
        with ``delay`` > 0 scheduled that many seconds from now (a snooze: over a limit, waiting on
        a workflow's dependencies). Claims no longer owned are left alone."""

    @abc.abstractmethod
    def maintain(self, limit: int = 1000) -> Maintenance:
        """Promote due scheduled jobs and reclaim expired leases (requeue, or fail once the
        attempts are used up). Every worker calls this; it must be safe to run concurrently."""

    def wait(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Block until work may be available on ``queues`` or ``timeout`` passes. The default
        sleeps; backends with a push channel return early."""
        time.sleep(timeout)

    def notify(self) -> None:
        """Wake any ``wait`` in this process (used after an in-process enqueue or shutdown)."""

    # queries and admin -------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, job_id: str) -> JobRecord | None: ...

    @abc.abstractmethod
    def list(self, query: JobQuery) -> list[JobRecord]:
        """Jobs matching ``query``, newest first."""

    @abc.abstractmethod
    def counts(self, *, by_queue: bool = False) -> Counts: ...

    @abc.abstractmethod
    def retry(self, job_ids: Sequence[str]) -> int:
        """Failed or cancelled jobs back to available (attempts kept; ``max_attempts`` raised so
        at least one more attempt is allowed). Returns how many moved."""

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> Mapping[str, CancelResult]: ...

    @abc.abstractmethod
    def purge(self, state: JobState, older_than: float) -> int:
        """Delete jobs in a terminal ``state`` that finished before ``older_than``; returns the count."""


    # queue control (Capability.QUEUE_CONTROL) --------------------------------------------------
    def set_paused(self, queues: Sequence[str], paused: bool) -> None:
        """Pause (or resume) ``queues`` for every worker: ``claim`` and ``claim_ids`` skip jobs of
        a paused queue, which stay available; running jobs finish. Persistent like the jobs.
        Pausing a paused queue (or resuming a running one) changes nothing."""
        raise NotSupported(f"{type(self).__name__} can't pause queues")

    def paused_queues(self) -> frozenset[str]:
        """The queues paused now."""
        raise NotSupported(f"{type(self).__name__} can't pause queues")

    # workflows (Capability.WORKFLOWS) -----------------------------------------------------------
    def wake(self, job_ids: Sequence[str]) -> int:
        """Make these jobs available now if they are scheduled (a dependency finished); others are
        left alone. Returns how many moved. Wakes waiting workers like an enqueue."""
        raise NotSupported(f"{type(self).__name__} can't wake scheduled jobs")

    def get_many(self, job_ids: Sequence[str]) -> builtins.list[JobRecord]:
        """The jobs of ``job_ids`` that exist, in any order (one round trip where possible)."""
        return [record for record in map(self.get, dict.fromkeys(job_ids)) if record is not None]

    # limits (Capability.LIMITS) -----------------------------------------------------------------
    def acquire_slots(self, requests: Sequence[SlotRequest], ttl: float) -> builtins.list[bool]:
        """For each request, in order: True when ``holder`` now holds one of ``limit`` slots of
        ``key`` (atomically: never more than ``limit`` live holders across every process), False
        when they are all taken. A holder that already holds its slot keeps it (a heartbeat
        calls this again) and its hold is pushed to ``ttl`` seconds from now; a hold not renewed
        within ``ttl`` lapses (its worker died)."""
        raise NotSupported(f"{type(self).__name__} can't enforce concurrency limits")

    def release_slots(self, held: Sequence[tuple[str, str]]) -> None:
        """Give back the slots of these ``(key, holder)`` pairs; unknown pairs are ignored."""
        raise NotSupported(f"{type(self).__name__} can't enforce concurrency limits")

    def slot_usage(self) -> dict[str, int]:
        """Live holders per key (keys with none may be left out): the dashboard's limits view."""
        raise NotSupported(f"{type(self).__name__} can't enforce concurrency limits")

    def take_rate(self, key: str, limit: int, period: float) -> float:
        """A rate limit of ``limit`` starts per ``period`` seconds for ``key``, shared by every
        process (a generic cell rate algorithm: a burst of ``limit``, then one per
        ``period / limit``). Returns 0.0 when a start was granted (and counted), else the
        seconds until one will be (nothing counted)."""
        raise NotSupported(f"{type(self).__name__} can't enforce rate limits")

    # observability (optional: the defaults raise NotSupported) ----------------------------------
    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """Upsert ``info`` under ``info.id``, stamping ``last_seen`` with the backend's clock; the
        entry lives ``ttl`` seconds unless registered again. A worker calls this at start and at
        every heartbeat (ttl = its lease), so a worker that dies disappears after its lease."""
        raise NotSupported(f"{type(self).__name__} keeps no worker registry")

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker at once (graceful stop). Unknown ids are ignored."""
        raise NotSupported(f"{type(self).__name__} keeps no worker registry")

    def workers(self) -> builtins.list[WorkerInfo]:
        """Workers whose registration has not expired by the backend's clock, oldest
        ``started_at`` first. Expired entries are never returned (and may be deleted here)."""
        raise NotSupported(f"{type(self).__name__} keeps no worker registry")

    def throughput(self, since: float, bucket: float) -> Throughput:
        """Jobs that finished ``succeeded`` or ``failed`` since ``since`` (epoch seconds), counted
        per ``bucket`` seconds by ``finished_at``: ``[(bucket_start, succeeded, failed), ...]``,
        oldest first, one entry per bucket up to the backend's now, empty ones included
        (``throughput_buckets`` builds that list from grouped rows). Purged jobs are not counted."""
        raise NotSupported(f"{type(self).__name__} can't count finished jobs by time")
