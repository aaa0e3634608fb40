"""RabbitMQ (``amqp://``): the broker carries delivery; job records live in the message alone, or
in a store (``Errands("amqp://...", store="postgresql://...")``), the way Celery pairs a broker
with a result backend. docs/decisions/0001-amqp-delivery-and-store.md records why.

Without a store the message is the job: a durable quorum queue per errands queue, publisher
confirms before ``perform`` returns, a manual ack after the handler finishes (the unacked delivery
is the lease: a consumer that dies gives its jobs back), retries and ``perform_in`` through
delay queues, and a dead-letter queue of failed jobs that ``list_jobs(state="failed")``,
``retry_job`` and ``purge`` read. What the broker can't answer (``get_job`` of an id, states it
doesn't keep, uniqueness) raises ``NotSupported``; ``capabilities`` says which.

With a store the store is the truth and a message is only a wake-up: enqueue writes the record,
then publishes its id; a claim moves exactly the delivered ids to running in the store
(``claim_ids``: attempts, token, lease as any backend) and drops deliveries the store won't claim
(a duplicate, a cancelled or finished job), which makes re-publishing always safe. ``maintain``
re-publishes store jobs left ``available`` with no message (a crash between store and broker, a
lease reclaimed after its delivery was dropped), so nothing depends on a message surviving.

Priorities don't order delivery: quorum queues deliver first in, first out.

URL: ``amqp://user:pass@host:5672/vhost?prefix=errands`` (other query options go to pika, e.g.
``heartbeat=30``); ``?store=<url-encoded backend URL>`` stands in for ``store=``.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
import urllib.parse
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pika

from .._states import JobState
from ..config import check_queue_name
from ..errors import ConfigurationError, NotSupported
from . import backend_class, open_backend
from ._amqp_link import Consumer, Delivery, Publisher, translated
from ._amqp_wire import Envelope, Topology, delay_bucket_ms, delivery_count
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
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["AmqpBackend"]

logger = logging.getLogger("errands.amqp")

BROWSE_LIMIT = 10_000  # failed jobs read per listing of the dead-letter queue (it is a queue, not a table)
UNKNOWN_ID_RETRIES = 60  # a delivered id the store doesn't know: maybe its transaction hasn't committed
RABBITMQ_CONSUMER_TIMEOUT = 30 * 60.0  # RabbitMQ's default: a delivery unacked longer closes the channel
QUEUE_SCAN_INTERVAL = 5.0  # seconds between looking up the store's queues for a worker of every queue
RETURN_WAIT = 1.0  # seconds a listing of failed jobs waits for the browsed messages to be ready again
WORKER_LOST_LIMIT = 3  # alone: deliveries that died with their consumer before a job fails as poison
CLAIM_WAIT = 0.25  # seconds a claim waits for a first delivery: a job published just before is pushed by then


@dataclass(slots=True)
class _Held:
    """A delivery a claim is running; acked (or nacked) when the claim settles. ``lease_until``
    (monotonic) is when the store may have reclaimed it, pushed by each heartbeat."""

    delivery: Delivery
    envelope: Envelope
    attempts: int
    lease_until: float = 0.0


class AmqpBackend(Backend):
    """RabbitMQ delivery, alone or with a ``store`` backend for records and queries."""

    capabilities = frozenset({Capability.MULTI_PROCESS, Capability.PERSISTENT, Capability.PUSH_WAKEUP})

    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self.topology, parameters, self._where = _parse_url(url)
        self.store: Backend | None = None
        store_url = settings.store or _store_option(url)
        if store_url:
            self.store = open_backend(_checked_store(store_url), settings)
            # an instance attribute: what this pairing can do depends on its store
            self.capabilities = type(self).capabilities_for(url, store_url)  # type: ignore[misc]
        self._publisher = Publisher(parameters, self.topology, self._where)
        self._consumer = Consumer(parameters, self.topology, self._where)
        self._held: dict[str, _Held] = {}  # token -> the delivery its claim is running
        self._lock = threading.Lock()
        self._expected: set[str] = {"default"}
        self._next_orphan_scan = 0.0
        self._next_queue_scan = 0.0

    @classmethod
    def capabilities_for(cls, url: str, store: str | None = None) -> frozenset[Capability]:
        """Alone: the broker's. With a store (``store=`` or the URL's ``?store=``): the store's,
        plus push wake-ups, minus priority order (quorum queues deliver first in, first out)."""
        store = store or _store_option(url)
        if not store:
            return cls.capabilities
        paired = backend_class(_checked_store(store)).capabilities_for(store)
        return (paired | {Capability.PUSH_WAKEUP}) - {Capability.PRIORITIES}

    # lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        if self.store is not None:
            self.store.open()
        try:
            with self._publisher.channel() as (channel, declarer):
                declarer.exchange(channel)
                declarer.failed_queue(channel)
        except Exception as exc:  # a worker started before its broker keeps trying
            logger.warning("rabbitmq at %s is not reachable yet (%s); will keep trying", self._where, exc)

    def close(self) -> None:
        self._consumer.close()
        self._publisher.close()
        with self._lock:
            self._held.clear()
        if self.store is not None:
            self.store.close()

    def now(self) -> float:
        return self.store.now() if self.store is not None else time.time()

    def expect_work(self, queues: Collection[str], longest_timeout: float | None) -> None:
        self._expected.update(queues)
        # AMQP 0-9-1 can't read the server's consumer_timeout, so this checks against its default;
        # handlers without a timeout are the common case and only hear about it at INFO
        limit = RABBITMQ_CONSUMER_TIMEOUT
        if longest_timeout is not None and longest_timeout > limit:
            logger.warning(
                "a job handler has timeout=%gs, longer than RabbitMQ's default consumer_timeout (%gs): the "
                "broker closes a channel whose delivery stays unacked that long, and the job is delivered "
                "again while it runs. Raise consumer_timeout in rabbitmq.conf above it.", longest_timeout, limit)
        elif longest_timeout is None:
            logger.info("a job handler has no timeout; RabbitMQ redelivers a job still running after its "
                        "consumer_timeout (%gs by default)", limit)

    # producer --------------------------------------------------------------------------------
    def enqueue(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> list[Enqueued]:
        self._expected.update(job.queue for job in jobs)  # a worker of this process consumes them too
        if self.store is not None:
            return self._enqueue_with_store(jobs, connection)
        if connection is not None:
            raise NotSupported("amqp:// without a store can't enqueue inside a database transaction")
        if any(job.unique_key is not None for job in jobs):
            raise NotSupported("amqp:// without a store can't keep unique jobs (unique_key); "
                               "pair it with one: Errands('amqp://...', store='postgresql://...')")
        now = time.time()
        envelopes = [
            Envelope(job.id, job.name, job.queue, job.args, job.kwargs, 0, job.max_attempts, job.priority,
                     _run_at(job, now), now, job.timeout, job.meta)
            for job in jobs
        ]
        self._publish(envelopes, now)
        return [Enqueued(job.id, True) for job in jobs]

    def _enqueue_with_store(self, jobs: Sequence[NewJob], connection: object | None) -> list[Enqueued]:
        assert self.store is not None
        results = self.store.enqueue(jobs, connection=connection)
        now = self.store.now()
        created = {r.id for r in results if r.created}
        envelopes = [Envelope(job.id, job.name, job.queue, run_at=_run_at(job, now)) for job in jobs if job.id in created]
        try:
            self._publish(envelopes, now)
        except Exception as exc:  # stored is durable: maintain() re-publishes what has no message
            logger.warning("%d job(s) stored but not yet published to rabbitmq (%s); they will be "
                           "published when it answers", len(envelopes), exc)
        return results

    def _publish(self, envelopes: Sequence[Envelope], now: float) -> None:
        due = [(e.queue, e.to_body(), e.id) for e in envelopes if not e.run_at or e.run_at <= now]
        later = [(e.queue, e.to_body(), e.id, delay_bucket_ms(e.run_at - now))
                 for e in envelopes if e.run_at and e.run_at > now]
        if due:
            self._publisher.publish_work(due)
        if later:
            self._publisher.publish_delayed(later)

    # worker ----------------------------------------------------------------------------------
    def claim(self, queues: Sequence[str] | None, limit: int, *, worker_id: str, lease: float) -> list[Claim]:
        if queues is not None:
            queues = _nameable(queues)
            if not queues:
                return []  # names the queue rule refuses hold no jobs (and can't name an AMQP queue)
        # prefetch counts every unacked delivery, running ones included: room for what runs,
        # plus one more batch buffered so the next claim doesn't wait on the broker
        with self._lock:
            running = len(self._held)
        self._consumer.want(queues or self._queues_in_use(), prefetch=running + max(1, limit) * 2)
        claims: list[Claim] = []
        while len(claims) < limit:
            deliveries = self._consumer.take(queues, limit - len(claims), wait=0 if claims else CLAIM_WAIT)
            if not deliveries:
                break
            if self.store is None:
                claims += self._claim_alone(deliveries)
            else:
                claims += self._claim_with_store(deliveries, worker_id, lease)
        return claims

    def _queues_in_use(self) -> set[str]:
        """Every queue, as far as this process can tell: its handlers' and its enqueues', plus,
        with a store, every queue the store holds jobs in (looked up at most every few seconds)."""
        now = time.monotonic()
        if self.store is not None and now >= self._next_queue_scan:
            self._next_queue_scan = now + QUEUE_SCAN_INTERVAL
            self._expected.update(self.store.counts(by_queue=True))
        return self._expected

    def _claim_alone(self, deliveries: Sequence[Delivery]) -> list[Claim]:
        claims, now = [], time.time()
        for delivery in deliveries:
            envelope = self._decode(delivery)
            if envelope is None:
                continue
            if envelope.run_at and envelope.run_at > now + 0.001:
                self._send_round_again(delivery, envelope, now)
                continue
            lost = delivery_count(delivery.headers)  # earlier deliveries whose consumer died unacked
            # each lost delivery counts as an attempt (as a reclaimed lease does), up to the last one
            attempts = min(envelope.attempts + lost + 1, max(envelope.max_attempts, envelope.attempts + 1))
            # A consumer that dies also gives back what it had prefetched and not yet started, so a
            # lost delivery is no proof the job ran: like Sidekiq Pro's recovery of orphans, a job
            # fails as a poison pill only after WORKER_LOST_LIMIT such deaths even if its
            # attempts are fewer; a job with more attempts left keeps them.
            if lost >= max(WORKER_LOST_LIMIT, envelope.max_attempts - envelope.attempts):
                error = f"worker lost while running ({lost} deliveries died with their consumer)"
                self._publisher.publish_failed(
                    [(replace(envelope, attempts=attempts - 1, error=error, finished_at=now).to_body(), envelope.id)])
                self._consumer.settle([delivery])
                continue
            token = f"{delivery.generation}:{delivery.tag}"
            with self._lock:
                self._held[token] = _Held(delivery, envelope, attempts)
            claims.append(Claim(envelope.id, envelope.name, envelope.queue, envelope.args, envelope.kwargs,
                                attempts, envelope.max_attempts, token, envelope.timeout, envelope.priority,
                                envelope.meta))
        return claims

    def _claim_with_store(self, deliveries: Sequence[Delivery], worker_id: str, lease: float) -> list[Claim]:
        assert self.store is not None
        decoded = [(d, e) for d in deliveries if (e := self._decode(d)) is not None]
        claims = self.store.claim_ids([e.id for _, e in decoded], worker_id=worker_id, lease=lease)
        claimed = {c.id: c for c in claims}
        for delivery, envelope in decoded:
            claim = claimed.pop(envelope.id, None)
            if claim is None:
                self._drop_unclaimed(delivery, envelope)
                continue
            with self._lock:
                self._held[claim.token] = _Held(delivery, envelope, claim.attempts, time.monotonic() + lease)
        return claims

    def _drop_unclaimed(self, delivery: Delivery, envelope: Envelope) -> None:
        """A delivery the store would not claim: not due yet goes round again, an id the store
        doesn't know yet (an uncommitted transaction) comes back shortly, anything else (a
        duplicate, running elsewhere, cancelled, finished) is acked away."""
        assert self.store is not None
        record, now = self.store.get(envelope.id), self.store.now()
        if record is None and envelope.attempts < UNKNOWN_ID_RETRIES:
            self._send_round_again(delivery, replace(envelope, attempts=envelope.attempts + 1, run_at=now + 1), now)
        elif record is not None and record.state == JobState.SCHEDULED.value and (record.run_at or 0) > now:
            self._send_round_again(delivery, replace(envelope, run_at=record.run_at), now)
        else:
            self._consumer.settle([delivery])

    def _send_round_again(self, delivery: Delivery, envelope: Envelope, now: float) -> None:
        # publish before the ack: a crash in between makes a duplicate, never a loss
        self._publish([envelope], now)
        self._consumer.settle([delivery])

    def _decode(self, delivery: Delivery) -> Envelope | None:
        """The delivery's job, or None after dealing with a message that isn't one: alone it goes
        to the dead-letter queue with the reason (nothing is silently lost); with a store the
        record is safe in the store, so the bad message is dropped."""
        try:
            return Envelope.from_body(delivery.body)
        except ValueError as exc:
            logger.error("undecodable message in %s (%s): %r", delivery.queue, exc, delivery.body[:200])
            if self.store is None:
                name = "<undecodable>"
                bad = Envelope(delivery.message_id or f"undecodable-{delivery.tag}", name, delivery.queue,
                               args="[]", kwargs="{}", error=f"undecodable message: {exc}; body: "
                               f"{delivery.body[:1000]!r}", finished_at=time.time())
                self._publisher.publish_failed([(bad.to_body(), bad.id)])
            self._consumer.settle([delivery])
            return None

    def extend(self, claims: Sequence[Claim], lease: float) -> Extended:
        generation = self._consumer.generation
        with self._lock:
            gone = frozenset(c.id for c in claims
                             if c.token in self._held and self._held[c.token].delivery.generation != generation)
        if self.store is None:
            return Extended(lost=gone)
        # with a store its lease decides; a broken connection only means the delivery is gone
        extended = self.store.extend(claims, lease)
        lease_until = time.monotonic() + lease
        with self._lock:
            for claim in claims:
                held = self._held.get(claim.token)
                if held is not None and claim.id not in extended.lost:
                    held.lease_until = lease_until
        return extended

    def settle(self, outcomes: Sequence[Outcome]) -> list[str]:
        if self.store is not None:
            return self._settle_with_store(outcomes)
        now, not_applied = time.time(), []
        failed: builtins.list[tuple[bytes, str]] = []
        retries: builtins.list[Envelope] = []
        done: builtins.list[str] = []
        with self._lock:
            held = {o.token: self._held.get(o.token) for o in outcomes}
        generation = self._consumer.generation
        for outcome in outcomes:
            entry = held[outcome.token]
            if entry is None or entry.delivery.generation != generation:
                not_applied.append(outcome.id)  # its connection broke: the broker redelivers it
                continue
            envelope = replace(entry.envelope, attempts=entry.attempts)
            if outcome.state is JobState.FAILED:
                failed.append((replace(envelope, error=outcome.error, finished_at=now).to_body(), envelope.id))
            elif outcome.state is JobState.SCHEDULED:
                retries.append(replace(envelope, error=outcome.error, run_at=now + outcome.retry_in))
            done.append(outcome.token)
        if failed:
            self._publisher.publish_failed(failed)
        if retries:
            self._publish(retries, now)
        self._ack_tokens(done)
        return not_applied

    def _settle_with_store(self, outcomes: Sequence[Outcome]) -> list[str]:
        assert self.store is not None
        not_applied = self.store.settle(outcomes)
        skipped = set(not_applied)
        retries = [o for o in outcomes if o.state is JobState.SCHEDULED and o.id not in skipped]
        if retries:
            with self._lock:
                queues = {o.token: self._held[o.token].envelope.queue for o in retries if o.token in self._held}
            try:
                now = self.store.now()
                self._publish([Envelope(o.id, "", queues[o.token], run_at=now + o.retry_in)
                               for o in retries if o.token in queues], now)
            except Exception as exc:  # the store holds the retry; maintain() re-publishes it when due
                logger.warning("retry of %d job(s) not yet published (%s)", len(retries), exc)
        self._ack_tokens([o.token for o in outcomes])
        return not_applied

    def _pop_held(self, tokens: Iterable[str]) -> builtins.list[_Held]:
        """Stop holding these claims' deliveries (the caller acks, nacks or re-publishes them)."""
        with self._lock:
            return [held for token in tokens if (held := self._held.pop(token, None)) is not None]

    def _ack_tokens(self, tokens: Sequence[str]) -> None:
        self._consumer.settle([entry.delivery for entry in self._pop_held(tokens)])

    def release(self, claims: Sequence[Claim], delay: float = 0.0) -> None:
        if self.store is not None:
            self.store.release(claims, delay)
            entries = self._pop_held(c.token for c in claims)
            if delay <= 0:
                self._consumer.settle([e.delivery for e in entries], requeue=True)
                return
            now = self.store.now()  # a snooze: the message comes back through a delay queue
            for entry in entries:
                self._send_round_again(entry.delivery, replace(entry.envelope, run_at=now + delay), now)
            return
        entries = self._pop_held(c.token for c in claims)
        # a nack would count a delivery; a copy whose attempts exclude this one does not
        now = time.time()
        run_at = now + delay if delay > 0 else None
        self._publish([replace(e.envelope, attempts=e.attempts - 1, run_at=run_at) for e in entries], now)
        self._consumer.settle([e.delivery for e in entries])

    def maintain(self, limit: int = 1000) -> Maintenance:
        if self.store is None:
            return Maintenance()  # the broker requeues deliveries of dead consumers and times the delays
        result = self.store.maintain(limit)
        self._give_back_reclaimed()
        now = time.monotonic()
        if now >= self._next_orphan_scan:
            self._next_orphan_scan = now + max(1.0, self.settings.lease)
            self._republish_orphans(limit)
        return result

    def _give_back_reclaimed(self) -> None:
        """Deliveries this process holds for jobs the store no longer lets it run (its lease
        expired and maintenance put the job back, or it was settled elsewhere): hand them back so
        the job's message is not stuck behind a claim that lost it. Only claims whose lease has
        run out without a heartbeat are looked up, one ``get`` each."""
        assert self.store is not None
        now = time.monotonic()
        with self._lock:
            old = [(token, held) for token, held in self._held.items() if held.lease_until <= now]
        for token, held in old:
            record = self.store.get(held.envelope.id)
            if record is not None and record.state == JobState.RUNNING.value:
                continue  # still ours (heartbeats extend it) or another worker's now
            with self._lock:
                if self._held.pop(token, None) is None:
                    continue
            if record is not None and record.state == JobState.AVAILABLE.value:
                self._consumer.settle([held.delivery], requeue=True)
            elif record is not None and record.state == JobState.SCHEDULED.value:
                self._send_round_again(held.delivery, replace(held.envelope, run_at=record.run_at), self.store.now())
            else:
                self._consumer.settle([held.delivery])

    def _republish_available(self, job_ids: Iterable[str]) -> None:
        """Publish a wake-up for each of these store jobs that is available now."""
        assert self.store is not None
        records = self.store.get_many(builtins.list(job_ids))
        self._publish([Envelope(r.id, r.name, r.queue) for r in records
                       if r.state == JobState.AVAILABLE.value], self.store.now())

    def _republish_orphans(self, limit: int) -> None:
        """Publish store jobs that are ``available`` but have no message: only for queues whose
        work queue holds no ready message (a backlog is not mistaken for orphans) and only jobs
        waiting longer than a lease. A duplicate this makes is dropped at claim."""
        assert self.store is not None
        now = self.store.now()
        threshold = max(2.0, self.settings.lease)
        paused = self._paused_in_store()
        for queue in sorted(self._queues_in_use() - paused):  # a paused queue's messages would be dropped again
            if self._ready_count(self.topology.work_queue(queue)) != 0:
                continue
            jobs = self.store.list(JobQuery(state=JobState.AVAILABLE, queue=queue, limit=min(limit, 1000)))
            orphans = [Envelope(r.id, r.name, r.queue) for r in jobs
                       if (r.run_at or r.created_at or now) < now - threshold]
            if orphans:
                logger.info("re-publishing %d job(s) of queue %r that had no message", len(orphans), queue)
                self._publish(orphans, now)

    def wait(self, queues: Sequence[str] | None, timeout: float) -> None:
        if queues is not None:
            queues = _nameable(queues) or None
        self._consumer.want(queues or self._queues_in_use())
        self._consumer.wait(timeout)

    def notify(self) -> None:
        self._consumer.wake()

    # queries and admin -------------------------------------------------------------------------
    def _needs_store(self, what: str) -> Backend:
        if self.store is None:
            raise NotSupported(f"amqp:// without a store can't {what}: the broker keeps no job records. "
                               "Pair it with one: Errands('amqp://...', store='postgresql://...')")
        return self.store

    def claim_ids(self, job_ids: Sequence[str], *, worker_id: str, lease: float) -> list[Claim]:
        return self._needs_store("claim jobs by id").claim_ids(job_ids, worker_id=worker_id, lease=lease)

    def get(self, job_id: str) -> JobRecord | None:
        return self._needs_store("look up a job by id").get(job_id)

    def list(self, query: JobQuery) -> builtins.list[JobRecord]:
        if self.store is not None:
            return self.store.list(query)
        if query.state is not JobState.FAILED:
            raise NotSupported("amqp:// without a store lists only failed jobs (its dead-letter queue)")
        records = [_failed_record(e) for e in reversed(self._browse_failed())]
        records = [r for r in records if (query.queue is None or r.queue == query.queue)
                   and (query.name is None or r.name == query.name)
                   and (query.before_id is None or r.id < query.before_id)]
        return records[:query.limit]

    def counts(self, *, by_queue: bool = False) -> Counts:
        if self.store is not None:
            return self.store.counts(by_queue=by_queue)
        # the broker knows ready messages and the dead-letter queue; unacked deliveries, delay
        # queues (shared by every queue) and finished jobs are not visible over AMQP 0-9-1
        unknown = {s.value: None for s in JobState}
        per_queue = {q: {**unknown, JobState.AVAILABLE.value: self._ready_count(self.topology.work_queue(q))}
                     for q in sorted(self._expected)}
        if by_queue:
            return per_queue
        totals: dict[str, int | None] = {**unknown, JobState.AVAILABLE.value: sum(
            c[JobState.AVAILABLE.value] or 0 for c in per_queue.values())}
        totals[JobState.FAILED.value] = self._ready_count(self.topology.failed_queue)
        return totals

    def retry(self, job_ids: Sequence[str]) -> int:
        if self.store is not None:
            moved = self.store.retry(job_ids)
            records = [r for r in (self.store.get(i) for i in dict.fromkeys(job_ids)) if r is not None]
            self._publish([Envelope(r.id, r.name, r.queue) for r in records
                           if r.state == JobState.AVAILABLE.value], self.store.now())
            return moved
        wanted = set(job_ids)
        return self._take_failed(lambda e: e.id in wanted, requeue=True)

    # queue control, workflows and limits live in the store ------------------------------------
    def set_paused(self, queues: Sequence[str], paused: bool) -> None:
        """Paused jobs stay available in the store; their messages are dropped at claim (the store
        won't claim them), so resuming publishes the waiting jobs again."""
        store = self._needs_store("pause queues")
        store.set_paused(queues, paused)
        if not paused:
            for queue in _nameable(queues):
                waiting = store.list(JobQuery(state=JobState.AVAILABLE, queue=queue, limit=BROWSE_LIMIT))
                self._publish([Envelope(r.id, r.name, r.queue) for r in waiting], store.now())

    def paused_queues(self) -> frozenset[str]:
        return self._needs_store("pause queues").paused_queues()

    def _paused_in_store(self) -> set[str]:
        try:
            return set(self.store.paused_queues()) if self.store is not None else set()
        except NotSupported:
            return set()

    def wake(self, job_ids: Sequence[str]) -> int:
        moved = self._needs_store("wake jobs").wake(job_ids)
        if moved:
            self._republish_available(job_ids)
        return moved

    def get_many(self, job_ids: Sequence[str]) -> builtins.list[JobRecord]:
        return self._needs_store("look up jobs by id").get_many(job_ids)

    def acquire_slots(self, requests: Sequence[SlotRequest], ttl: float) -> builtins.list[bool]:
        return self._needs_store("enforce concurrency limits").acquire_slots(requests, ttl)

    def release_slots(self, held: Sequence[tuple[str, str]]) -> None:
        self._needs_store("enforce concurrency limits").release_slots(held)

    def slot_usage(self) -> dict[str, int]:
        return self._needs_store("enforce concurrency limits").slot_usage()

    def take_rate(self, key: str, limit: int, period: float) -> float:
        return self._needs_store("enforce rate limits").take_rate(key, limit, period)

    def cancel(self, job_ids: Sequence[str]) -> Mapping[str, CancelResult]:
        return self._needs_store("cancel a job (its message can't be found in a queue)").cancel(job_ids)

    def purge(self, state: JobState, older_than: float) -> int:
        if self.store is not None:
            return self.store.purge(state, older_than)
        if state is JobState.FAILED:
            return self._take_failed(lambda e: (e.finished_at or 0) < older_than, requeue=False)
        return 0  # the broker keeps no succeeded or cancelled jobs: nothing to remove

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        self._needs_store("keep a worker registry").register_worker(info, ttl)

    def remove_worker(self, worker_id: str) -> None:
        self._needs_store("keep a worker registry").remove_worker(worker_id)

    def workers(self) -> builtins.list[WorkerInfo]:
        return self._needs_store("keep a worker registry").workers()

    def throughput(self, since: float, bucket: float) -> Throughput:
        return self._needs_store("count finished jobs").throughput(since, bucket)

    # the broker's own answers ------------------------------------------------------------------
    def _ready_count(self, queue_name: str) -> int:
        """Ready messages in a queue (0 if it doesn't exist yet). A passive declare of a missing
        queue closes the channel, so it runs on a channel of its own."""
        with self._publisher.side_channel() as channel:
            try:
                return int(channel.queue_declare(queue_name, passive=True).method.message_count)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return 0
                raise

    def _browse_failed(self) -> builtins.list[Envelope]:
        """Every failed job in the dead-letter queue, oldest first (up to BROWSE_LIMIT). Browsing
        takes messages unacked on a side channel; closing it puts them back in place."""
        envelopes: builtins.list[Envelope] = []
        with self._publisher.side_channel() as channel:
            for _ in range(BROWSE_LIMIT):
                method, properties, body = channel.basic_get(self.topology.failed_queue, auto_ack=False)
                if method is None:
                    break
                try:
                    envelopes.append(Envelope.from_body(body))
                except ValueError as exc:
                    envelopes.append(Envelope(properties.message_id or f"undecodable-{method.delivery_tag}",
                                              "<undecodable>", "default", error=f"undecodable message: {exc}"))
        # the queue takes them back asynchronously: wait (briefly) until they count as ready again,
        # so that stats() right after a listing doesn't miss them
        deadline = time.monotonic() + RETURN_WAIT
        while envelopes and self._ready_count(self.topology.failed_queue) < len(envelopes):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        return envelopes

    def _take_failed(self, matches: Any, *, requeue: bool) -> int:
        """Remove the failed jobs ``matches`` picks from the dead-letter queue; ``requeue`` sends
        them back to their work queue first (attempts kept, one more allowed)."""
        taken = 0
        with self._publisher.side_channel() as channel:
            for _ in range(BROWSE_LIMIT):
                method, _, body = channel.basic_get(self.topology.failed_queue, auto_ack=False)
                if method is None:
                    break
                try:
                    envelope = Envelope.from_body(body)
                except ValueError:
                    continue  # left in place: it shows in the listing with its reason
                if not matches(envelope):
                    continue
                if requeue:
                    again = replace(envelope, max_attempts=max(envelope.max_attempts, envelope.attempts + 1),
                                    error=None, finished_at=None, run_at=None)
                    self._publisher.publish_work([(again.queue, again.to_body(), again.id)])
                channel.basic_ack(method.delivery_tag)
                taken += 1
        return taken


def _nameable(queues: Sequence[str]) -> list[str]:
    valid = []
    for queue in queues:
        try:
            valid.append(check_queue_name(queue))
        except ConfigurationError:
            continue
    return valid


def _failed_record(envelope: Envelope) -> JobRecord:
    return JobRecord(
        envelope.id, envelope.name, envelope.queue, envelope.args, envelope.kwargs, JobState.FAILED.value,
        envelope.attempts, envelope.max_attempts, envelope.priority, envelope.run_at, envelope.created_at,
        finished_at=envelope.finished_at, error=envelope.error, timeout=envelope.timeout, meta=envelope.meta,
    )


def _run_at(job: NewJob, now: float) -> float | None:
    if job.run_at is not None:
        return job.run_at
    return now + job.delay if job.delay > 0 else None


def _store_option(url: str) -> str | None:
    query = urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)
    return next((v for k, v in query if k == "store"), None)


def _checked_store(store: str) -> str:
    if store.split("://", 1)[0].lower() in ("amqp", "amqps"):
        raise ConfigurationError("store= must be a backend that keeps records, not another amqp:// URL")
    return store


def _parse_url(url: str) -> tuple[Topology, pika.URLParameters, str]:
    """``prefix`` is errands' option; the rest of the query goes to pika. Defaults suit a worker:
    one connection attempt (a producer hears BackendUnavailable at once; the consumer retries on
    its own), a 10 s socket timeout, heartbeats every 30 s."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), "errands")
    rest = {k: v for k, v in query if k not in ("prefix", "store")}
    rest.setdefault("connection_attempts", "1")
    rest.setdefault("socket_timeout", "10")
    rest.setdefault("heartbeat", "30")
    rest.setdefault("blocked_connection_timeout", "30")
    path = parts.path if parts.path not in ("", "/") else "/%2F"
    pika_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, urllib.parse.urlencode(rest), ""))
    try:
        with translated(parts.hostname or "?"):
            parameters = pika.URLParameters(pika_url)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid amqp URL option: {exc}") from None
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5672}"
    return Topology(prefix), parameters, where
