"""The local spool (``Errands(url, spool=path)``) on every backend: server backends keep jobs in
the spool while the server is away and deliver them once, in order, when it is back; ``memory://``
and ``sqlite://`` refuse a spool (they are never "away"). The server "goes away" through a TCP
proxy the test controls, so the shared servers keep running."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from errands import BackendUnavailable, ConfigurationError, Errands, JobState
from errands.backends.base import Capability
from tests._proxy import TcpProxy
from tests.conftest import wait_until

from .conftest import BackendSpec, make_app


def _spool_refused(url: str, tmp_path: Path) -> ConfigurationError | None:
    try:
        Errands(url, spool=str(tmp_path / "probe.db")).close()
    except ConfigurationError as exc:
        return exc
    return None


@pytest.fixture
def proxy(url: str, tmp_path: Path) -> Iterator[TcpProxy]:
    refused = _spool_refused(url, tmp_path)
    if refused is not None:
        pytest.skip(f"this backend refuses spool= (never unreachable): {refused}")
    parts = urlsplit(url)
    with TcpProxy((parts.hostname or "127.0.0.1", parts.port or 0)) as running:
        yield running


@pytest.fixture
def spooled(url: str, proxy: TcpProxy, tmp_path: Path) -> Iterator[Errands]:
    """An app reaching its server through ``proxy``, spooling to a file under tmp_path."""
    instance = make_app(proxy.rewrite(url), spool=str(tmp_path / "spool.db"))
    try:
        yield instance
    finally:
        instance.close()


def _work(app: Errands) -> Any:
    @app.job()
    def work(n: int) -> int:
        return n

    return work


def _delivered(app: Errands, timeout: float = 30.0) -> None:
    wait_until(lambda: app.spool_depth() == 0, timeout=timeout, message="the spool to be delivered")


def test_local_backends_refuse_a_spool_and_servers_take_one(url: str, tmp_path: Path) -> None:
    refused = _spool_refused(url, tmp_path)
    scheme = url.split("://")[0]
    store = parse_qs(urlsplit(url).query).get("store", [""])[0].split("://")[0]
    if scheme in ("memory", "sqlite") or store in ("memory", "sqlite"):  # amqp's store decides
        assert refused is not None and "server backends" in str(refused)
    else:
        assert refused is None


@pytest.mark.requires(Capability.QUERIES)
def test_jobs_wait_in_the_spool_and_arrive_once_in_order(spooled: Errands, proxy: TcpProxy) -> None:
    work = _work(spooled)
    ids = [work.perform(0).id]  # straight to the server
    proxy.down()
    ids += [work.perform(n).id for n in range(1, 20)]
    ids += [h.id for h in work.perform_many([((n,), {}) for n in range(20, 40)])]
    ids += [work.with_options(queue="other").perform(n).id for n in range(40, 45)]
    assert spooled.spool_depth() == 44
    proxy.up()
    _delivered(spooled)
    jobs = {job.id: job for job in spooled.list_jobs(limit=1000)}
    assert sorted(jobs) == sorted(ids)  # every job exactly once
    for queue in ("default", "other"):  # in order of enqueue, per queue
        created = [jobs[i].created_at for i in ids if jobs[i].queue == queue]
        assert created == sorted(created)  # type: ignore[type-var]
    assert [jobs[i].args for i in ids] == [[n] for n in range(45)]
    spooled.run_worker(burst=True)
    assert spooled.stats()["succeeded"] == 45


@pytest.mark.requires(Capability.QUERIES)
def test_enqueues_go_straight_to_the_server_once_the_spool_is_empty(spooled: Errands, proxy: TcpProxy) -> None:
    work = _work(spooled)
    proxy.down()
    work.perform(1)
    proxy.up()
    _delivered(spooled)
    handle = work.perform(2)
    assert spooled.spool_depth() == 0
    assert spooled.get_job(handle.id) is not None


@pytest.mark.requires(Capability.QUERIES)
def test_a_restarted_producer_delivers_what_the_last_one_spooled(
    spooled: Errands, proxy: TcpProxy, url: str, tmp_path: Path
) -> None:
    work = _work(spooled)
    proxy.down()
    ids = [work.perform(n).id for n in range(10)]
    spooled.close()  # the producer goes away with its jobs in the file
    proxy.up()
    again = make_app(proxy.rewrite(url), spool=str(tmp_path / "spool.db"))
    try:
        assert again.spool_depth() == 10  # first use: found, and being delivered
        _delivered(again)
        assert sorted(j.id for j in again.list_jobs(limit=100)) == sorted(ids)
    finally:
        again.close()


@pytest.mark.requires(Capability.UNIQUE)
@pytest.mark.requires(Capability.QUERIES)
def test_a_unique_key_is_decided_at_delivery(spooled: Errands, proxy: TcpProxy) -> None:
    work = _work(spooled).with_options(unique_key="report-42")
    proxy.down()
    first, second = work.perform(1), work.perform(2)
    assert first.id != second.id  # the spool can't ask the server: both wait
    proxy.up()
    _delivered(spooled)
    assert [j.id for j in spooled.list_jobs()] == [first.id]
    assert spooled.get_job(second.id) is None  # its key was held when it arrived


@pytest.mark.requires(Capability.QUERIES)
def test_a_delay_counts_from_perform_not_from_delivery(spooled: Errands, proxy: TcpProxy) -> None:
    work = _work(spooled)
    proxy.down()
    asked = time.time()
    handle = work.perform_in(3600, 1)
    proxy.up()
    _delivered(spooled)
    info = spooled.get_job(handle.id)
    assert info is not None and info.state == JobState.SCHEDULED and info.run_at is not None
    assert abs(info.run_at.timestamp() - (asked + 3600)) < 60


@pytest.mark.requires("transactional_enqueue")
def test_a_transaction_never_spools(
    spooled: Errands, proxy: TcpProxy, url: str, backend_spec: BackendSpec
) -> None:
    work = _work(spooled)
    spooled.backend  # noqa: B018  # opened while the server answers
    proxy.down()
    waiting = work.perform(1)
    assert spooled.spool_depth() == 1
    assert backend_spec.connect is not None
    connection = backend_spec.connect(url)  # the caller's own connection, straight to the server
    inside = None
    try:
        with spooled.transaction(connection):
            inside = work.perform(2)
    except BackendUnavailable:
        pass  # a backend that needs a session of its own too (MySQL): the error reaches the caller
    finally:
        connection.close()
    assert spooled.spool_depth() == 1  # not behind the spooled job: the caller's commit decided
    broken = backend_spec.connect(url)
    broken.close()
    with pytest.raises(Exception), spooled.transaction(broken):  # noqa: B017  # the driver's own error
        work.perform(3)
    assert spooled.spool_depth() == 1
    proxy.up()
    _delivered(spooled)
    expected = {1, 2} if inside is not None else {1}
    assert {j.args[0] for j in spooled.list_jobs()} == expected
    assert spooled.get_job(waiting.id) is not None


def test_no_spool_means_depth_zero(app: Errands) -> None:
    assert app.spool_depth() == 0
