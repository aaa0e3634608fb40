"""One library on one backend, in its own process: ``python -m harness.workload CONFIG_JSON``.

Phases, in this order (each rate is computed only after the jobs were counted):

1. enqueue_one  N single enqueues, workers stopped                          -> jobs/s
2. drain        start the standard worker; wait until the N jobs ran        -> jobs/s overall, steady
3. latency      spaced single enqueues to the idle worker: enqueue -> handler start (p50, p99)
4. bulk         workers stopped; N jobs through the bulk API in batches     -> jobs/s
5. million      SQL backends: bulk-load finished jobs with raw SQL, then drain the N bulk jobs
                with that table                                             -> jobs/s, vs phase 2

Worker memory is sampled over phases 2-3 (and 5). The result JSON is rewritten after every
phase, so a run stopped by its timeout still reports what it measured.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from harness import effect, probes
from harness.procs import MemorySampler, tree_cpu

LATENCY_BASE = 10_000_000  # job numbers of the latency phase
BULK_BASE = 20_000_000  # job numbers of the bulk phase (drained in phase 5)


def load(spec: str) -> type:
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 and count else None


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def drain_rates(times: Sequence[float], started: float) -> dict[str, Any]:
    """Overall: jobs / (last handler start - first); steady: the middle 80% of the jobs over the
    time they took; boot: worker start -> first handler start."""
    times = sorted(times)
    n = len(times)
    if n < 2:
        return {}
    lo, hi = int(0.1 * (n - 1)), int(0.9 * (n - 1))
    return {
        "drain_per_s": rate(n - 1, times[-1] - times[0]),
        "drain_steady_per_s": rate(hi - lo, times[hi] - times[lo]),
        "drain_wall_per_s": rate(n, times[-1] - started),
        "boot_s": round(times[0] - started, 3),
    }


class Run:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.n: int = config["n"]
        self.out: str = config["out"]
        self.result: dict[str, Any] = {"name": config["name"], "status": "running", "n": self.n, "errors": []}
        cls = load(config["adapter"])
        self.adapter = cls(dict(os.environ), config["workdir"], config["log"])
        a = self.adapter
        self.result.update(
            library=a.distribution, version=version(a.distribution), backend=a.backend, label=a.name,
            durability=a.durability, worker=a.worker, bulk_api=a.bulk_api, delivery=a.delivery, raw=a.raw,
            errands_version=version("errands"),
        )

    def save(self) -> None:
        tmp = self.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.result, f, indent=1)
        os.replace(tmp, self.out)

    def phase(self, name: str) -> None:
        self.result["phase"] = name
        self.save()
        print(f"[{self.config['name']}] {name}", flush=True)

    # phases ------------------------------------------------------------------------------------
    def run(self) -> None:
        a = self.adapter
        self.phase("setup")
        a.setup()
        self.result["settings"] = a.settings()
        self.phase("enqueue_one")
        before = probes.snapshot(a.probe or a.backend)
        started = time.perf_counter()
        a.enqueue_each(range(self.n))
        self.result["enqueue_one_per_s"] = rate(self.n, time.perf_counter() - started)
        self.result["enqueue_server"] = probes.per_job(before, probes.snapshot(a.probe or a.backend), self.n)
        if not a.raw:
            self.drain_and_latency()
        if a.has_bulk:
            self.bulk()
        if a.sql and not a.raw and self.config["million"] > 0:
            self.million()
        self.result["status"] = "ok" if not self.result["errors"] else "incomplete"

    def wait_for(self, target: int, timeout: float, cpu_from: int | None = None) -> bool:
        """Poll the effect file until ``target`` jobs ran. With ``cpu_from`` (the count before
        the jobs waited for), also measure the CPU the workers and the server spent on the middle
        80% of them: snapshots when 10% and 90% had run."""
        deadline = time.monotonic() + timeout
        marks = [] if cpu_from is None else [cpu_from + int(0.1 * (target - cpu_from)),
                                             cpu_from + int(0.9 * (target - cpu_from))]
        snaps: list[tuple[int, float, float]] = []
        servers = [int(p) for p in os.environ.get("BENCH_SERVER_PIDS", "").split(",") if p]
        while True:
            done = self.adapter.count_done()
            if marks and target - (cpu_from or 0) >= 100 and done >= marks[0]:
                group = self.adapter.group
                workers = [p.pid for p in group.procs] if group else []
                snaps.append((done, tree_cpu(workers), tree_cpu(servers)))
                marks.pop(0)
                if len(snaps) == 2 and snaps[1][0] > snaps[0][0]:
                    jobs = snaps[1][0] - snaps[0][0]
                    self.cpu = {"worker_cpu_us_per_job": round((snaps[1][1] - snaps[0][1]) / jobs * 1e6, 1),
                                "server_cpu_us_per_job": round((snaps[1][2] - snaps[0][2]) / jobs * 1e6, 1)
                                if servers else None}
            if done >= target:
                break
            if time.monotonic() > deadline:
                return False
            group = self.adapter.group
            if group is not None and not group.alive():
                raise RuntimeError("the worker exited (see the log)")
            time.sleep(0.01)
        return True

    def drain_and_latency(self) -> None:
        a = self.adapter
        self.phase("drain")
        before = probes.snapshot(a.probe or a.backend)
        started = time.time()
        group = a.start_workers()
        sampler = MemorySampler(group)
        sampler.start()
        try:
            self.cpu: dict[str, Any] = {}
            finished = self.wait_for(self.n, self.config["drain_timeout"], cpu_from=0)
            self.result["drain_cpu"] = self.cpu
            self.result["drain_server"] = probes.per_job(before, probes.snapshot(a.probe or a.backend), self.n)
            records = effect.read(a.effect_path)
            self.check(records, range(self.n), "drain", finished)
            self.result.update(drain_rates([t for job, t in records if job < self.n], started))
            self.save()
            if finished:
                self.latency()
        finally:
            a.stop_workers()
            sampler.stop()
            self.result["rss_peak_process_mb"] = round(sampler.peak_process_kb / 1024, 1)
            self.result["rss_peak_total_mb"] = round(sampler.peak_total_kb / 1024, 1)
            self.result["worker_processes"] = sampler.processes

    def check(self, records: list[tuple[int, float]], expected: range, what: str, finished: bool) -> None:
        seen: dict[int, int] = {}
        for job, _t in records:
            if job in expected:
                seen[job] = seen.get(job, 0) + 1
        missing = len(expected) - len(seen)
        duplicates = sum(seen.values()) - len(seen)
        self.result[f"{what}_missing"] = missing
        self.result[f"{what}_duplicates"] = duplicates
        if missing or not finished:
            self.result["errors"].append(f"{what}: {missing} of {len(expected)} jobs did not run in time")

    def latency(self) -> None:
        a = self.adapter
        self.phase("latency")
        samples = self.config["latency_samples"]
        base = a.count_done()
        sent: dict[int, float] = {}
        lost = 0
        for k in range(samples):
            job = LATENCY_BASE + k
            time.sleep(random.uniform(0.01, 0.03))  # the worker is idle again, and not in phase with us
            sent[job] = time.time()
            a.enqueue_one(job)
            if not self.wait_for(base + k + 1 - lost, 5.0):
                lost += 1
        started = {job: t for job, t in reversed(effect.read(a.effect_path))}
        latencies = [(started[job] - t) * 1000 for job, t in sent.items() if job in started]
        self.result["latency_samples"] = len(latencies)
        self.result["latency_lost"] = samples - len(latencies)
        self.result["latency_p50_ms"] = _round(percentile(latencies, 50))
        self.result["latency_p99_ms"] = _round(percentile(latencies, 99))
        self.result["latency_max_ms"] = _round(max(latencies) if latencies else None)

    def bulk(self) -> None:
        a = self.adapter
        self.phase("bulk")
        batch = self.config["batch"]
        jobs = list(range(BULK_BASE, BULK_BASE + self.n))
        started = time.perf_counter()
        for i in range(0, len(jobs), batch):
            a.enqueue_bulk(jobs[i:i + batch])
        self.result["enqueue_bulk_per_s"] = rate(self.n, time.perf_counter() - started)
        self.result["bulk_batch"] = batch

    def million(self) -> None:
        a = self.adapter
        rows = self.config["million"]
        self.phase("million_load")
        if not a.has_bulk:
            a.enqueue_each(range(BULK_BASE, BULK_BASE + self.n))
        started = time.perf_counter()
        a.load_finished(rows)
        self.result["million_rows"] = rows
        self.result["million_load_s"] = round(time.perf_counter() - started, 1)
        self.phase("million_drain")
        base = a.count_done()
        wall = time.time()
        group = a.start_workers()
        sampler = MemorySampler(group)
        sampler.start()
        try:
            self.cpu = {}
            finished = self.wait_for(base + self.n, self.config["drain_timeout"], cpu_from=base)
            self.result["million_drain_cpu"] = self.cpu
            expected = range(BULK_BASE, BULK_BASE + self.n)
            records = effect.read(a.effect_path)
            self.check(records, expected, "million", finished)
            rates = drain_rates([t for job, t in records if job in expected], wall)
            self.result["million_drain_per_s"] = rates.get("drain_per_s")
            self.result["million_drain_steady_per_s"] = rates.get("drain_steady_per_s")
        finally:
            a.stop_workers()
            sampler.stop()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> int:
    config = json.loads(sys.argv[1])
    run = Run(config)
    try:
        run.run()
    except BaseException as exc:  # noqa: BLE001 - whatever stops a run is reported in its row
        run.result["status"] = "failed"
        run.result["errors"].append(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        try:
            run.adapter.stop_workers()
            run.adapter.close()
        except Exception:  # noqa: BLE001 - cleanup must not hide the result
            traceback.print_exc()
        run.result.pop("phase", None)
        run.save()
    return 0 if run.result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
