"""The Redis backend (``redis://``, ``rediss://``; extra ``errands[redis]``).

Every state change is one Lua script (``redis_lua/*.lua``: loaded once, run by EVALSHA, loaded
again after a NOSCRIPT), timed by the server's clock (``TIME``). A claim moves a job in place to
its queue's running set, scored by the lease deadline: nothing is popped and held in memory.

URL options, stripped before the rest of the URL goes to redis-py::

    redis://host:6379/0?prefix=errands&retention=7d&failed_retention=30d

``prefix`` (default ``errands``) starts every key. ``retention`` (default ``7d``) is how long
succeeded and cancelled jobs are kept after they finish, ``failed_retention`` (default ``30d``)
the same for the dead-letter set: seconds, a number with ``s m h d w``, or ``forever``. Each
worker's maintenance pass deletes jobs past it; finished records also get a TTL of retention
plus an hour, so memory is freed even if no worker runs again. Use one setting per app.

Keys (``<q>``: the queue name, bytes outside ``A-Z a-z 0-9 _ . -`` as ``%XX``, "" as ``%``: data
that can't break the hash tag ``{<q>}``, which puts one queue's keys in one Redis Cluster slot)::

    <prefix>:queues                    set   every queue name enqueued to, for queues=None
    <prefix>:newqueue                  list  names of queues just seen first (wakes queues=None)
    <prefix>:notify:<process>          list  in-process wake-ups (expire after a minute)
    <prefix>:{<q>}:job:<id>            hash  the job record
    <prefix>:{<q>}:scheduled           zset  score: run_at
    <prefix>:{<q>}:available           zset  score: (1000 - priority) * 2**42 + run_at in ms;
                                             ties by id (UUIDv7: insertion order)
    <prefix>:{<q>}:running             zset  score: lease deadline
    <prefix>:{<q>}:succeeded|failed|cancelled  zset  score: finished_at (retention, purge)
    <prefix>:{<q>}:ids:<state>         zset  all scores 0: ids in lexical order, for list()
    <prefix>:{<q>}:unique              hash  unique_key -> the unfinished job holding it
    <prefix>:{<q>}:unique_last         hash  unique_key -> the job last created with it (unique_for)
    <prefix>:{<q>}:paused              string  present while the queue is paused (claims skip it)
    <prefix>:{<q>}:wake                list  wake-up tokens for idle workers (BLPOP; at most 64)
    <prefix>:paused                    set   queues paused (a superset of the flags: paused_queues)
    <prefix>:workers, <prefix>:worker:<id>     the worker registry (see _redis_registry.py)
    <prefix>:{:limits}:...             concurrency slots and rate limits (see _redis_limits.py)

Unique keys and ids are unique per queue; ``get``/``cancel``/``retry`` look in every known queue.
A job exists once the reply arrived, and survives a server crash as far as its AOF settings go:
``appendfsync always`` keeps every acknowledged job; ``everysec`` (the default) may lose the last
second or two. Run Redis with ``maxmemory-policy noeviction`` (``open()`` warns otherwise).
redis-py parses replies with hiredis when it is installed (``pip install 'redis[hiredis]'``).
"""
from __future__ import annotations

import contextlib
import logging
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis import exceptions as rx
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from .._states import JobState
from ..errors import BackendUnavailable, ConfigurationError
from ._redis_codec import escape_queue
from ._redis_codec import head_score as _head_score
from ._redis_codec import integer as _int
from ._redis_codec import job_record as _record
from ._redis_codec import json_text as _json_text
from ._redis_codec import number as _float
from ._redis_codec import optional_json as _optional_json
from ._redis_codec import text as _s
from ._redis_limits import RedisLimits
from ._redis_registry import RedisRegistry
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
    empty_counts,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["RedisBackend", "escape_queue", "parse_duration"]

logger = logging.getLogger("errands.backends.redis")

STATES = tuple(state.value for state in JobState)
SCRIPTS = ("enqueue", "claim", "claim_ids", "extend", "settle", "release", "maintain", "cancel", "retry", "purge",
           "pause", "wake", "get_many", "acquire_slots", "release_slots", "slot_usage", "take_rate")
OPTIONS = ("prefix", "retention", "failed_retention")
TTL_MARGIN = 3600.0  # a record outlives its retention by this much: maintain() purges it first
QUEUE_CACHE = 1.0  # seconds the known-queue list is trusted on hot paths (claim, maintain)
BLOCK_CHUNK = 2.0  # one BLPOP never blocks longer, so it stays well inside the socket timeout
GET_MANY_BATCH = 500  # ids one get_many script reads at most (each looked up in every queue)
PROMOTE_LIMIT = PURGE_BATCH = 1000  # jobs one script call moves at most: no call blocks Redis for long
# Refusals that mean "not now" rather than a bug: reported as BackendUnavailable. redis-py
# strips the code from the errors it has classes for, so match both the class and the text.
_REFUSALS = ("READONLY", "MASTERDOWN", "MISCONF", "LOADING", "NOAUTH", "NOPERM", "BUSY", "CLUSTERDOWN")
_REFUSED = (rx.ReadOnlyError, rx.NoPermissionError, rx.ClusterDownError)
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(name: str, value: str) -> float:
    """``"7d"`` -> 604800.0; ``"forever"`` -> 0.0 (kept until purged by hand)."""
    text = value.strip().lower()
    if text in ("forever", "never", "none", "off"):
        return 0.0
    match = _DURATION_RE.fullmatch(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigurationError(f"{name} must be a duration like 3600, 90s, 15m, 12h, 7d or 2w, "
                                 f"or 'forever'; got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """Separate errands' own query options from the URL handed to redis-py."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    rest = urlencode([(key, value) for key, value in pairs if key not in OPTIONS])
    return urlunsplit(parts._replace(query=rest)), {key: value for key, value in pairs if key in OPTIONS}


def _arg(text: str | None) -> str:
    """An optional string as a script argument: "" for None, "=" + text otherwise."""
    return "" if text is None else "=" + text


def _seconds(value: float | None) -> str:
    """Optional seconds as a script argument: "" for None."""
    return "" if value is None else repr(float(value))


def _token_queue(token: str) -> str | None:
    """Claim tokens end in "|<queue>", so an Outcome (which carries no queue) finds its keys."""
    return token.split("|", 1)[1] if "|" in token else None


def _by_queue(items: Sequence[tuple[str, Sequence[Any]]]) -> tuple[list[str], list[Any]]:
    """(queue, fields) pairs -> the queues (KEYS order) and flat args led by 1-based queue indexes."""
    index: dict[str, int] = {}
    args: list[Any] = []
    for queue, fields in items:
        args += [index.setdefault(queue, len(index) + 1), *fields]
    return list(index), args


class RedisBackend(RedisRegistry, RedisLimits, Backend):
    """Jobs in Redis: one Lua script per state change, sorted sets per queue and state,
    blocking wake-ups for idle workers. See the module docstring for the key layout."""

    capabilities = frozenset({Capability.MULTI_PROCESS, Capability.PERSISTENT, Capability.QUERIES,
                              Capability.PUSH_WAKEUP, Capability.PRIORITIES, Capability.UNIQUE,
                              Capability.QUEUE_CONTROL, Capability.LIMITS, Capability.WORKFLOWS})

    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self._redis_url, options = _split_url(url)
        self.prefix = options.get("prefix", "errands")
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise ConfigurationError(f"prefix must be 1-100 of A-Z a-z 0-9 _ . : -, got {self.prefix!r}")
        self.retention = parse_duration("retention", options.get("retention", "7d"))
        self.failed_retention = parse_duration("failed_retention", options.get("failed_retention", "30d"))
        self._keep = (self.retention, self.failed_retention, self.retention)  # succeeded, failed, cancelled
        self._ttls = tuple(age + TTL_MARGIN if age else 0 for age in self._keep)
        parts = urlsplit(self._redis_url)
        self._where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}  # redis-py Script objects
        self._known: list[str] = []
        self._known_at = -1e9
        self._announced: dict[str, float] = {}  # queue -> when this process last SADDed it
        self._server_checked = False
        self._notify_key = f"{self.prefix}:notify:{uuid.uuid4().hex}"
        self._newqueue_key = f"{self.prefix}:newqueue"
        self._wait_lock = threading.Lock()
        self._waiting = 0
        self._notify_sent = False
        self._local_wake = threading.Event()
        self._reported: dict[str, float] = {}
        self.queue_errors: dict[str, str] = {}  # queue -> last "key of the wrong type" error
        self.skipped = 0  # ids met in an index whose record was gone (dropped, not an error)
        self.corrupt = 0  # records failed in place because their state or counters were impossible

    # lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        if self._client is not None:
            return
        # Bounded retries on connection errors only: a producer hears BackendUnavailable within
        # seconds while the server is down, and the pool reconnects on its own once it is back.
        # Timeouts are not retried: the script may have run, and a worker retries by itself.
        retry = Retry(EqualJitterBackoff(cap=0.5, base=0.05), 3, supported_errors=(rx.ConnectionError,))
        self._client = redis.Redis.from_url(self._redis_url, socket_timeout=5.0, socket_connect_timeout=2.0,
                                            socket_keepalive=True, retry=retry, retry_on_timeout=False)
        lua = resources.files(__package__).joinpath("redis_lua")
        prelude = lua.joinpath("_common.lua").read_text("utf-8") + "\n"
        for name in SCRIPTS:  # each script is the shared prelude and its own body
            body = lua.joinpath(f"{name}.lua").read_text("utf-8")
            self._scripts[name] = self._client.register_script(prelude + body)
        try:
            self._check_server()
        except BackendUnavailable as exc:  # a worker started before its server keeps trying
            logger.warning("redis is not reachable yet (%s); will keep trying", exc)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()  # and its pool's connections (from_url made the pool for it)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self.open()
        assert self._client is not None
        return self._client

    def now(self) -> float:
        with self._errors():
            seconds, micros = self.client.time()
        return seconds + micros / 1e6

    def _check_server(self) -> None:
        """Load the scripts, and warn loudly when Redis may evict keys: evicted records are lost
        jobs. CONFIG is often refused on managed Redis (ACL, renamed): then the check is skipped."""
        reply, *_ = self._pipeline([("CONFIG GET", "maxmemory-policy"),
                                    *(("SCRIPT LOAD", script.script) for script in self._scripts.values())])
        self._server_checked = True
        policy = _s(next(iter(reply.values()), b"")) if isinstance(reply, dict) and reply else ""
        if policy and policy != "noeviction":
            logger.warning("redis at %s has maxmemory-policy=%s: under memory pressure Redis will DELETE job "
                           "keys and jobs will be lost. Set maxmemory-policy noeviction (enqueues then fail "
                           "with BackendUnavailable instead).", self._where, policy)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """redis-py's errors -> BackendUnavailable naming the cause; other errors are bugs."""
        try:
            yield
        except rx.ConnectionError as exc:
            raise BackendUnavailable(f"cannot reach redis at {self._where}: {exc}") from exc
        except rx.TimeoutError as exc:
            raise BackendUnavailable(f"redis at {self._where} did not answer in time: {exc}") from exc
        except rx.ResponseError as exc:
            text = str(exc)
            if isinstance(exc, rx.OutOfMemoryError) or "OOM command not allowed" in text:
                raise BackendUnavailable(f"redis at {self._where} is out of memory (used memory > "
                                         f"maxmemory, nothing may be evicted): {text}") from exc
            if isinstance(exc, _REFUSED) or text.startswith(_REFUSALS):
                raise BackendUnavailable(f"redis at {self._where} refused the command: {text}") from exc
            raise

    # keys and scripts ------------------------------------------------------------------------
    def _base(self, queue: str) -> str:
        return f"{self.prefix}:{{{escape_queue(queue)}}}:"

    def _run(self, name: str, queues: Sequence[str], args: Sequence[Any]) -> Any:
        return self._script(name, [self._base(q) for q in queues], args)

    def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._client is None:
            self.open()
        with self._errors():
            return self._scripts[name](keys=keys, args=[*self._ttls, *args])

    def _pipeline(self, commands: Iterable[Sequence[Any]]) -> list[Any]:
        """Raw commands in one round trip; a command that failed leaves its exception in its slot."""
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return pipe.execute(raise_on_error=False)

    def _queues(self, max_age: float = QUEUE_CACHE) -> list[str]:
        """Known queue names, from a cache no older than ``max_age`` seconds."""
        if time.monotonic() - self._known_at > max_age:
            with self._errors():
                members = self.client.smembers(f"{self.prefix}:queues")
            self._known = sorted(m.decode("utf-8", "surrogateescape") if isinstance(m, bytes) else m
                                 for m in members)
            self._known_at = time.monotonic()
        return self._known

    def _report(self, errors: Sequence[Any], queues: Sequence[str]) -> None:
        """A queue whose keys have the wrong type fails alone: logged (once a minute), kept in
        ``queue_errors``, and the other queues go on."""
        for i in range(0, len(errors), 2):
            self._report_one(queues[int(errors[i]) - 1], _s(errors[i + 1]))

    def _report_one(self, queue: str, message: str) -> None:
        self.queue_errors[queue] = message
        if time.monotonic() - self._reported.get(queue, -1e9) > 60:
            self._reported[queue] = time.monotonic()
            logger.error("queue %r is unusable and skipped: %s", queue, message)

    def _count(self, skipped: int) -> None:
        self.skipped += skipped
        if skipped:
            logger.warning("skipped %d job id(s) whose record is gone", skipped)

    # producer --------------------------------------------------------------------------------
    def enqueue(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> list[Enqueued]:
        if connection is not None:
            raise ConfigurationError("the redis backend can't enqueue inside your own transaction")
        if not jobs:
            return []
        queues, args = _by_queue([(job.queue, (
            job.id, job.name, job.queue, job.args, job.kwargs, job.max_attempts, job.priority,
            _arg(None if job.run_at is None else repr(float(job.run_at))), repr(float(job.delay)),
            _arg(job.unique_key), _seconds(job.timeout), _arg(job.meta), _seconds(job.unique_for),
            _seconds(job.debounce),
        )) for job in jobs])
        # The known-queue set lives outside the queues' hash tags, so the script can't add to it:
        # each process adds its queues once a minute (so a lost set heals), not on every enqueue.
        stale, added = [q for q in queues if time.monotonic() - self._announced.get(q, -1e9) > 60], 0
        if stale:
            with self._errors():
                added = self.client.sadd(f"{self.prefix}:queues", *stale)
            self._announced.update(dict.fromkeys(stale, time.monotonic()))
            self._known = sorted({*self._known, *stale})
        reply = self._run("enqueue", queues, args)
        if added:  # a new queue: wake a worker waiting on every queue, so it looks again
            self._pipeline([("LPUSH", self._newqueue_key, *stale), ("LTRIM", self._newqueue_key, 0, 63)])
        if not reply[0]:
            raise BackendUnavailable(f"can't enqueue: {_s(reply[1])}")
        flat = reply[1]
        return [Enqueued(_s(flat[i]), bool(flat[i + 1])) for i in range(0, len(flat), 2)]

    # worker ----------------------------------------------------------------------------------
    def claim(self, queues: Sequence[str] | None, limit: int, *, worker_id: str, lease: float) -> list[Claim]:
        if limit <= 0:
            return []
        names = list(queues) if queues is not None else self._queues()
        claims = self._claim(names, limit, worker_id, lease) if names else []
        if not claims and queues is None and time.monotonic() - self._known_at > 0.05:
            fresh = self._queues(0)  # idle: make sure no new queue went unseen
            if set(fresh) - set(names):
                claims = self._claim(fresh, limit, worker_id, lease)
        return claims

    def _claim(self, queues: list[str], limit: int, worker_id: str, lease: float) -> list[Claim]:
        nonce = secrets.token_hex(8)  # with a counter, makes each claim's token new
        args = [limit, lease, worker_id, nonce, PROMOTE_LIMIT, *queues]
        flat, skipped, corrupt, errors = self._run("claim", queues, args)
        self._report(errors, queues)
        self._count(skipped)
        if corrupt:
            self.corrupt += corrupt
            logger.error("failed %d job(s) whose stored record is corrupt", corrupt)
        return self._claims(flat, queues)

    @staticmethod
    def _claims(flat: Sequence[Any], queues: Sequence[str]) -> list[Claim]:
        rows = (flat[i:i + 11] for i in range(0, len(flat), 11))  # see claim.lua for the fields
        return [Claim(id=_s(f[0]), name=_s(f[1]), queue=queues[int(f[9]) - 1], args=_json_text(f[2]),
                      kwargs=_json_text(f[3]), attempts=int(f[4]), max_attempts=int(f[5]), token=_s(f[6]),
                      timeout=_float(f[7]), priority=_int(f[8], 0), meta=_optional_json(f[10]))
                for f in rows]

    def claim_ids(self, job_ids: Sequence[str], *, worker_id: str, lease: float) -> list[Claim]:
        ids = list(dict.fromkeys(job_ids))
        queues = self._queues()
        claims, missing = self._claim_ids(ids, queues, worker_id, lease) if ids and queues else ([], ids)
        if missing and time.monotonic() - self._known_at > 0.05:  # in a queue not seen yet? (as get())
            known = set(queues)
            fresh = [q for q in self._queues(0) if q not in known]
            if fresh:
                claims += self._claim_ids(missing, fresh, worker_id, lease)[0]
        return claims

    def _claim_ids(self, ids: list[str], queues: list[str], worker_id: str,
                   lease: float) -> tuple[list[Claim], list[str]]:
        nonce = secrets.token_hex(8)  # with a counter, makes each claim's token new
        args = [lease, worker_id, nonce, len(queues), *queues, *ids]
        flat, missing, corrupt, errors = self._run("claim_ids", queues, args)
        self._report(errors, queues)
        if corrupt:
            self.corrupt += corrupt
            logger.error("failed %d job(s) whose stored record is corrupt", corrupt)
        return self._claims(flat, queues), [_s(m) for m in missing]

    def extend(self, claims: Sequence[Claim], lease: float) -> Extended:
        if not claims:
            return Extended()
        queues, args = _by_queue([(c.queue, (c.id, c.token)) for c in claims])
        lost, cancel, errors = self._run("extend", queues, [lease, *args])
        self._report(errors, queues)
        return Extended(frozenset(_s(i) for i in lost), frozenset(_s(i) for i in cancel))

    def settle(self, outcomes: Sequence[Outcome]) -> list[str]:
        fenced: list[str] = []
        items = []
        for o in outcomes:
            queue = _token_queue(o.token)
            if queue is None:  # not a token this backend made: it owns nothing
                fenced.append(o.id)
                continue
            fields = (o.id, o.token, JobState(o.state).value, _arg(o.result), _arg(o.error), repr(o.retry_in))
            items.append((queue, fields))
        if items:
            queues, args = _by_queue(items)
            more, errors = self._run("settle", queues, args)
            self._report(errors, queues)
            fenced += [_s(i) for i in more]
        return fenced

    def release(self, claims: Sequence[Claim], delay: float = 0.0) -> None:
        if not math.isfinite(delay):
            raise ConfigurationError(f"release delay must be finite seconds, got {delay!r}")
        if claims:
            queues, args = _by_queue([(c.queue, (c.id, c.token)) for c in claims])
            _, errors = self._run("release", queues, [repr(max(float(delay), 0.0)), *args])
            self._report(errors, queues)

    # queue control and workflows ---------------------------------------------------------------
    def set_paused(self, queues: Sequence[str], paused: bool) -> None:
        """Each queue's flag is the truth claims read; ``<prefix>:paused`` lists the flagged
        queues, so it is added to before a flag is set and removed from after one is cleared."""
        names = list(dict.fromkeys(queues))
        if not names:
            return
        index = f"{self.prefix}:paused"
        if paused:
            with self._errors():
                self.client.sadd(index, *names)
        _, errors = self._run("pause", names, ["1" if paused else "0"])
        self._report(errors, names)
        if not paused:
            with self._errors():
                self.client.srem(index, *names)

    def paused_queues(self) -> frozenset[str]:
        with self._errors():
            members = self.client.smembers(f"{self.prefix}:paused")
        names = [m.decode("utf-8", "surrogateescape") if isinstance(m, bytes) else m for m in members]
        # an index entry without its flag is a pause or resume half done: not paused (yet)
        flags = self._pipeline(("EXISTS", self._base(q) + "paused") for q in names) if names else []
        return frozenset(q for q, flag in zip(names, flags) if flag == 1)

    def wake(self, job_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(job_ids))
        queues = self._queues()
        if not ids or not queues:
            return 0
        moved, missing, errors = self._run("wake", queues, ids)
        self._report(errors, queues)
        if missing and time.monotonic() - self._known_at > 0.05:  # in a queue not seen yet? (as get())
            known = set(queues)
            fresh = [q for q in self._queues(0) if q not in known]
            if fresh:
                more, _, errors = self._run("wake", fresh, [_s(m) for m in missing])
                self._report(errors, fresh)
                moved += more
        return int(moved)

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord]:
        ids = list(dict.fromkeys(job_ids))
        records: list[JobRecord] = []
        for start in range(0, len(ids), GET_MANY_BATCH):
            batch = ids[start:start + GET_MANY_BATCH]
            queues = self._queues()
            missing = self._get_many(batch, queues, records) if queues else batch
            if missing and time.monotonic() - self._known_at > 0.05:  # in a queue not seen yet?
                known = set(queues)
                fresh = [q for q in self._queues(0) if q not in known]
                if fresh:
                    self._get_many(missing, fresh, records)
        return records

    def _get_many(self, ids: Sequence[str], queues: Sequence[str], into: list[JobRecord]) -> list[str]:
        """Append the records found to ``into``; return the ids no queue holds."""
        found, missing = self._run("get_many", queues, ids)
        for i in range(0, len(found), 3):
            flat = found[i + 2]
            into.append(_record(dict(zip(flat[::2], flat[1::2])), _s(found[i + 1]), queues[int(found[i]) - 1]))
        return [_s(m) for m in missing]

    def maintain(self, limit: int = 1000) -> Maintenance:
        if not self._server_checked:
            self._check_server()
        queues = self._queues()
        if not queues:
            return Maintenance()
        promoted, requeued, failed, skipped, _, errors = self._run("maintain", queues, [limit, *self._keep])
        self._report(errors, queues)
        self._count(skipped)
        return Maintenance(promoted, requeued, failed)

    def wait(self, queues: Sequence[str] | None, timeout: float) -> None:
        """BLPOP the queues' wake-up lists until a job may be there, the next scheduled job is due,
        ``notify()`` or ``timeout``. Never raises: with the server down it sleeps (claim reports)."""
        deadline = time.monotonic() + timeout
        self._local_wake.clear()
        with self._wait_lock:
            self._waiting += 1
        try:
            self._wait(queues, deadline)
        except (rx.RedisError, BackendUnavailable) as exc:
            logger.debug("wait failed (%s); sleeping instead", exc)
            self._local_wake.wait(max(0.0, deadline - time.monotonic()))
        finally:
            with self._wait_lock:
                self._waiting -= 1
                self._notify_sent = False

    def _wait(self, queues: Sequence[str] | None, deadline: float) -> None:
        names = list(queues) if queues is not None else self._queues()
        keys = [self._base(q) + "wake" for q in names] + [self._notify_key]
        if queues is None:
            keys.append(self._newqueue_key)
        remaining = deadline - time.monotonic()
        if names:
            *heads, (seconds, micros) = self._pipeline(
                [*(("ZRANGE", self._base(q) + "scheduled", 0, 0, "WITHSCORES") for q in names), ("TIME",)])
            due = [score for score in map(_head_score, heads) if score is not None]
            if due:  # wake for the next scheduled job even if nothing is pushed
                deadline = min(deadline, time.monotonic() + min(due) - (seconds + micros / 1e6) + 0.001)
                remaining = deadline - time.monotonic()
        while remaining > 0.001 and not self._local_wake.is_set():
            with self._errors():
                popped = self.client.blpop(keys, timeout=round(min(remaining, BLOCK_CHUNK), 3))
            if popped is not None and popped[0] != self._newqueue_key.encode():
                return
            if popped is not None and _s(popped[1]) not in self._known:
                self._known_at = -1e9  # a queue appeared: the next claim reloads the list
                return
            remaining = deadline - time.monotonic()  # nothing, or a queue this process knows

    def notify(self) -> None:
        """Wake this process's waits: locally, and through Redis for a wait blocked in BLPOP
        (at most one push per wait, so a busy producer pays nothing)."""
        self._local_wake.set()
        with self._wait_lock:
            if not self._waiting or self._notify_sent or self._client is None:
                return
            self._notify_sent = True
        try:
            self._pipeline([("LPUSH", self._notify_key, 1), ("EXPIRE", self._notify_key, 60)])
        except (rx.RedisError, BackendUnavailable):
            pass  # the wait ends at its timeout anyway

    # queries and admin -------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        record = self._find(job_id, self._queues())
        if record is None and time.monotonic() - self._known_at > 0.05:  # in a queue not seen yet?
            known = set(self._known)
            record = self._find(job_id, [q for q in self._queues(0) if q not in known])
        return record

    def _find(self, job_id: str, queues: Sequence[str]) -> JobRecord | None:
        if not queues:
            return None
        replies = self._pipeline(("HGETALL", f"{self._base(q)}job:{job_id}") for q in queues)
        for queue, fields in zip(queues, replies):
            if isinstance(fields, Exception):
                self._report_one(queue, f"job {job_id}: {fields}")
            elif fields:
                return _record(fields, job_id, queue)
        return None

    def counts(self, *, by_queue: bool = False) -> Counts:
        """ZCARDs of the state sets: a handful of O(1) reads per queue, one round trip."""
        queues = self._queues(0)
        replies = self._pipeline(("ZCARD", self._base(q) + state) for q in queues for state in STATES)
        totals, nested = empty_counts(), {}
        for n, queue in enumerate(queues):
            row = replies[n * len(STATES):(n + 1) * len(STATES)]
            bad = next((r for r in row if isinstance(r, Exception)), None)
            if bad is not None:
                self._report_one(queue, str(bad))
                continue
            if any(row):
                nested[queue] = dict(zip(STATES, row))
                for state, count in zip(STATES, row):
                    totals[state] += count
        return nested if by_queue else totals

    def retry(self, job_ids: Sequence[str]) -> int:
        queues = self._queues(0)
        if not job_ids or not queues:
            return 0
        moved, errors = self._run("retry", queues, list(job_ids))
        self._report(errors, queues)
        return int(moved)

    def cancel(self, job_ids: Sequence[str]) -> Mapping[str, CancelResult]:
        queues = self._queues(0)
        if not queues:
            return {job_id: CancelResult.NOT_FOUND for job_id in job_ids}
        results, errors = self._run("cancel", queues, list(job_ids)) if job_ids else ([], [])
        self._report(errors, queues)
        return {job_id: CancelResult(_s(r)) for job_id, r in zip(job_ids, results)}

    def purge(self, state: JobState, older_than: float) -> int:
        queues = self._queues(0)
        total, more = 0, bool(queues)
        while more:  # bounded batches: one huge purge never blocks Redis for long
            args = [JobState(state).value, repr(float(older_than)), PURGE_BATCH]
            deleted, more, errors = self._run("purge", queues, args)
            self._report(errors, queues)
            total += int(deleted)
        return total

    def _page(self, streams: list[tuple[str, str]], before: str | None, page: int) -> list[Any]:
        """The ``page`` newest ids below ``before`` over every (queue, state) index."""
        high = "(" + before if before is not None else "+"
        replies = self._pipeline(("ZREVRANGEBYLEX", f"{self._base(q)}ids:{s}", high, "-", "LIMIT", 0, page)
                                 for q, s in streams)
        candidates = []
        for (queue, state), ids in zip(streams, replies):
            if isinstance(ids, Exception):
                self._report_one(queue, str(ids))
                continue
            candidates += [(_s(i), queue, state) for i in ids]
        candidates.sort(reverse=True)
        return candidates[:page]

    def list(self, query: JobQuery) -> list[JobRecord]:
        """Newest first: a k-way merge of the per-queue, per-state id indexes, read in pages."""
        queues = [query.queue] if query.queue is not None else self._queues(0)
        states = [JobState(query.state).value] if query.state is not None else list(STATES)
        streams = [(q, s) for q in queues for s in states]
        found: list[JobRecord] = []
        seen: set[tuple[str, str]] = set()
        cursor, page = query.before_id, min(max(query.limit, 50), 1000)
        while streams and len(found) < query.limit:
            candidates = self._page(streams, cursor, page)
            if not candidates:
                break
            replies = self._pipeline(("HGETALL", f"{self._base(q)}job:{i}") for i, q, _ in candidates)
            for (job_id, queue, _), fields in zip(candidates, replies):
                if not fields or isinstance(fields, Exception):
                    self.skipped += 1  # an indexed id whose record is gone: skipped, counted
                    continue
                if (job_id, queue) in seen:
                    continue
                seen.add((job_id, queue))
                record = _record(fields, job_id, queue)
                if query.state is not None and record.state != states[0]:
                    continue  # moved on since the index was read
                if query.name is None or record.name == query.name:
                    found.append(record)
                    if len(found) >= query.limit:
                        break
            if len(candidates) < page:
                break
            cursor, page = candidates[-1][0], min(page * 2, 1000)
        return found
