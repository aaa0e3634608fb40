"""Raw writes straight into each backend's store, under errands' feet: a field of one job set to
junk or removed, as a bad migration, a hand edit or another program would leave it. ``None``
removes the field (Redis ``HDEL``; SQL ``NULL``). Returns False when the store itself refuses
the value (a column type or ``NOT NULL``): that corruption can't exist there."""

from __future__ import annotations

import sqlite3
import urllib.parse
from typing import Any

__all__ = ["corrupt"]

TABLE = "errands_jobs"


def corrupt(backend: str, url: str, job_id: str, field: str, value: Any) -> bool:
    return _WRITERS[backend](url, job_id, field, value)


def _sqlite(url: str, job_id: str, field: str, value: Any) -> bool:
    conn = sqlite3.connect(url.split(":///", 1)[1].split("?", 1)[0], timeout=30)
    try:
        with conn:
            conn.execute(f"UPDATE {TABLE} SET {field} = ? WHERE id = ?", (value, job_id))
        return True
    except sqlite3.IntegrityError:
        return False
    finally:
        conn.close()


def _postgres(url: str, job_id: str, field: str, value: Any) -> bool:
    import psycopg

    schema = url.split("schema=", 1)[1].split("&", 1)[0]
    with psycopg.connect(url.split("?", 1)[0], autocommit=True) as conn:
        try:
            conn.execute(f'UPDATE "{schema}".{TABLE} SET {field} = %s WHERE id = %s', (value, job_id))
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.InvalidTextRepresentation,
                psycopg.errors.CharacterNotInRepertoire, psycopg.errors.UntranslatableCharacter):
            return False
    return True


def _mysql(url: str, job_id: str, field: str, value: Any) -> bool:
    import pymysql

    prefix = url.split("table_prefix=", 1)[1].split("&", 1)[0]
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test", autocommit=True,
                           charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
            cur.execute(f"UPDATE `{prefix}jobs` SET `{field}` = %s WHERE id = %s", (value, job_id))
        return True
    except (pymysql.err.DataError, pymysql.err.IntegrityError, pymysql.err.OperationalError):
        return False
    finally:
        conn.close()


def _redis(url: str, job_id: str, field: str, value: Any) -> bool:
    import redis

    prefix = url.split("prefix=", 1)[1].split("&", 1)[0]
    client = redis.Redis.from_url(url.split("?", 1)[0])
    try:
        key = f"{prefix}:{{default}}:job:{job_id}"
        assert client.exists(key), key
        if value is None:
            client.hdel(key, field)
        else:
            client.hset(key, field, value)
        return True
    finally:
        client.close()


def _amqp_store(url: str, job_id: str, field: str, value: Any) -> bool:
    # RabbitMQ with a store: the record is the store's (the message carries only the id)
    store = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["store"][0]
    return _WRITERS[store.split(":", 1)[0]](store, job_id, field, value)


_WRITERS = {"sqlite": _sqlite, "postgres": _postgres, "mysql": _mysql, "redis": _redis, "amqp+sqlite": _amqp_store}
