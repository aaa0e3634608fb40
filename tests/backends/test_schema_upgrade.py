"""A database made by the previous release (its schema one version behind) upgrades when a
backend opens it: the ``meta`` column is added, jobs already stored keep running (with ``{}``
meta), new jobs store theirs, and opening again changes nothing. The old schema is built by the
released migration steps themselves (they are append-only, never edited), less the newest one.

MySQL commits each DDL statement on its own, so its step must also survive a crash between the
ALTER and the version record: the column exists, the version says it doesn't, and the next
opener must still succeed."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from errands import Errands, JobState, current_job
from errands.backends import _sqlite_sql
from errands.backends._sql import META_TABLE, SCHEMA_KEY, Migration, run_migrations

OLD_ROW = ("INSERT INTO errands_jobs (id, name, queue, args, kwargs, state, max_attempts, run_at, created_at) "
           "VALUES ('old-job', 'reader', 'default', '[]', '{}', 'available', 3, 0, 0)")


def _exercise(url: str) -> None:
    """Open the upgraded store through the public API: the old job runs with ``{}``, a new one
    carries its meta to the handler and back."""
    app = Errands(url, lease=5.0)
    seen: dict[str, Any] = {}

    @app.job()
    def reader() -> None:
        seen[current_job().id] = current_job().meta

    try:
        old = app.get_job("old-job")
        assert old is not None and old.meta == {} and old.state == JobState.AVAILABLE
        new = reader.with_options(meta={"trace": "t-1"}).perform()
        app.run_worker(concurrency=1, burst=True)
        assert seen == {"old-job": {}, new.id: {"trace": "t-1"}}
        info = app.get_job(new.id)
        assert info is not None and info.state == JobState.SUCCEEDED and info.meta == {"trace": "t-1"}
    finally:
        app.close()


def _previous(migrations: tuple[Migration, ...]) -> tuple[Migration, ...]:
    assert len(migrations) >= 2, "the newest step is the one under test"
    return migrations[:-1]


# SQLite -----------------------------------------------------------------------------------------
def _sqlite_upto(version: int) -> tuple[Migration, ...]:
    return tuple(step for step in _sqlite_sql.MIGRATIONS if step.version <= version)


def test_sqlite_adds_meta_to_a_previous_version_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        run_migrations(conn.cursor(), _sqlite_upto(2), meta_ddl=_sqlite_sql.META_DDL)
        conn.execute(OLD_ROW)
        assert "meta" not in {row[1] for row in conn.execute("PRAGMA table_info(errands_jobs)")}
    conn.close()
    _exercise(f"sqlite:///{path}")
    again = Errands(f"sqlite:///{path}")  # a second open finds nothing to do
    assert again.stats()["succeeded"] == 2
    again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute(f"SELECT value FROM {META_TABLE} WHERE name = ?", (SCHEMA_KEY,)).fetchone() == (
            str(_sqlite_sql.MIGRATIONS[-1].version),)
        assert "meta" in {row[1] for row in conn.execute("PRAGMA table_info(errands_jobs)")}
    conn.close()


def test_sqlite_version_3_file_gains_paused_queues_limits_and_unique_for(tmp_path: Path) -> None:
    from errands.backends.base import NewJob, SlotRequest
    from errands.backends.sqlite import SqliteBackend
    from errands.config import Settings

    path = tmp_path / "v3.db"
    with sqlite3.connect(path) as conn:
        run_migrations(conn.cursor(), _sqlite_upto(3), meta_ddl=_sqlite_sql.META_DDL)
        conn.execute(OLD_ROW)
        # a finished job of a key, stored before the upgrade: unique_for must find it (index on old rows)
        conn.execute("INSERT INTO errands_jobs (id, name, queue, args, kwargs, state, max_attempts, run_at, "
                     "created_at, unique_key, finished_at) VALUES ('old-done', 'reader', 'default', '[]', '{}', "
                     "'succeeded', 3, 0, julianday('now') * 86400 - 210866760000, 'digest', 0)")
    conn.close()
    backend = SqliteBackend(f"sqlite:///{path}", Settings())
    try:
        backend.set_paused(["default"], True)
        assert backend.claim(None, 10, worker_id="w", lease=30) == []
        backend.set_paused(["default"], False)
        assert [c.id for c in backend.claim(None, 10, worker_id="w", lease=30)] == ["old-job"]
        assert backend.acquire_slots([SlotRequest("k", "h", 1)], ttl=30) == [True]
        assert backend.take_rate("r", 1, 60.0) == 0.0
        again = NewJob(id="new-one", name="reader", queue="default", args="[]", kwargs="{}", max_attempts=3,
                       unique_key="digest", unique_for=3600.0)
        assert [(e.id, e.created) for e in backend.enqueue([again])] == [("old-done", False)]
    finally:
        backend.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute(f"SELECT value FROM {META_TABLE} WHERE name = ?", (SCHEMA_KEY,)).fetchone() == (
            str(_sqlite_sql.MIGRATIONS[-1].version),)
    conn.close()


# PostgreSQL -------------------------------------------------------------------------------------
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"tup{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_postgres_adds_meta_to_a_previous_version_schema(pg_schema: str) -> None:
    import psycopg

    from errands.backends._postgres_sql import Statements

    statements = Statements(pg_schema)
    with psycopg.connect(PG_SERVER) as conn, conn.transaction():
        cur = conn.cursor()
        cur.execute(f'CREATE SCHEMA "{pg_schema}"')
        cur.execute(f'SET LOCAL search_path TO "{pg_schema}"')
        run_migrations(cur, _upto(statements.migrations, 1), meta_ddl=statements.meta_ddl, placeholder="%s")
        cur.execute(OLD_ROW)
    url = f"{PG_SERVER}?schema={pg_schema}"
    _exercise(url)
    with psycopg.connect(PG_SERVER) as conn:
        version = conn.execute(f'SELECT value FROM "{pg_schema}".{META_TABLE} WHERE name = %s',
                               (SCHEMA_KEY,)).fetchone()
        columns = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                                              "table_schema = %s AND table_name = 'errands_jobs'", (pg_schema,))}
    assert version == (str(statements.migrations[-1].version),) and "meta" in columns


def _upto(migrations: tuple[Migration, ...], version: int) -> tuple[Migration, ...]:
    return tuple(step for step in migrations if step.version <= version)


def _old_keyed_row(now: str) -> str:
    """A finished job of the key 'digest', stored before the upgrade: unique_for must find it."""
    return ("INSERT INTO errands_jobs (id, name, queue, args, kwargs, state, max_attempts, run_at, created_at, "
            f"unique_key, finished_at) VALUES ('old-done', 'reader', 'default', '[]', '{{}}', 'succeeded', 3, 0, "
            f"{now}, 'digest', 0)")


def _exercise_coordination(url: str) -> None:
    """Paused queues, slots, rates and unique_for work on an upgraded store, old rows included."""
    from errands.backends.base import NewJob, SlotRequest

    app = Errands(url)
    backend = app.backend
    try:
        backend.set_paused(["default"], True)
        assert backend.claim(None, 10, worker_id="w", lease=30) == []
        backend.set_paused(["default"], False)
        assert [c.id for c in backend.claim(None, 10, worker_id="w", lease=30)] == ["old-job"]
        assert backend.acquire_slots([SlotRequest("k", "h", 1), SlotRequest("k", "h2", 1)], ttl=30) == [True, False]
        assert backend.take_rate("r", 1, 60.0) == 0.0 and backend.take_rate("r", 1, 60.0) > 0.0
        again = NewJob(id="new-one", name="reader", queue="default", args="[]", kwargs="{}", max_attempts=3,
                       unique_key="digest", unique_for=3600.0)
        assert [(e.id, e.created) for e in backend.enqueue([again])] == [("old-done", False)]
    finally:
        app.close()


def test_postgres_version_2_schema_gains_paused_queues_limits_and_unique_for(pg_schema: str) -> None:
    import psycopg

    from errands.backends._postgres_sql import Statements

    statements = Statements(pg_schema)
    with psycopg.connect(PG_SERVER) as conn, conn.transaction():
        cur = conn.cursor()
        cur.execute(f'CREATE SCHEMA "{pg_schema}"')
        cur.execute(f'SET LOCAL search_path TO "{pg_schema}"')
        run_migrations(cur, _upto(statements.migrations, 2), meta_ddl=statements.meta_ddl, placeholder="%s")
        cur.execute(OLD_ROW)
        cur.execute(_old_keyed_row("date_part('epoch', now())"))
    url = f"{PG_SERVER}?schema={pg_schema}"
    _exercise_coordination(url)
    with psycopg.connect(PG_SERVER) as conn:
        version = conn.execute(f'SELECT value FROM "{pg_schema}".{META_TABLE} WHERE name = %s',
                               (SCHEMA_KEY,)).fetchone()
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s",
                                              (pg_schema,))}
    assert version == (str(statements.migrations[-1].version),) and "errands_jobs_unique_any" in indexes


# MySQL / MariaDB --------------------------------------------------------------------------------
MYSQL_SERVER = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture
def mysql_prefix() -> Iterator[str]:
    pytest.importorskip("pymysql")
    name = f"u{uuid.uuid4().hex[:8]}_"
    yield name
    from errands.backends import _mysql_sql

    with _mysql(name) as cur:
        cur.execute("SET SESSION lock_wait_timeout = 10")
        cur.execute("DROP TABLE IF EXISTS " + ", ".join(_mysql_sql.TABLES))  # renamed by the cursor


class _mysql:
    """A cursor on the test database that speaks ``prefix``'s table names, closed on exit."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __enter__(self) -> Any:
        import pymysql

        from errands.backends import _mysql_sql

        self.conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test", autocommit=True)
        return _mysql_sql.Cursor(self.conn.cursor(), self.prefix)

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _mysql_columns(prefix: str) -> set[str]:
    with _mysql(prefix) as cur:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
                    f"AND table_name = '{prefix}jobs'")
        return {str(row[0]) for row in cur.fetchall()}


@pytest.mark.parametrize("crashed_midway", [False, True], ids=["clean", "after-alter-before-version"])
def test_mysql_adds_meta_to_a_previous_version_database(mysql_prefix: str, crashed_midway: bool) -> None:
    from errands.backends import _mysql_sql

    with _mysql(mysql_prefix) as cur:
        run_migrations(cur, _upto(_mysql_sql.MIGRATIONS, 1), meta_ddl=_mysql_sql.META_DDL, placeholder="%s")
        cur.execute(OLD_ROW)
        if crashed_midway:  # the meta step's DDL ran, its version was never recorded
            for statement in _mysql_sql.MIGRATIONS[1].statements:
                cur.execute(statement)
    assert ("meta" in _mysql_columns(mysql_prefix)) == crashed_midway
    _exercise(f"{MYSQL_SERVER}?table_prefix={mysql_prefix}")
    assert "meta" in _mysql_columns(mysql_prefix)
    with _mysql(mysql_prefix) as cur:
        cur.execute(f"SELECT value FROM {META_TABLE} WHERE name = %s", (SCHEMA_KEY,))
        assert cur.fetchone() == (str(_mysql_sql.MIGRATIONS[-1].version),)


@pytest.mark.parametrize("crashed_midway", [False, True], ids=["clean", "after-ddl-before-version"])
def test_mysql_version_2_database_gains_paused_queues_limits_and_unique_for(mysql_prefix: str,
                                                                            crashed_midway: bool) -> None:
    from errands.backends import _mysql_sql

    with _mysql(mysql_prefix) as cur:
        run_migrations(cur, _upto(_mysql_sql.MIGRATIONS, 2), meta_ddl=_mysql_sql.META_DDL, placeholder="%s")
        cur.execute(OLD_ROW)
        cur.execute(_old_keyed_row("UNIX_TIMESTAMP(NOW(6))"))
        if crashed_midway:  # step 3's DDL ran (each statement commits on its own), no version recorded
            for statement in _mysql_sql.MIGRATIONS[2].statements:
                cur.execute(statement)
    _exercise_coordination(f"{MYSQL_SERVER}?table_prefix={mysql_prefix}")
    with _mysql(mysql_prefix) as cur:
        cur.execute(f"SELECT value FROM {META_TABLE} WHERE name = %s", (SCHEMA_KEY,))
        assert cur.fetchone() == (str(_mysql_sql.MIGRATIONS[-1].version),)
        cur.execute("SELECT COUNT(DISTINCT index_name) FROM information_schema.statistics WHERE "
                    f"table_schema = DATABASE() AND table_name = '{mysql_prefix}jobs' AND index_name = 'unique_any'")
        assert cur.fetchone() == (1,)
