"""The real command line, run as subprocesses (``python -m errands ...``) against a tiny app
module written into tmp_path and a SQLite file there, so state crosses processes as it does
for users."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from errands import Errands
from tests.conftest import wait_until

APP_MODULE = textwrap.dedent('''
    import os
    import time

    from errands import Errands

    app = Errands(os.environ["ERRANDS_TEST_URL"], poll_interval=0.05)
    not_an_app = 42


    @app.job()
    def add(a, b):
        return a + b


    @app.job(retries=0)
    def boom(message):
        raise ValueError(message)


    @app.job()
    def echo(*args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}


    @app.job(queue="slow")
    def nap(seconds):
        time.sleep(seconds)
        return "rested"
''')


# tapp's jobs and their options, as an enqueuer needs them
STAND_INS: dict[str, dict[str, object]] = {
    "add": {}, "boom": {"retries": 0}, "echo": {}, "nap": {"queue": "slow"},
}


def _never_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("the test process enqueues; workers run tapp's real handlers")


class Proc:
    """A running CLI process whose output is collected line by line, so a test can wait for
    a line (with a deadline) instead of sleeping."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, encoding="utf-8")
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, lines in ((self.popen.stdout, self.stdout), (self.popen.stderr, self.stderr)):
            threading.Thread(target=_collect, args=(stream, lines), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for(self, pattern: str, *, count: int = 1, stream: str = "stderr",
                 timeout: float = 30.0) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the stream, waiting up to ``timeout``."""
        regex = re.compile(pattern)
        lines = self.stdout if stream == "stdout" else self.stderr

        def found() -> list[re.Match[str]] | None:
            matches = [m for m in (regex.search(line) for line in list(lines)) if m]
            return matches[:count] if len(matches) >= count else None

        return wait_until(found, timeout=timeout, message=f"{count} line(s) matching {pattern!r} on {stream}"
                          f"; stderr so far:\n{''.join(self.stderr)}")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _collect(stream: object, lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)  # noqa: PERF402  (one by one, as they arrive: tests wait on them)


class Project:
    """A folder with ``tapp.py`` (APP is ``tapp:app``) and the SQLite file its app uses."""

    def __init__(self, root: Path, src: str) -> None:
        self.root = root
        self.db = root / "jobs.db"
        self.url = f"sqlite:///{self.db}"  # an absolute path: sqlite:////tmp/...
        (root / "tapp.py").write_text(APP_MODULE, encoding="utf-8")
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([src, str(root)])
        self.env["ERRANDS_TEST_URL"] = self.url
        self.env.pop("ERRANDS_URL", None)
        self.env["PYTHONUNBUFFERED"] = "1"  # log lines arrive as they are written
        self.procs: list[Proc] = []
        self._client: Errands | None = None

    def run(self, *args: str, timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "errands", *args], cwd=cwd or self.root, env=self.env,
                              capture_output=True, text=True, encoding="utf-8", timeout=timeout, check=False)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run and insist on exit code 0 (showing stderr when not)."""
        result = self.run(*args)
        assert result.returncode == 0, f"errands {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        return result

    def spawn(self, *args: str) -> Proc:
        proc = Proc([sys.executable, "-m", "errands", *args], self.root, self.env)
        self.procs.append(proc)
        return proc

    @property
    def client(self) -> Errands:
        """An Errands on the same SQLite file, to check what the CLI did and to enqueue: it
        registers stand-ins under tapp's job names (with the same options), never run here."""
        if self._client is None:
            self._client = Errands(self.url)
            for name, options in STAND_INS.items():
                self._client.job(name=name, **options)(_never_run)
        return self._client

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()
        if self._client is not None:
            self._client.close()


@pytest.fixture
def project(tmp_path: Path, src_path: str) -> Iterator[Project]:
    project = Project(tmp_path, src_path)
    try:
        yield project
    finally:
        project.close()
