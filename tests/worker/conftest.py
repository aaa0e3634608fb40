"""Process-level worker tests on a real SQLite file: an app module written into tmp_path and
worker processes started with a small runner, so a test can SIGKILL or SIGTERM them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from errands import Errands

LEASE = 1.0

APP_MODULE = textwrap.dedent('''
    import os
    import time

    from errands import Errands, current_job

    app = Errands(os.environ["ERRANDS_TEST_URL"], lease=float(os.environ["ERRANDS_TEST_LEASE"]), poll_interval=0.05)
    MARKS = os.environ["ERRANDS_TEST_MARKS"]


    def mark(event):
        job = current_job()
        with open(os.path.join(MARKS, job.id + ".log"), "a") as f:
            f.write(f"{event} {job.attempt} {os.getpid()}\\n")


    @app.job(retries=3, backoff=0)
    def hang_on_first_attempt(seconds):
        mark("start")
        if current_job().attempt == 1:
            time.sleep(seconds)
        mark("end")
        return "done"


    @app.job(retries=0)
    def nap(seconds):
        mark("start")
        time.sleep(seconds)
        mark("end")
        return "rested"


    @app.job(retries=1, backoff=0)
    def kills_its_worker(how):
        mark("start")
        if how == "exit":
            os._exit(17)
        os.abort()
''')

RUNNER = textwrap.dedent('''
    import importlib, resource, sys
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # os.abort() must not leave core files
    sys.path.insert(0, sys.argv[1])
    module = importlib.import_module("jobs_app")
    module.app.run_worker(concurrency=int(sys.argv[2]), grace=float(sys.argv[3]))
''')


@dataclass
class WorkerHarness:
    """Starts worker processes on ``url``; every process it started is killed at teardown."""

    root: Path
    url: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, concurrency: int = 2, grace: float = 10.0) -> subprocess.Popen[bytes]:
        with open(self.root / f"worker-{len(self.processes)}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", RUNNER, str(self.root), str(concurrency), repr(grace)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self.processes.append(process)
        return process

    def marks(self, job_id: str) -> list[tuple[str, int, int]]:
        """(event, attempt, pid) lines the handler wrote for ``job_id``."""
        path = self.root / "marks" / f"{job_id}.log"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            event, attempt, pid = line.split()
            rows.append((event, int(attempt), int(pid)))
        return rows

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.root.glob("worker-*.log")))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def harness(tmp_path: Path, src_path: str) -> Iterator[WorkerHarness]:
    (tmp_path / "jobs_app.py").write_text(APP_MODULE)
    (tmp_path / "marks").mkdir()
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = dict(os.environ)
    env.update({
        "ERRANDS_TEST_URL": url,
        "ERRANDS_TEST_LEASE": str(LEASE),
        "ERRANDS_TEST_MARKS": str(tmp_path / "marks"),
        "PYTHONPATH": os.pathsep.join([src_path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    h = WorkerHarness(tmp_path, url, env)
    try:
        yield h
    finally:
        h.stop_all()


@pytest.fixture
def client(harness: WorkerHarness) -> Iterator[Errands]:
    """The producer side in the test process: same file, same handler names (never run here)."""
    app = Errands(harness.url, lease=LEASE)

    @app.job(name="hang_on_first_attempt", retries=3)
    def hang_on_first_attempt(seconds: float) -> None: ...

    @app.job(name="nap", retries=0)
    def nap(seconds: float) -> None: ...

    @app.job(name="kills_its_worker", retries=1)
    def kills_its_worker(how: str) -> None: ...

    try:
        yield app
    finally:
        app.close()
