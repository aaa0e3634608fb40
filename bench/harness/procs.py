"""Worker processes: start a library's standard worker command, sample the memory of its whole
process tree while it runs, and stop it (SIGTERM, then SIGKILL to whatever is left)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Sequence

import psutil

__all__ = ["MemorySampler", "WorkerGroup"]


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class WorkerGroup:
    """The worker processes of one library run: each command is started from ``cwd`` with
    ``env``, its output appended to ``log``."""

    def __init__(self, commands: Sequence[Sequence[str]], *, cwd: str, env: dict[str, str], log: str) -> None:
        self.commands = [list(c) for c in commands]
        self.cwd, self.env, self.log = cwd, env, log
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        with open(self.log, "ab") as out:
            for command in self.commands:
                out.write(f"\n$ {' '.join(command)}\n".encode())
                out.flush()
                self.procs.append(subprocess.Popen(command, cwd=self.cwd, env=self.env, stdout=out,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def tree(self) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for proc in self.procs:
            try:
                top = psutil.Process(proc.pid)
                found.append(top)
                found.extend(top.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        return found

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM (every library's documented graceful stop), then SIGKILL after ``grace``."""
        tree = self.tree()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in tree + self.tree():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by these processes and all their descendants (reaped children
    are counted in their parent's children_user/children_system)."""
    total, seen = 0.0, set()
    for pid in pids:
        try:
            top = psutil.Process(pid)
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
    return total


class MemorySampler:
    """Every ``interval`` seconds: each process's peak RSS (VmHWM, kept by the kernel, so short
    peaks between samples count too) and the sum of current RSS over the tree."""

    def __init__(self, group: WorkerGroup, interval: float = 0.2) -> None:
        self.group = group
        self.interval = interval
        self.peak_process_kb = 0
        self.peak_total_kb = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        total, count = 0, 0
        for p in self.group.tree():
            self.peak_process_kb = max(self.peak_process_kb, _status_kb(p.pid, "VmHWM:"))
            total += _status_kb(p.pid, "VmRSS:")
            count += 1
        self.peak_total_kb = max(self.peak_total_kb, total)
        self.processes = max(self.processes, count)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        self._thread.join(2)
