"""Transactional enqueue: a job exists if and only if the caller's transaction commits."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from errands import ConfigurationError, Errands
from errands.backends.base import Capability


@pytest.fixture
def send(app: Errands):  # type: ignore[no-untyped-def]
    @app.job()
    def send_welcome(user_id: int) -> None: ...

    return send_welcome


@pytest.mark.requires(Capability.TRANSACTIONAL_ENQUEUE)
def test_commit_makes_the_job(app: Errands, send: Any, raw_connection: Any) -> None:
    with app.transaction(raw_connection):
        handle = send.perform(42)
        many = send.perform_many([((1,), {}), ((2,), {})])
    info = app.get_job(handle.id)
    assert info is not None and info.args == [42] and info.state == "available"
    assert all(app.get_job(h.id) is not None for h in many)
    assert app.stats()["available"] == 3


@pytest.mark.requires(Capability.TRANSACTIONAL_ENQUEUE)
def test_rollback_leaves_no_job(app: Errands, send: Any, raw_connection: Any) -> None:
    with pytest.raises(RuntimeError, match="request failed"), app.transaction(raw_connection):
        handle = send.perform(42)
        raise RuntimeError("request failed")
    assert app.get_job(handle.id) is None
    assert sum(app.stats().values()) == 0


@pytest.mark.requires(Capability.TRANSACTIONAL_ENQUEUE)
def test_job_is_invisible_until_commit(app: Errands, send: Any, raw_connection: Any) -> None:
    with app.transaction(raw_connection):
        handle = send.perform(7)
        assert app.get_job(handle.id) is None, "another connection must not see an uncommitted job"
    assert app.get_job(handle.id) is not None
    assert [c.id for c in app.backend.claim(None, 5, worker_id="w", lease=5)] == [handle.id]


@pytest.mark.requires(Capability.TRANSACTIONAL_ENQUEUE)
def test_enqueue_outside_the_block_is_independent(app: Errands, send: Any, raw_connection: Any) -> None:
    with pytest.raises(ValueError), app.transaction(raw_connection):
        inside = send.perform(1)
        raise ValueError("roll back")
    outside = send.perform(2)
    assert app.get_job(inside.id) is None and app.get_job(outside.id) is not None


def test_transaction_without_the_capability_is_refused(app: Errands) -> None:
    if Capability.TRANSACTIONAL_ENQUEUE in app.backend.capabilities:
        pytest.skip("the backend declares TRANSACTIONAL_ENQUEUE")
    with pytest.raises(ConfigurationError, match="transaction"), app.transaction(object()):
        pass


@pytest.mark.requires(Capability.TRANSACTIONAL_ENQUEUE)
def test_an_open_caller_transaction_is_left_to_the_caller(app: Errands, send: Any, raw_connection: Any) -> None:
    """When the caller's connection is already inside a transaction, the block neither commits
    nor rolls back: the job's fate is the caller's transaction's."""
    table = f"errands_scratch_{uuid.uuid4().hex[:8]}"
    app.stats()  # the schema exists before the caller's transaction takes its locks (as after `migrate`)
    cursor = raw_connection.cursor()
    cursor.execute(f"CREATE TABLE {table} (n INTEGER)")
    raw_connection.commit()
    try:
        cursor.execute(f"INSERT INTO {table} VALUES (1)")  # the caller's own transaction is now open
        with app.transaction(raw_connection):
            dropped = send.perform(1)
        assert app.get_job(dropped.id) is None, "errands committed a transaction it didn't open"
        raw_connection.rollback()
        assert app.get_job(dropped.id) is None

        cursor.execute(f"INSERT INTO {table} VALUES (2)")
        with app.transaction(raw_connection):
            kept = send.perform(2)
        assert app.get_job(kept.id) is None
        raw_connection.commit()
        assert app.get_job(kept.id) is not None
    finally:
        raw_connection.rollback()
        cursor.execute(f"DROP TABLE {table}")
        raw_connection.commit()
