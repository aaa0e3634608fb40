"""What every fault scenario shares (FAULTS.md "The ledger and the invariants"): real worker
processes to kill, the handlers' ledger, a scan of the store, the invariant check and the
figures each run records for RELIABILITY.md.

Sizes scale with ``ERRANDS_FAULT_SCALE`` (1 in CI; ``python -m tests.faults.report --scale 5``
runs bigger). When ``ERRANDS_FAULT_RESULTS`` names a file, each run appends its figures to it as
one JSON line: the report command builds RELIABILITY.md's tables from them.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import errands
from errands import Errands, JobInfo
from errands.jobs import TERMINAL_STATES
from tests.faults import _fault_app

__all__ = [
    "SCALE", "Figures", "Fleet", "Ledger", "Verdict", "client_app", "record", "scaled", "scan", "settle_and_check",
]

SCALE = float(os.environ.get("ERRANDS_FAULT_SCALE", "1"))
REPO = Path(__file__).resolve().parents[2]
APP_SPEC = "tests.faults._fault_app:app"


def scaled(n: float, minimum: int = 1) -> int:
    return max(minimum, round(n * SCALE))


# figures ------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """One scenario run on one backend, as RELIABILITY.md shows it."""

    scenario: str
    backend: str
    jobs: int
    faults: int
    lost: int
    stuck: int
    duplicates: int
    ambiguous: int = 0
    recover_p50: float | None = None
    recover_max: float | None = None
    seconds: float = 0.0
    note: str = ""
    command: str = ""
    test: str = ""  # the pytest node id, so the report can show the test's outcome beside its figures


def record(figures: Figures) -> Figures:
    """Print the figures (pytest -s shows them) and append them to $ERRANDS_FAULT_RESULTS."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    figures.test = figures.test or current.rsplit(" ", 1)[0]
    if not figures.command:
        figures.command = f"ERRANDS_FAULT_SCALE={SCALE:g} python -m pytest '{figures.test or 'tests/faults'}'"
    print(f"\n{figures}")
    target = os.environ.get("ERRANDS_FAULT_RESULTS")
    if target:
        with open(target, "a") as out:
            out.write(json.dumps(asdict(figures)) + "\n")
    return figures


def recovery(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"recover_p50": None, "recover_max": None}
    return {"recover_p50": round(statistics.median(samples), 2), "recover_max": round(max(samples), 2)}


# the ledger ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    id: str
    attempt: int
    pid: int
    event: str  # start | end
    clock: float  # the handler process's time.time()


class Ledger:
    """The file handlers append ``id attempt pid event clock`` lines to (``_fault_app.mark``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def marks(self) -> list[Mark]:
        rows = []
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:  # a line cut by SIGKILL mid-write can't happen (one write), but be safe
                rows.append(Mark(parts[0], int(parts[1]), int(parts[2]), parts[3], float(parts[4])))
        return rows

    def starts(self) -> Counter[str]:
        return Counter(m.id for m in self.marks() if m.event == "start")

    def duplicates(self, ids: Iterable[str] | None = None) -> int:
        """Runs beyond the first of each id (of ``ids``, or of all)."""
        starts = self.starts()
        keys = starts.keys() if ids is None else set(ids) & starts.keys()
        return sum(starts[k] - 1 for k in keys)


# worker processes ---------------------------------------------------------------------------------


@dataclass
class Fleet:
    """``errands worker tests.faults._fault_app:app`` processes on ``url``, which a test kills,
    stops and respawns. Every process it started is killed at ``close()``."""

    root: Path
    url: str
    lease: float
    ledger: Ledger
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        # the errands this test imported (the checkout's src/, or whatever PYTHONPATH put first)
        package_root = str(Path(errands.__file__).resolve().parents[1])
        paths = [str(REPO), package_root, env.get("PYTHONPATH", "")]
        env.update({"FAULT_URL": self.url, "FAULT_LEASE": repr(self.lease), "FAULT_LEDGER": str(self.ledger.path),
                    "PYTHONPATH": os.pathsep.join(p for p in paths if p)})
        env.update(extra)
        return env

    def spawn(self, concurrency: int = 4, processes: int = 1, *, grace: float = 1.0, queues: str = "",
              **extra_env: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "errands", "worker", APP_SPEC, "-c", str(concurrency),
                   "-p", str(processes), "--grace", repr(grace), "--log-level", "warning"]
        if queues:
            command += ["-q", queues]
        log = open(self.root / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115 (kept by the child)
        with log:
            process = subprocess.Popen(command, cwd=REPO, env=self.env(**extra_env), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.processes if p.poll() is None]

    def kill(self, process: subprocess.Popen[bytes], signum: int = signal.SIGKILL) -> None:
        if process.poll() is None:
            process.send_signal(signum)
        process.wait(30)

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return (self.root / f"worker-{self.processes.index(process)}.log").read_text(errors="replace")

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for path in sorted(self.root.glob("worker-*.log")):
            text = path.read_text(errors="replace")
            if text.strip():
                parts.append(f"--- {path.name}\n{text[-tail:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait(30)


def client_app(url: str, lease: float) -> Errands:
    """The producer's app in the test process: the same handler names (never run here)."""
    return _fault_app.register(Errands(url, lease=lease, poll_interval=0.05))


# the store and the invariants ---------------------------------------------------------------------


def scan(app: Errands) -> dict[str, JobInfo]:
    """Every job in the store, paging newest first."""
    found: dict[str, JobInfo] = {}
    before: str | None = None
    while True:
        page = app.list_jobs(limit=10_000, before=before)
        for info in page:
            found[info.id] = info
        if len(page) < 10_000:
            return found
        before = page[-1].id


@dataclass
class Verdict:
    lost: list[str]
    stuck: list[str]
    phantoms: list[str]
    states: Counter[str]
    drained_at: float  # time.monotonic() when every acknowledged job had finished (or the deadline)
    unacknowledged: int = 0  # stored jobs whose enqueue never returned (allowed up to ``ambiguous``)

    def assert_clean(self, context: str = "") -> None:
        assert not self.lost, f"lost {len(self.lost)}: {self.lost[:10]} states={dict(self.states)}\n{context}"
        assert not self.stuck, f"stuck {len(self.stuck)}: {self.stuck[:10]}\n{context}"
        assert not self.phantoms, f"phantoms {len(self.phantoms)}: {self.phantoms[:10]}\n{context}"


def settle_and_check(app: Errands, acked: Mapping[str, str], *, timeout: float = 60.0,
                     ambiguous: int = 0, ignore: tuple[str, ...] = (),
                     give_up: Callable[[], bool] | None = None) -> Verdict:
    """Wait (up to ``timeout``) until every acknowledged job reached its expected end state
    (``acked``: id -> "succeeded" or "failed"), then compare the store with what was
    acknowledged: lost (acknowledged, not at its end state), stuck (running, or not
    finished at all), phantoms (stored but never acknowledged; ``ambiguous`` enqueues that raised
    may each have left one). Jobs named in ``ignore`` (periodic ticks) are no producer's.
    ``give_up()`` true ends the wait early (the run already broke an invariant of its own)."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        jobs = scan(app)
        pending = [i for i, want in acked.items() if i not in jobs or jobs[i].state != want]
        if not pending or time.monotonic() > deadline or (give_up is not None and give_up()):
            break
        time.sleep(0.2)
    drained = time.monotonic()
    # Every acknowledged job is at its end state, or the deadline (far beyond lease + 2 reclaim
    # intervals) passed: what is not finished now is stuck.
    jobs = {i: info for i, info in scan(app).items() if info.name not in ignore}
    states = Counter(str(info.state) for info in jobs.values())
    lost = [i for i, want in acked.items()
            if i not in jobs or (jobs[i].state in TERMINAL_STATES and jobs[i].state != want)]
    stuck = [i for i, info in jobs.items() if info.state not in TERMINAL_STATES]
    unacknowledged = [i for i in jobs if i not in acked]
    phantoms = unacknowledged if len(unacknowledged) > ambiguous else []
    return Verdict(lost, stuck, phantoms, states, drained, len(unacknowledged))
