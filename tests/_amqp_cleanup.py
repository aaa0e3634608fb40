"""Leaving the shared RabbitMQ as a test found it. Every queue and exchange this process
declares is recorded under its prefix (the test's namespace), and ``delete_declared`` removes
them when the test ends: quorum queues are Raft groups, and a few hundred left behind slowed
the broker's handshakes to time-outs on a loaded CI run. ``sweep`` runs once at the end of the
session for what a subprocess declared (never recorded here): it lists the broker's queues and
exchanges with ``rabbitmqctl`` (AMQP 0-9-1 can't list) and deletes, through pika, those under a
prefix this session used, so a concurrent run's queues are never touched."""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import pika

from errands.backends import _amqp_link

BROKER = "amqp://guest:guest@127.0.0.1:5672/"
# queue names tests use: deleted by name too, in case a subprocess (not recorded) declared them
KNOWN_QUEUES = ("default", "mail", "media", "ident", "alpha", "beta", "gamma", "mine", "theirs", "other", "cron")

_lock = threading.Lock()
_queues: dict[str, set[str]] = {}  # prefix -> queue names declared in this process
_exchanges: dict[str, set[str]] = {}
_prefixes: set[str] = set()  # every prefix seen this session, for the final sweep
_NAMESPACE = re.compile(r"[tf][0-9a-f]{8}")  # the conformance suite's and fault scenarios' prefixes


def prefix_of(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("prefix", ["errands"])[0]


def _record(prefix: str, *, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
    with _lock:
        _prefixes.add(prefix)
        _queues.setdefault(prefix, set()).update(queues)
        _exchanges.setdefault(prefix, set()).update(exchanges)


def _recording(kind: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def declare(self: Any, channel: Any, *args: Any) -> Any:
        topology = self.topology
        # recorded before the call: a declaration cut off half way may still exist on the broker
        if kind == "exchange":
            _record(topology.prefix, exchanges=[topology.exchange])
        elif kind == "work":
            _record(topology.prefix, queues=[topology.work_queue(args[0])])
        elif kind == "delay":
            name = topology.delay_name(args[0])
            _record(topology.prefix, queues=[name], exchanges=[name])
        else:
            _record(topology.prefix, queues=[topology.failed_queue])
        return method(self, channel, *args)

    return declare


def install() -> None:
    """Record every declaration of this process from now on (idempotent)."""
    declarer = _amqp_link._Declarer
    if getattr(declarer, "_recorded_by_tests", False):
        return
    for name, kind in (("exchange", "exchange"), ("work_queue", "work"), ("delay_queue", "delay"),
                       ("failed_queue", "failed")):
        setattr(declarer, name, _recording(kind, getattr(declarer, name)))
    declarer._recorded_by_tests = True  # type: ignore[attr-defined]


def _delete(queues: Iterable[str], exchanges: Iterable[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    try:
        channel = connection.channel()
        for kind, name in [*(("queue", q) for q in sorted(queues)), *(("exchange", e) for e in sorted(exchanges))]:
            try:
                if kind == "queue":
                    channel.queue_delete(name)
                else:
                    channel.exchange_delete(name)
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()  # e.g. a name the broker refuses: go on with the rest
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def delete_declared(url: str) -> None:
    """Delete every queue and exchange declared under ``url``'s prefix."""
    prefix = prefix_of(url)
    with _lock:
        _prefixes.add(prefix)
        queues = _queues.pop(prefix, set())
        exchanges = _exchanges.pop(prefix, set())
    queues |= {f"{prefix}.failed", *(f"{prefix}.q.{q}" for q in KNOWN_QUEUES)}
    exchanges.add(f"{prefix}.jobs")
    _delete(queues, exchanges)


def _listed(what: str) -> list[str]:
    result = subprocess.run(["rabbitmqctl", "-q", what, "name"], capture_output=True, text=True, timeout=60,
                            check=True)
    return [line.strip() for line in result.stdout.splitlines() if line.strip() and line.strip() != "name"]


def sweep() -> str:
    """Delete the queues and exchanges left under any prefix this session used; says what it did.
    Hygiene only: a broker or CLI that doesn't answer is reported, never fails the run."""
    with _lock:
        # only the suites' random namespaces: a fixed prefix (a private broker's "s5") may be
        # another run's on the shared broker
        prefixes = tuple(f"{p}." for p in _prefixes if _NAMESPACE.fullmatch(p))
    if not prefixes:
        return "nothing declared"
    if shutil.which("rabbitmqctl") is None:
        return "skipped (no rabbitmqctl to list queues with)"
    try:
        queues = [q for q in _listed("list_queues") if q.startswith(prefixes)]
        exchanges = [e for e in _listed("list_exchanges") if e.startswith(prefixes)]
        if queues or exchanges:
            _delete(queues, exchanges)
    except (OSError, subprocess.SubprocessError, pika.exceptions.AMQPError) as exc:
        return f"skipped ({exc!r})"
    return f"{len(queues)} leftover queue(s) and {len(exchanges)} exchange(s) deleted"
