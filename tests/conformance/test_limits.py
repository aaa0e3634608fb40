"""Global concurrency and rate limits (issue #9), enforced across workers: two workers with
room for many jobs each never run more than the limit at once, a rate holds over time, a
limit can be partitioned by an argument or declared on a queue, and a job over its limit waits
(no attempt counted) and never fails for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from errands import Errands, JobState
from errands.backends.base import Capability
from errands.worker import Worker

from .conftest import make_app

pytestmark = pytest.mark.requires(Capability.LIMITS, Capability.QUERIES)


class Meter:
    """Counts handlers running at once, overall and per key, from inside the handlers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.starts: list[float] = []

    @contextmanager
    def run(self, key: str = "all", hold: float = 0.05) -> Iterator[None]:
        with self.lock:
            self.starts.append(time.monotonic())
            self.running[key] = self.running.get(key, 0) + 1
            self.peak[key] = max(self.peak.get(key, 0), self.running[key])
        try:
            time.sleep(hold)  # the job's work: long enough for other workers to try to start beside it
            yield
        finally:
            with self.lock:
                self.running[key] -= 1


@contextmanager
def two_workers(app: Errands, url: str, define: Any, concurrency: int = 4) -> Iterator[Errands]:
    """Two workers with room for ``concurrency`` jobs each: the second on an app of its own
    (its own connections) where the store is shared by processes, else beside the first."""
    other = make_app(url) if Capability.MULTI_PROCESS in app.backend.capabilities else app
    if other is not app:
        define(other)
    second = Worker(other, concurrency=concurrency, install_signals=False)
    with app.worker(concurrency=concurrency):
        second.start()
        try:
            yield other
        finally:
            second.stop(5)
            if other is not app:
                other.close()


def _all_succeeded(app: Errands, handles: list[Any], timeout: float = 30.0) -> None:
    for handle in handles:
        info = handle.wait(timeout)
        assert info.state == JobState.SUCCEEDED, (info.state, info.error)
        assert info.attempts == 1, "waiting for a limit counts no attempt"


def test_concurrency_holds_across_workers(app: Errands, url: str) -> None:
    meter = Meter()

    def define(target: Errands) -> Any:
        @target.job(name="report", concurrency=2, retries=0)
        def report(n: int) -> int:
            with meter.run():
                return n

        return report

    report = define(app)
    with two_workers(app, url, define):
        handles = report.perform_many([((n,), {}) for n in range(12)])
        _all_succeeded(app, handles)
    assert meter.peak["all"] == 2, meter.peak
    assert app.limit_usage().get("job:report", 0) == 0, "every slot was given back"


def test_limit_key_partitions_the_limit(app: Errands, url: str) -> None:
    meter = Meter()

    def define(target: Errands) -> Any:
        @target.job(name="sync_account", concurrency=1, limit_key=lambda user, n: user, retries=0)
        def sync_account(user: str, n: int) -> None:
            with meter.run(user):
                pass

        return sync_account

    sync_account = define(app)
    with two_workers(app, url, define):
        handles = sync_account.perform_many([((user, n), {}) for n in range(5) for user in ("ann", "bob", "cy")])
        _all_succeeded(app, handles)
    assert meter.peak == {"ann": 1, "bob": 1, "cy": 1}


def test_a_limit_key_of_none_means_the_job_wide_limit(app: Errands, url: str) -> None:
    meter = Meter()

    def define(target: Errands) -> Any:
        @target.job(name="notify", concurrency=1, limit_key=lambda team=None: team, retries=0)
        def notify(team: str | None = None) -> None:
            with meter.run():
                pass

        return notify

    notify = define(app)
    with two_workers(app, url, define):
        _all_succeeded(app, notify.perform_many([((), {}) for _ in range(6)]))
    assert meter.peak["all"] == 1


def test_a_queue_limit_holds_for_every_job_of_the_queue(app: Errands, url: str) -> None:
    meter = Meter()

    def define(target: Errands) -> tuple[Any, Any]:
        target.limit_queue("mail", concurrency=1)

        @target.job(name="welcome", queue="mail", retries=0)
        def welcome(n: int) -> None:
            with meter.run():
                pass

        @target.job(name="digest", queue="mail", retries=0)
        def digest(n: int) -> None:
            with meter.run():
                pass

        return welcome, digest

    welcome, digest = define(app)
    with two_workers(app, url, define):
        handles = [*welcome.perform_many([((n,), {}) for n in range(4)]),
                   *digest.perform_many([((n,), {}) for n in range(4)])]
        _all_succeeded(app, handles)
    assert meter.peak["all"] == 1


def test_a_rate_limit_spaces_starts_across_workers(app: Errands, url: str) -> None:
    meter = Meter()
    limit, period = 3, 1.2  # a burst of 3, then one start per 0.4 s

    def define(target: Errands) -> Any:
        @target.job(name="call_api", rate_limit=f"{limit}/{period}s", retries=0)
        def call_api(n: int) -> None:
            with meter.run(hold=0.0):
                pass

        return call_api

    call_api = define(app)
    with two_workers(app, url, define):
        handles = call_api.perform_many([((n,), {}) for n in range(7)])
        _all_succeeded(app, handles)
    starts = sorted(meter.starts)
    interval = period / limit
    for k in range(limit, len(starts)):  # the k-th start waits for (k - limit + 1) refills at least
        assert starts[k] - starts[0] >= (k - limit + 1) * interval - 0.1, (k, [s - starts[0] for s in starts])


def test_bad_limit_declarations_fail_at_definition(app: Errands) -> None:
    from errands import ConfigurationError

    with pytest.raises(ConfigurationError, match="rate_limit"):
        app.job(name="a", rate_limit="often")
    with pytest.raises(ConfigurationError, match="concurrency"):
        app.job(name="b", concurrency=0)
    with pytest.raises(ConfigurationError, match="limit_key"):
        app.job(name="c", limit_key=lambda: 1)
    with pytest.raises(ConfigurationError, match="rate_limit"):
        app.limit_queue("mail", rate_limit="5/fortnight")
