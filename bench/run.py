#!/usr/bin/env python3
"""errands against its peers, side by side, in one run.

    python bench/run.py            # N = 10,000 per library, million-row tests; ~25 minutes
    python bench/run.py --quick    # N = 200, no million-row test; a smoke run of a minute or two

It creates (or reuses) bench/.venv, installs errands from this checkout and the peers from
PyPI, starts its own Redis and PostgreSQL on free loopback ports (and a database of its own
on the shared MariaDB, a virtual host of its own on the shared RabbitMQ), runs every library in
a subprocess with a timeout, stops the servers,
and writes bench/results/ (results.md, results.json, chart.png). See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
VENV = os.path.join(BENCH, ".venv")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
WORK = os.path.join(BENCH, ".work")  # logs and scratch files, not committed
RESULTS = os.path.join(BENCH, "results")
LOCK = os.path.join(BENCH, "requirements.lock")
REQUIREMENTS = os.path.join(BENCH, "requirements.txt")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N=200, 50 latency samples, no million-row test")
    parser.add_argument("-n", type=int, help="jobs per phase (default 10000, --quick 200)")
    parser.add_argument("--latency-samples", type=int, help="spaced single enqueues (default 200, --quick 50)")
    parser.add_argument("--million", type=int, help="finished rows preloaded for the SQL drain test "
                        "(default 1000000, --quick 0 = skip)")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per bulk call (default 1000)")
    parser.add_argument("--only", default="", help="comma-separated run names or backends (sqlite,redis,...)")
    parser.add_argument("--skip", default="", help="comma-separated run names or backends to leave out")
    parser.add_argument("--timeout", type=float, help="seconds one library run may take before it is killed")
    parser.add_argument("--results", default=RESULTS, help="where to write results.md/json and chart.png")
    parser.add_argument("--reinstall", action="store_true", help="reinstall the venv's packages")
    args = parser.parse_args(argv)
    args.n = args.n or (200 if args.quick else 10_000)
    args.latency_samples = args.latency_samples or (50 if args.quick else 200)
    if args.million is None:
        args.million = 0 if args.quick else 1_000_000
    if args.timeout is None:
        args.timeout = 90 + args.n * 0.03 + (300 if args.million else 0)
    return args


# bootstrap: the venv ---------------------------------------------------------------------------------
def _stamp() -> str:
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, os.path.join(ROOT, "pyproject.toml")):
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VENV_PYTHON, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, check=False)


def install() -> None:
    """errands from the checkout must install; a peer that fails is left out with a note."""
    print("installing errands and the peers into bench/.venv ...", flush=True)
    _pip("install", "-q", "-U", "pip", "wheel")
    done = _pip("install", "-q", "-e", f"{ROOT}[all]")
    if done.returncode:
        sys.exit(f"pip install -e '.[all]' failed:\n{done.stderr}")
    with open(REQUIREMENTS) as f:
        lines = [line.split("#")[0].strip() for line in f]
    wanted = [line for line in lines if line]
    failures: dict[str, str] = {}
    if _pip("install", "-q", *wanted).returncode:  # one resolve for all; if that fails, one by one
        for requirement in wanted:
            result = _pip("install", "-q", requirement)
            if result.returncode:
                failures[requirement] = result.stderr.strip().splitlines()[-1:][0] if result.stderr else "failed"
                print(f"  could not install {requirement}: {failures[requirement]}", flush=True)
    os.makedirs(WORK, exist_ok=True)
    with open(os.path.join(WORK, "install-failures.json"), "w") as f:
        json.dump(failures, f, indent=1)
    freeze = _pip("freeze", "--exclude-editable").stdout
    with open(LOCK, "w") as f:
        f.write(f"# Resolved by bench/run.py for Python {platform.python_version()}; "
                "errands itself is installed editable.\n")
        f.write(freeze)
    with open(os.path.join(VENV, ".bench-stamp"), "w") as f:
        f.write(_stamp())


def bootstrap(argv: list[str], reinstall: bool) -> None:
    """Create or reuse bench/.venv, then run this script again inside it."""
    if not os.path.exists(VENV_PYTHON):
        print(f"creating {VENV} with {sys.executable} (Python {platform.python_version()})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        reinstall = True
    stamp_file = os.path.join(VENV, ".bench-stamp")
    current = ""
    if os.path.exists(stamp_file):
        with open(stamp_file) as f:
            current = f.read()
    if reinstall or current != _stamp():
        install()
    env = dict(os.environ, BENCH_IN_VENV="1")
    os.execve(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), *argv], env)


def in_venv() -> bool:
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


# one library run -------------------------------------------------------------------------------------
def run_one(spec, args: argparse.Namespace, servers, scratch: str) -> dict:  # type: ignore[no-untyped-def]
    from harness.plan import expand

    work = tempfile.mkdtemp(prefix=f"{spec.name}-", dir=scratch)
    log = os.path.join(WORK, "logs", f"{spec.name}.log")
    out = os.path.join(work, "result.json")
    env = dict(os.environ)
    env.update(BENCH_EFFECT=os.path.join(work, "effect.bin"), BENCH_DIR=work, BENCH_REDIS_URL=servers["redis"].url,
               BENCH_MYSQL_URL=servers["mysql"].url, BENCH_AMQP_URL=servers["rabbitmq"].url,
               BENCH_N=str(args.n))
    server = {"redis": servers["redis"], "postgres": servers["postgres"]}.get(spec.backend)
    env["BENCH_SERVER_PIDS"] = ",".join(str(pid) for pid in (server.pids() if server else []))
    if "postgres" in spec.servers:
        env["BENCH_PG_DSN"] = servers["postgres"].create_database("bench_" + spec.name.replace("-", "_"))
    if spec.backend == "mysql":
        servers["mysql"].reset()
    env.update(expand(spec.env, {"dir": work, "redis": servers["redis"].url, "pg": env.get("BENCH_PG_DSN", ""),
                                 "mysql": servers["mysql"].url, "amqp": servers["rabbitmq"].url}))
    config = {"name": spec.name, "adapter": spec.adapter, "n": args.n, "latency_samples": args.latency_samples,
              "million": args.million, "batch": args.batch, "out": out, "workdir": work, "log": log,
              "drain_timeout": max(30.0, args.timeout - 60)}
    started = time.monotonic()
    open(log, "w").close()
    with open(log, "ab") as logfile:  # append: the workers write to the same file
        proc = subprocess.Popen([sys.executable, "-m", "harness.workload", json.dumps(config)], cwd=BENCH,
                                env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            proc.wait(args.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:  # the run and every worker it started share its process group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    try:
        with open(out) as f:
            result = json.load(f)
    except (OSError, ValueError):
        result = {"name": spec.name, "status": "failed", "errors": ["no result written (see the log)"]}
    if timed_out:
        result["status"] = "timeout"
        result.setdefault("errors", []).append(
            f"killed after {args.timeout:.0f}s in phase {result.get('phase', '?')}")
    result["seconds"] = round(time.monotonic() - started, 1)
    result["log"] = os.path.relpath(log, ROOT)
    result.setdefault("backend", spec.backend)
    return result


def summary(result: dict) -> str:  # type: ignore[type-arg]
    def fmt(key: str, unit: str = "/s") -> str:
        value = result.get(key)
        return f"{value:,.0f}{unit}" if isinstance(value, (int, float)) and unit == "/s" else (
            f"{value:.2f}{unit}" if isinstance(value, (int, float)) else "-")

    return (f"{result['name']:<26} {result.get('status', '?'):<9} one {fmt('enqueue_one_per_s')}  "
            f"bulk {fmt('enqueue_bulk_per_s')}  drain {fmt('drain_per_s')}  "
            f"p50 {fmt('latency_p50_ms', 'ms')}  1M-drain {fmt('million_drain_per_s')}  "
            f"({result.get('seconds', 0):.0f}s)")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not in_venv():
        bootstrap(argv, args.reinstall)  # does not return
    sys.path.insert(0, BENCH)
    from harness import report
    from harness.plan import select
    from harness.servers import Mysql, Postgres, Rabbitmq, Redis

    specs, notes = select([s for s in args.only.split(",") if s], [s for s in args.skip.split(",") if s])
    os.makedirs(os.path.join(WORK, "logs"), exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    failures_file = os.path.join(WORK, "install-failures.json")
    install_failures = {}
    if os.path.exists(failures_file):
        with open(failures_file) as f:
            install_failures = json.load(f)
    scratch = tempfile.mkdtemp(prefix="errands-bench-")
    servers = {"redis": Redis(), "postgres": Postgres(), "mysql": Mysql(), "rabbitmq": Rabbitmq()}
    backends = {name for spec in specs for name in spec.servers}
    meta = report.machine(args)
    wall = time.monotonic()
    results: list[dict] = []  # type: ignore[type-arg]
    try:
        for kind in ("redis", "postgres", "mysql", "rabbitmq"):
            if kind in backends:
                servers[kind].start(os.path.join(WORK, "logs"))
        meta["servers"] = report.server_info(servers, backends)
        print(f"N={args.n}, {len(specs)} runs, timeout {args.timeout:.0f}s each; logs in {WORK}/logs", flush=True)
        for spec in specs:
            if spec.backend == "mysql" and not servers["mysql"].available:
                notes.append({"name": spec.name, "status": "skipped",
                              "reason": f"no MariaDB/MySQL on 127.0.0.1:3306 ({servers['mysql'].error})"})
                continue
            if spec.backend == "rabbitmq" and not servers["rabbitmq"].available:
                notes.append({"name": spec.name, "status": "skipped",
                              "reason": f"no RabbitMQ on {servers['rabbitmq'].host}:{servers['rabbitmq'].port} "
                                        f"({servers['rabbitmq'].error})"})
                continue
            if spec.backend == "rabbitmq":
                try:  # each library starts on an empty virtual host
                    servers["rabbitmq"].reset()
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    notes.append({"name": spec.name, "status": "skipped",
                                  "reason": f"could not empty the RabbitMQ virtual host: {exc}"})
                    continue
            result = run_one(spec, args, servers, scratch)
            results.append(result)
            print(summary(result), flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    meta["wall_seconds"] = round(time.monotonic() - wall, 1)
    meta["install_failures"] = install_failures
    paths = report.write(args.results, results, notes, meta)
    with open(paths["md"]) as f:
        print("\n" + f.read())
    print("wrote " + ", ".join(os.path.relpath(p, os.getcwd()) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
