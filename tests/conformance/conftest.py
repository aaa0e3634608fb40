"""The backend parametrisation of the conformance suite.

Adding a backend is ONE entry in ``BACKENDS``: a name mapped to a ``BackendSpec`` whose
``url(tmp_path, namespace)`` gives an isolated URL for one test (a file under ``tmp_path``,
a key prefix, a schema), with an optional ``cleanup(url)`` that drops the namespace
afterwards and, for backends that enqueue inside the caller's transaction, a
``connect(url)`` that opens a raw DB-API connection to the same database. The suite never
names a backend; it reads capabilities from the backend class (``@pytest.mark.requires``).

Select backends with ``--backend NAME`` (repeatable) or ``ERRANDS_TEST_BACKENDS=memory,sqlite``;
by default every entry runs, and a backend whose server is down fails the run (never skips).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from errands import Errands
from errands.backends import backend_class
from errands.backends.base import Backend, Capability
from tests.conftest import wait_until

LEASE = 1.0  # seconds: short, so lease expiry is testable without slowing the suite


@dataclass(frozen=True)
class BackendSpec:
    url: Callable[[Path, str], str]
    cleanup: Callable[[str], None] | None = None
    connect: Callable[[str], Any] | None = None  # a raw connection for app.transaction(conn)
    dump: Callable[[str, Backend], str] | None = None  # every stored byte of the namespace, as text
    # False keeps an entry out of the default run (it runs with --backend NAME). Every entry is
    # in it: the amqp ones too, since each test deletes the queues it declared (a CI run with
    # ~300 quorum queues left behind had timed the broker's handshakes out under load)
    in_default_run: bool = True


def _sqlite_path(url: str) -> str:
    # sqlite:////abs/path.db -> /abs/path.db (SQLAlchemy's convention: three slashes, then the path)
    return url.split("://", 1)[1][1:].split("?", 1)[0]


def _sqlite_connect(url: str) -> sqlite3.Connection:
    return sqlite3.connect(_sqlite_path(url), timeout=10)


def _redis_cleanup(url: str) -> None:
    # delete only this test's keys (everything under its prefix), never FLUSHALL a shared server
    import redis

    prefix = url.split("prefix=", 1)[1]
    client = redis.Redis.from_url(url.split("?", 1)[0])
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    finally:
        client.close()


def _postgres_connect(url: str) -> Any:
    # the URL without errands' own ?schema= option: a plain psycopg connection to the same database
    import psycopg

    return psycopg.connect(url.split("?", 1)[0])


def _postgres_cleanup(url: str) -> None:
    # drop only this test's schema, never anything else on the shared server
    import psycopg

    schema = url.split("schema=", 1)[1]
    with psycopg.connect(url.split("?", 1)[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _mysql_connect(url: str) -> Any:
    # a plain PyMySQL connection to the test database (errands' table_prefix is not the driver's)
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test", autocommit=False)


def _mysql_drop(prefix: str) -> str:
    from errands.backends._mysql_sql import TABLES

    return "DROP TABLE IF EXISTS " + ", ".join(f"`{prefix}{name.removeprefix('errands_')}`" for name in TABLES)


def _mysql_cleanup(url: str) -> None:
    # drop only this test's tables (its table_prefix), never anything else on the shared server
    prefix = url.split("table_prefix=", 1)[1]
    conn = _mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 10")  # never hang on a leftover session
            cur.execute(_mysql_drop(prefix))
    finally:
        conn.close()


def _memory_dump(url: str, backend: Backend) -> str:
    return repr(vars(backend))  # every dict, heap and record it holds


def _sqlite_dump(url: str, backend: Backend) -> str:
    with contextlib.closing(_sqlite_connect(url)) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return repr([conn.execute(f'SELECT * FROM "{table}"').fetchall() for table in tables])


def _redis_dump(url: str, backend: Backend) -> str:
    import redis

    prefix = url.split("prefix=", 1)[1]
    client = redis.Redis.from_url(url.split("?", 1)[0])
    readers = {b"hash": client.hgetall, b"list": lambda k: client.lrange(k, 0, -1), b"set": client.smembers,
               b"zset": lambda k: client.zrange(k, 0, -1, withscores=True), b"string": client.get,
               b"stream": lambda k: client.xrange(k)}
    try:
        return repr({key: readers[client.type(key)](key) for key in client.scan_iter(match=f"{prefix}:*")})
    finally:
        client.close()


def _postgres_dump(url: str, backend: Backend) -> str:
    schema = url.split("schema=", 1)[1]
    with contextlib.closing(_postgres_connect(url)) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
        return repr([conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall() for table in tables])


def _mysql_dump(url: str, backend: Backend) -> str:
    prefix = url.split("table_prefix=", 1)[1]
    with contextlib.closing(_mysql_connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES LIKE %s", (prefix.replace("_", "\\_") + "%",))
        tables = [row[0] for row in cur.fetchall()]
        rows = []
        for table in tables:
            cur.execute(f"SELECT * FROM `{table}`")
            rows.append(cur.fetchall())
        return repr(rows)


AMQP = "amqp://guest:guest@127.0.0.1:5672/"
# queue names the suite uses: a dump reads this test's work queues by these names
SUITE_QUEUES = ("default", "mail", "media", "ident", "alpha", "beta", "gamma", "mine", "theirs", "other", "cron")


def _amqp_prefix(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["prefix"][0]


def _amqp_messages(url: str) -> list[bytes]:
    """Every message in this test's failed and work queues, browsed (taken unacked on a channel
    that is then closed, so they go back in place)."""
    import pika

    prefix, bodies = _amqp_prefix(url), []
    connection = pika.BlockingConnection(pika.URLParameters(AMQP))
    try:
        for name in [f"{prefix}.failed", *(f"{prefix}.q.{q}" for q in SUITE_QUEUES)]:
            channel = connection.channel()
            try:
                channel.queue_declare(name, passive=True)
                while (message := channel.basic_get(name))[0] is not None:
                    bodies.append(message[2])
            except pika.exceptions.ChannelClosedByBroker:
                continue  # never declared by this test
            if channel.is_open:
                channel.close()
    finally:
        connection.close()
    return bodies


def _amqp_cleanup(url: str) -> None:
    # every queue and exchange the test declared (recorded as they were declared), whatever
    # its queue names and delays; an amqp+sqlite store is a file under tmp_path: nothing to drop
    from tests import _amqp_cleanup

    _amqp_cleanup.delete_declared(url)


def _amqp_url(tmp_path: Path, namespace: str, store: bool) -> str:
    from tests import _amqp_cleanup

    _amqp_cleanup.install()  # from now on this process records what it declares, for the cleanup
    url = f"{AMQP}?prefix={namespace}"
    if store:
        url += "&store=" + urllib.parse.quote(f"sqlite:///{tmp_path / (namespace + '.db')}", safe="")
    return url


def _amqp_store_path(url: str) -> str:
    store = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["store"][0]
    return _sqlite_path(store)


BACKENDS: dict[str, BackendSpec] = {
    "memory": BackendSpec(url=lambda tmp_path, namespace: "memory://", dump=_memory_dump),
    "sqlite": BackendSpec(
        url=lambda tmp_path, namespace: f"sqlite:///{tmp_path / (namespace + '.db')}",
        connect=_sqlite_connect, dump=_sqlite_dump,
    ),
    "redis": BackendSpec(url=lambda tmp_path, namespace: f"redis://127.0.0.1:6379/0?prefix={namespace}",
                         cleanup=lambda url: _redis_cleanup(url), dump=_redis_dump),
    "postgres": BackendSpec(url=lambda tmp_path, namespace: f"postgresql://postgres@127.0.0.1:5432/test?schema={namespace}",
                            cleanup=lambda url: _postgres_cleanup(url), connect=lambda url: _postgres_connect(url),
                            dump=_postgres_dump),
    "mysql": BackendSpec(url=lambda tmp_path, namespace: f"mysql://root@127.0.0.1:3306/test?table_prefix={namespace}_",
                         cleanup=_mysql_cleanup, connect=_mysql_connect, dump=_mysql_dump),
    "amqp": BackendSpec(url=lambda tmp_path, namespace: _amqp_url(tmp_path, namespace, store=False),
                        cleanup=_amqp_cleanup, dump=lambda url, backend: repr(_amqp_messages(url))),
    "amqp+sqlite": BackendSpec(
        url=lambda tmp_path, namespace: _amqp_url(tmp_path, namespace, store=True), cleanup=_amqp_cleanup,
        connect=lambda url: sqlite3.connect(_amqp_store_path(url), timeout=10),
        dump=lambda url, backend: repr(_amqp_messages(url)) + _sqlite_dump(
            "sqlite:///" + _amqp_store_path(url), backend),
    ),
}


def selected_backends(config: pytest.Config) -> list[str]:
    names: list[str] = list(config.getoption("--backend") or [])
    if not names and os.environ.get("ERRANDS_TEST_BACKENDS"):
        names = [n.strip() for n in os.environ["ERRANDS_TEST_BACKENDS"].split(",") if n.strip()]
    if not names:
        names = [name for name, spec in BACKENDS.items() if spec.in_default_run]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise pytest.UsageError(f"unknown backend(s) {unknown}: known are {sorted(BACKENDS)}")
    return list(dict.fromkeys(names))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", selected_backends(metafunc.config))


@pytest.fixture
def backend_spec(backend_name: str) -> BackendSpec:
    return BACKENDS[backend_name]


@pytest.fixture
def url(request: pytest.FixtureRequest, backend_spec: BackendSpec, tmp_path: Path) -> Iterator[str]:
    """An isolated URL for this test; skips when a ``requires`` marker names a capability the
    backend does not declare (the reason says which)."""
    namespace = f"t{uuid.uuid4().hex[:8]}"
    value = backend_spec.url(tmp_path, namespace)
    declared = backend_class(value).capabilities_for(value)
    for marker in request.node.iter_markers("requires"):
        for capability in marker.args:
            if Capability(capability) not in declared:
                pytest.skip(f"{request.node.callspec.params['backend_name']} does not declare "
                            f"Capability.{Capability(capability).name}")
    yield value
    if backend_spec.cleanup is not None:
        backend_spec.cleanup(value)


def make_app(url: str, **options: Any) -> Errands:
    options.setdefault("lease", LEASE)
    options.setdefault("poll_interval", 0.05)
    return Errands(url, **options)


@pytest.fixture
def app(url: str) -> Iterator[Errands]:
    """An Errands on ``url`` with a short lease and quick polling, closed after the test."""
    instance = make_app(url)
    try:
        yield instance
    finally:
        instance.stop(timeout=2)
        instance.close()


@pytest.fixture
def backend(app: Errands) -> Backend:
    return app.backend


@pytest.fixture
def raw_connection(url: str, backend_spec: BackendSpec, backend_name: str) -> Iterator[Any]:
    """A DB-API connection to the backend's own database, for ``app.transaction(conn)``."""
    if backend_spec.connect is None:
        pytest.fail(f"{backend_name} declares TRANSACTIONAL_ENQUEUE but its BACKENDS entry has no connect()")
    connection = backend_spec.connect(url)
    try:
        yield connection
    finally:
        connection.close()


# helpers for tests that drive the Backend interface directly ------------------------------------


def new_job(job_id: str | None = None, **fields: Any) -> Any:
    """A ``NewJob`` with harmless defaults (name "noop", queue "default", no arguments)."""
    from errands._ids import new_id
    from errands.backends.base import NewJob

    values: dict[str, Any] = {"name": "noop", "queue": "default", "args": "[]", "kwargs": "{}", "max_attempts": 3}
    values.update(fields)
    return NewJob(id=job_id or new_id(), **values)


def claim_all(backend: Backend, count: int, *, lease: float = 30.0, worker_id: str = "w") -> list[Any]:
    """Claim ``count`` jobs, in as many claims as it takes: a broker pushes deliveries over a few
    milliseconds, so one claim may return fewer than are queued (the contract says "up to")."""
    claims: list[Any] = []

    def more() -> bool:
        claims.extend(backend.claim(None, count - len(claims), worker_id=worker_id, lease=lease))
        return len(claims) >= count

    wait_until(more, timeout=10, message=f"{count} claims (have {len(claims)})")
    return claims


def claim_one(backend: Backend, queues: list[str] | None = None, *, lease: float = LEASE, worker_id: str = "w1") -> Any:
    """Claim exactly one job (asserting there was one)."""
    claims = backend.claim(queues, 1, worker_id=worker_id, lease=lease)
    assert len(claims) == 1, f"expected one claimable job, got {claims!r}"
    return claims[0]
