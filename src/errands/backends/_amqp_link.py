"""The two connections an AMQP backend keeps: one to publish (with publisher confirms) and one
consumer thread that owns its channel.

pika's BlockingConnection is not thread-safe, and a delivery can only be acknowledged on the
channel that received it; so a single consumer thread receives into a buffer that the worker's
claim loop takes from, and acks are handed back to that thread with
``add_callback_threadsafe``. When the consumer's connection breaks, the broker requeues every
unacked delivery: the thread bumps its ``generation`` (acks of older deliveries become no-ops,
they have already gone back to the queue) and reconnects with backoff by itself.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from ..errors import BackendUnavailable
from ._amqp_wire import Topology

__all__ = ["Consumer", "Delivery", "Publisher", "translated"]

logger = logging.getLogger("errands.amqp")

Message = tuple[str, str, bytes, str]  # (exchange, routing key, body, message id)


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """pika's errors -> BackendUnavailable naming the cause; anything else is a bug and propagates."""
    try:
        yield
    except pika.exceptions.UnroutableError as exc:
        raise BackendUnavailable(f"rabbitmq at {where} could not route a job ({exc})") from exc
    except pika.exceptions.NackError as exc:
        raise BackendUnavailable(f"rabbitmq at {where} refused to store a job (nack)") from exc
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise BackendUnavailable(f"cannot reach rabbitmq at {where}: {exc!r}") from exc


class _Declarer:
    """Idempotent declarations, remembered per connection so each costs one round trip once."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.done: set[str] = set()

    def exchange(self, channel: BlockingChannel) -> None:
        if "exchange" not in self.done:
            channel.exchange_declare(self.topology.exchange, "direct", durable=True)
            self.done.add("exchange")

    def work_queue(self, channel: BlockingChannel, queue: str) -> str:
        name = self.topology.work_queue(queue)
        if name not in self.done:
            self.exchange(channel)
            channel.queue_declare(name, durable=True, arguments=self.topology.work_arguments())
            channel.queue_bind(name, self.topology.exchange, routing_key=queue)
            self.done.add(name)
        return name

    def delay_queue(self, channel: BlockingChannel, ms: int) -> str:
        name = self.topology.delay_name(ms)
        if name not in self.done:
            self.exchange(channel)
            channel.exchange_declare(name, "fanout", durable=True)
            channel.queue_declare(name, durable=True, arguments=self.topology.delay_arguments(ms))
            channel.queue_bind(name, name)
            self.done.add(name)
        return name

    def failed_queue(self, channel: BlockingChannel) -> str:
        name = self.topology.failed_queue
        if name not in self.done:
            channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
            self.done.add(name)
        return name


class Publisher:
    """One confirmed channel shared under a lock: ``publish`` returns once the broker confirmed
    every message (persistent, on durable queues), or raises BackendUnavailable."""

    def __init__(self, parameters: pika.ConnectionParameters, topology: Topology, where: str) -> None:
        self._parameters = parameters
        self._where = where
        self._topology = topology
        self._lock = threading.RLock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._declarer = _Declarer(topology)

    @contextlib.contextmanager
    def channel(self) -> Iterator[tuple[BlockingChannel, _Declarer]]:
        """The confirmed channel, (re)connected, for one locked piece of work; a broken connection
        is dropped so the next call reconnects."""
        with self._lock:
            try:
                with translated(self._where):
                    yield self._ensure(), self._declarer
            except BackendUnavailable:
                self._drop()
                raise

    @contextlib.contextmanager
    def side_channel(self) -> Iterator[BlockingChannel]:
        """A fresh unconfirmed channel on the same connection, closed afterwards: for browsing
        (messages taken unacked go back in place when it closes) and for passive declares (a
        missing queue closes the channel it was asked on)."""
        with self.channel() as (confirmed, _):
            channel = confirmed.connection.channel()
            try:
                yield channel
            finally:
                if channel.is_open:
                    with contextlib.suppress(Exception):
                        channel.close()

    def publish_work(self, messages: Iterable[tuple[str, bytes, str]]) -> None:
        """``(queue, body, id)`` into work queues."""
        with self.channel() as (channel, declarer):
            for queue, body, message_id in messages:
                declarer.work_queue(channel, queue)
                self._send(channel, self._topology.exchange, queue, body, message_id)

    def publish_delayed(self, messages: Iterable[tuple[str, bytes, str, int]]) -> None:
        """``(queue, body, id, delay ms bucket)`` into delay queues, back to ``queue`` when due."""
        with self.channel() as (channel, declarer):
            for queue, body, message_id, ms in messages:
                declarer.work_queue(channel, queue)
                exchange = declarer.delay_queue(channel, ms)
                try:
                    self._send(channel, exchange, queue, body, message_id)
                except pika.exceptions.UnroutableError:
                    # the delay queue was deleted (by an operator) since we declared it: declare it anew
                    declarer.done.discard(exchange)
                    self._send(channel, declarer.delay_queue(channel, ms), queue, body, message_id)

    def publish_failed(self, messages: Iterable[tuple[bytes, str]]) -> None:
        with self.channel() as (channel, declarer):
            name = declarer.failed_queue(channel)
            for body, message_id in messages:
                self._send(channel, "", name, body, message_id)

    @staticmethod
    def _send(channel: BlockingChannel, exchange: str, key: str, body: bytes, message_id: str) -> None:
        properties = pika.BasicProperties(delivery_mode=2, message_id=message_id,
                                          content_type="application/json")
        channel.basic_publish(exchange, key, body, properties, mandatory=True)

    def _ensure(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            if self._connection is None or not self._connection.is_open:
                self._connection = pika.BlockingConnection(self._parameters)
                self._declarer.done.clear()
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._declarer.done.clear()
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


@dataclass(frozen=True, slots=True)
class Delivery:
    generation: int
    tag: int
    body: bytes
    headers: dict[str, Any]
    queue: str  # errands' queue name the message came from
    message_id: str | None = None


class Consumer:
    """A thread that consumes the wanted work queues into a buffer (``take``), acks what it is
    handed back, and reconnects by itself. Started on the first ``want``."""

    def __init__(self, parameters: pika.ConnectionParameters, topology: Topology, where: str) -> None:
        self._parameters = parameters
        self._topology = topology
        self._where = where
        self._cond = threading.Condition()
        self._buffer: collections.deque[Delivery] = collections.deque()
        self._wanted: set[str] = set()
        self._subscribed: set[str] = set()  # by the current connection
        self._prefetch = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: pika.BlockingConnection | None = None
        self.generation = 0
        self.connected = threading.Event()
        self.last_error: str | None = None

    # called from worker threads --------------------------------------------------------------
    def want(self, queues: Iterable[str], prefetch: int | None = None, *, ready_within: float = 5.0) -> None:
        """Consume ``queues`` from now on. Waits up to ``ready_within`` seconds for the thread to
        subscribe new ones, so a claim right after its first ``want`` sees what is queued."""
        wanted = set(queues)
        with self._cond:
            before = (len(self._wanted), self._prefetch)
            self._wanted.update(wanted)
            # only ever grows, by powers of two: each change costs a new subscription
            wanted_prefetch = max(self._prefetch, prefetch or 1)
            self._prefetch = 1 << (wanted_prefetch - 1).bit_length()
            if (len(self._wanted), self._prefetch) != before and self._connection is not None:
                with contextlib.suppress(Exception):  # wake the consumer loop to apply it now
                    self._connection.add_callback_threadsafe(lambda: None)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="errands-amqp-consumer", daemon=True)
                self._thread.start()
            if not wanted <= self._subscribed:
                self._cond.wait_for(lambda: wanted <= self._subscribed or self._stop.is_set(), ready_within)

    def take(self, queues: Sequence[str] | None, limit: int, *, wait: float = 0.0) -> list[Delivery]:
        """Up to ``limit`` buffered deliveries of ``queues`` (None: any), oldest first; with
        ``wait``, up to that many seconds for the first one (the broker pushes within a
        millisecond or two of a publish, and a claim should see a job enqueued just before it)."""
        taken: list[Delivery] = []
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                kept: collections.deque[Delivery] = collections.deque()
                while self._buffer and len(taken) < limit:
                    delivery = self._buffer.popleft()
                    if delivery.generation != self.generation:
                        continue  # its connection broke: the broker has requeued it already
                    (taken if queues is None or delivery.queue in queues else kept).append(delivery)
                self._buffer.extendleft(reversed(kept))
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0 or self._stop.is_set():
                    return taken
                self._cond.wait(remaining)

    def wait(self, timeout: float) -> None:
        with self._cond:
            if not self._buffer and not self._stop.is_set():
                self._cond.wait(timeout)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def settle(self, deliveries: Iterable[Delivery], *, requeue: bool | None = None) -> None:
        """Ack (``requeue`` None) or nack each delivery on the consumer thread. Deliveries of an
        older connection are skipped: the broker already gave them back to the queue."""
        with self._cond:
            connection, generation = self._connection, self.generation
        current = [d for d in deliveries if d.generation == generation]
        if not current or connection is None:
            return

        def apply() -> None:
            channel = self._channel
            if channel is None or not channel.is_open or self.generation != generation:
                return
            for delivery in current:
                if requeue is None:
                    channel.basic_ack(delivery.tag)
                else:
                    channel.basic_nack(delivery.tag, requeue=requeue)

        with contextlib.suppress(Exception):  # a closed connection: the broker requeues them itself
            connection.add_callback_threadsafe(apply)

    def close(self) -> None:
        self._stop.set()
        self.wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None

    # the consumer thread -----------------------------------------------------------------------
    _channel: BlockingChannel | None = None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._serve()
                failures = 0
            except Exception as exc:  # the broker went away or refused: start over, never die
                failures += 1
                self.last_error = repr(exc)
                logger.warning("amqp consumer at %s lost its connection (%r); reconnecting", self._where, exc)
            finally:
                self._disconnect()
            self._stop.wait(min(0.1 * 2 ** failures, 5.0))

    def _serve(self) -> None:
        connection = pika.BlockingConnection(self._parameters)
        channel = connection.channel()
        with self._cond:
            self._connection, self._channel = connection, channel
        declarer, prefetch = _Declarer(self._topology), 0
        subscribed: dict[str, str] = {}  # errands queue -> consumer tag
        self.connected.set()
        while not self._stop.is_set():
            with self._cond:
                wanted, wanted_prefetch = set(self._wanted), self._prefetch
            if wanted_prefetch != prefetch:
                # a quorum queue fixes a consumer's credit when it subscribes (and refuses a
                # channel-wide limit), so a new prefetch takes a new subscription. The old one is
                # kept, not cancelled: pika nacks with requeue whatever a cancelled consumer
                # received but had not dispatched yet, and a quorum queue counts each such return
                # in x-delivery-count, which alone is an attempt (a job could fail as "worker lost"
                # without running). Prefetch only doubles, so the credit kept stays under twice it.
                prefetch = wanted_prefetch
                channel.basic_qos(prefetch_count=prefetch)
                subscribed.clear()
                with self._cond:
                    self._subscribed.clear()
            for queue in sorted(wanted - set(subscribed)):
                name = declarer.work_queue(channel, queue)
                subscribed[queue] = channel.basic_consume(name, self._receiver(queue))
                with self._cond:
                    self._subscribed.add(queue)
                    self._cond.notify_all()
            connection.process_data_events(time_limit=0.05)

    def _receiver(self, queue: str) -> Callable[..., None]:
        generation = self.generation

        def on_message(channel: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
            delivery = Delivery(generation, method.delivery_tag, body, dict(properties.headers or {}), queue,
                                properties.message_id)
            with self._cond:
                self._buffer.append(delivery)
                self._cond.notify_all()

        return on_message

    def _disconnect(self) -> None:
        self.connected.clear()
        with self._cond:
            connection, self._connection, self._channel = self._connection, None, None
            self._subscribed.clear()
            self.generation += 1
            self._buffer.clear()  # their connection is gone: the broker redelivers them
            self._cond.notify_all()
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
