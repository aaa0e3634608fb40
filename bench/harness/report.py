"""results.json, results.md (tables, errands' ratios, the targets of issue 6) and chart.png."""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]
BACKENDS = ("sqlite", "redis", "postgres", "mysql", "rabbitmq")
TITLES = {"sqlite": "SQLite (embedded)", "redis": "Redis", "postgres": "PostgreSQL", "mysql": "MySQL / MariaDB",
          "rabbitmq": "RabbitMQ"}
FLAT = 0.8  # the million-row drain "stays flat" when it keeps this share of the empty-table rate


# machine and servers ---------------------------------------------------------------------------------
def machine(args: Any) -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "errands_commit": _git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
        "platform": platform.platform(), "n": args.n, "latency_samples": args.latency_samples,
        "million": args.million, "batch": args.batch, "quick": args.quick,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def _git_commit() -> str:
    """The checkout errands was measured from: commit, plus "+dirty" with uncommitted changes."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return commit + ("+dirty" if dirty else "")


def server_info(servers: dict[str, Any], backends: set[str]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if "redis" in backends:
        info["redis"] = {"version": servers["redis"].version(), "persistence": "--save '' --appendonly no"}
    if "postgres" in backends:
        info["postgres"] = servers["postgres"].settings()
    if "mysql" in backends and servers["mysql"].available:
        info["mysql"] = servers["mysql"].settings()
    if "rabbitmq" in backends and servers["rabbitmq"].available:
        broker = servers["rabbitmq"]
        info["rabbitmq"] = {"version": broker.version(), "vhost": f"{broker.vhost} (deleted at the end)"}
    if "sqlite" in backends:
        import sqlite3

        info["sqlite"] = {"version": sqlite3.sqlite_version}
    return info


# formatting ----------------------------------------------------------------------------------------
def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
        return a / b
    return None


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _label(row: Row) -> str:
    label = row.get("label") or row["name"]
    version = row.get("version")
    return f"{label} {version}" if version and version != "?" else label


def _ok(row: Row) -> bool:
    return row.get("status") in ("ok", "incomplete")


# tables --------------------------------------------------------------------------------------------
def results_table(rows: list[Row]) -> list[str]:
    out = [("| library | enqueue one/s | bulk/s | drain/s | steady/s | boot s | p50 ms | p99 ms "
           "| RSS/proc MB (total) | 1M-row drain/s | drain CPU µs/job: worker + server "
           "| server cost/job: enqueue, drain | dup | status |"),
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        million = row.get("million_drain_per_s")
        million_text = "—"
        if isinstance(million, (int, float)):
            million_text = f"{million:,.0f} ({_x(_ratio(million, row.get('drain_per_s')))})"
        rss = "—"
        if row.get("rss_peak_process_mb"):
            rss = f"{row['rss_peak_process_mb']:.0f} ({row.get('rss_peak_total_mb', 0):.0f})"
        dup = row.get("drain_duplicates")
        status = row.get("status", "?")
        if row.get("errors"):
            status += ": " + "; ".join(row["errors"])[:120]
        out.append(
            f"| {_label(row)} | {_num(row.get('enqueue_one_per_s'))} | {_num(row.get('enqueue_bulk_per_s'))} "
            f"| {_num(row.get('drain_per_s'))} | {_num(row.get('drain_steady_per_s'))} | {_num(row.get('boot_s'), 1)} "
            f"| {_num(row.get('latency_p50_ms'), 2)} | {_num(row.get('latency_p99_ms'), 2)} | {rss} | {million_text} "
            f"| {_cpu(row)} | {_server_cost(row)} | {_num(dup) if dup is not None else '—'} | {status} |")
    return out


def _cpu(row: Row) -> str:
    """CPU µs per job during the drain's middle 80%: the worker processes, and the server's."""
    cpu = row.get("drain_cpu") or {}
    worker, server = cpu.get("worker_cpu_us_per_job"), cpu.get("server_cpu_us_per_job")
    if worker is None:
        return "—"
    return f"{worker:,.0f}" + (f" + {server:,.0f}" if server is not None else "")


def _server_cost(row: Row) -> str:
    """Redis: µs of server time per job; PostgreSQL: WAL bytes per job (enqueue one, drain)."""
    parts = []
    for phase in ("enqueue_server", "drain_server"):
        cost = row.get(phase) or {}
        if "server_us_per_job" in cost:
            parts.append(f"{cost['server_us_per_job']:.1f} µs")
        elif "wal_bytes_per_job" in cost:
            parts.append(f"{cost['wal_bytes_per_job']:,} B WAL")
    return ", ".join(parts) or "—"


METRICS: tuple[tuple[str, str, bool], ...] = (
    ("enqueue_one_per_s", "enqueue one/s", True),
    ("enqueue_bulk_per_s", "bulk/s", True),
    ("drain_per_s", "drain/s", True),
    ("drain_steady_per_s", "drain steady/s", True),
    ("latency_p50_ms", "latency p50 ms", False),
    ("latency_p99_ms", "latency p99 ms", False),
    ("rss_peak_process_mb", "peak RSS/process MB", False),
)
RAW_FOR = {"enqueue_one_per_s": "enqueue_one_per_s", "enqueue_bulk_per_s": "enqueue_bulk_per_s"}


def _best(rows: list[Row], key: str, higher: bool) -> Row | None:
    usable = [r for r in rows if isinstance(r.get(key), (int, float)) and r.get(key)]
    if not usable:
        return None
    return max(usable, key=lambda r: r[key]) if higher else min(usable, key=lambda r: r[key])


def ratio_table(errands: Row, peers: list[Row], raw: Row | None) -> list[str]:
    out = ["| metric | errands | best peer | errands ÷ best peer | raw client | errands ÷ raw |",
           "|---|---:|---|---:|---:|---:|"]
    for key, title, higher in METRICS:
        mine = errands.get(key)
        best = _best(peers, key, higher)
        best_text = f"{_num(best[key], 2 if not higher else 0)} ({best.get('label')})" if best else "—"
        versus = _ratio(mine, best[key]) if best else None
        raw_value = raw.get(RAW_FOR[key]) if raw and key in RAW_FOR else None
        out.append(f"| {title} | {_num(mine, 2 if not higher else 0)} | {best_text} | {_x(versus)} "
                   f"| {_num(raw_value)} | {_x(_ratio(mine, raw_value))} |")
    return out


# targets (issue 6) ------------------------------------------------------------------------------------
Check = tuple[str, Callable[[dict[str, Row]], tuple[float | None, float, str]]]


def _get(rows: dict[str, Row], name: str, key: str) -> Any:
    row = rows.get(name)
    return row.get(key) if row and _ok(row) else None


def _peer_best(rows: dict[str, Row], names: tuple[str, ...], key: str, higher: bool = True) -> tuple[Any, str]:
    values = [(rows[n][key], n) for n in names if n in rows and isinstance(rows[n].get(key), (int, float))]
    if not values:
        return None, "no peer"
    value, name = max(values) if higher else min(values)
    return value, name


def _vs(mine_run: str, key: str, peers: tuple[str, ...], factor: float) -> Callable[[dict[str, Row]], Any]:
    def check(rows: dict[str, Row]) -> tuple[float | None, float, str]:
        best, name = _peer_best(rows, peers, key)
        return _ratio(_get(rows, mine_run, key), best), factor, f"best peer: {name}"
    return check


def _vs_raw(mine_run: str, key: str, raw_run: str, raw_key: str, factor: float) -> Callable[[dict[str, Row]], Any]:
    def check(rows: dict[str, Row]) -> tuple[float | None, float, str]:
        return _ratio(_get(rows, mine_run, key), _get(rows, raw_run, raw_key)), factor, raw_run
    return check


def _at_most(mine_run: str, key: str, limit: float) -> Callable[[dict[str, Row]], Any]:
    def check(rows: dict[str, Row]) -> tuple[float | None, float, str]:
        return _get(rows, mine_run, key), limit, "absolute"
    return check


def _flat(mine_run: str) -> Callable[[dict[str, Row]], Any]:
    def check(rows: dict[str, Row]) -> tuple[float | None, float, str]:
        return _ratio(_get(rows, mine_run, "million_drain_per_s"), _get(rows, mine_run, "drain_per_s")), FLAT, \
            "1M finished rows ÷ empty table"
    return check


EMBEDDED = ("litequeue", "persist-queue", "huey-sqlite")
REDIS_PEERS = ("rq", "dramatiq", "huey-redis", "celery", "arq", "saq", "taskiq")
RABBITMQ_PEERS = ("celery-rabbitmq", "dramatiq-rabbitmq")
TARGETS: dict[str, list[tuple[str, str, Callable[[dict[str, Row]], Any]]]] = {
    "sqlite": [
        ("enqueue one ≥ 1.2× best embedded peer", "min", _vs("errands-sqlite", "enqueue_one_per_s", EMBEDDED, 1.2)),
        ("enqueue one ≥ 50% of raw sqlite3", "min",
         _vs_raw("errands-sqlite", "enqueue_one_per_s", "raw-sqlite", "enqueue_one_per_s", 0.5)),
        ("bulk ≥ 40% of raw one-transaction inserts", "min",
         _vs_raw("errands-sqlite", "enqueue_bulk_per_s", "raw-sqlite", "enqueue_bulk_per_s", 0.4)),
        ("drain ≥ 3× SqliteHuey", "min", _vs("errands-sqlite", "drain_per_s", ("huey-sqlite",), 3.0)),
        ("latency p50 ≤ 5 ms", "max", _at_most("errands-sqlite", "latency_p50_ms", 5.0)),
        ("peak RSS ≤ 60 MB per process (8 threads)", "max", _at_most("errands-sqlite", "rss_peak_process_mb", 60)),
        ("drain with 1M finished rows stays flat", "min", _flat("errands-sqlite")),
    ],
    "redis": [
        ("enqueue one ≥ 1.1× best peer", "min", _vs("errands-redis", "enqueue_one_per_s", REDIS_PEERS, 1.1)),
        ("enqueue one ≥ 85% of raw LPUSH loop", "min",
         _vs_raw("errands-redis", "enqueue_one_per_s", "raw-redis", "enqueue_one_per_s", 0.85)),
        ("bulk ≥ 50% of raw pipelined LPUSH", "min",
         _vs_raw("errands-redis", "enqueue_bulk_per_s", "raw-redis", "enqueue_bulk_per_s", 0.5)),
        ("drain ≥ 2× best peer", "min", _vs("errands-redis", "drain_per_s", REDIS_PEERS, 2.0)),
        ("latency p50 ≤ 0.5 ms", "max", _at_most("errands-redis", "latency_p50_ms", 0.5)),
        ("peak RSS ≤ 60 MB per process (8 threads)", "max", _at_most("errands-redis", "rss_peak_process_mb", 60)),
    ],
    "postgres": [
        ("enqueue one ≥ 1.2× pgqueuer", "min", _vs("errands-postgres", "enqueue_one_per_s", ("pgqueuer",), 1.2)),
        ("enqueue one ≥ 80% of raw INSERT loop", "min",
         _vs_raw("errands-postgres", "enqueue_one_per_s", "raw-postgres", "enqueue_one_per_s", 0.8)),
        ("bulk ≥ 1.2× pgqueuer", "min", _vs("errands-postgres", "enqueue_bulk_per_s", ("pgqueuer",), 1.2)),
        ("drain ≥ 2× pgqueuer", "min", _vs("errands-postgres", "drain_per_s", ("pgqueuer",), 2.0)),
        ("latency p50 ≤ 2 ms", "max", _at_most("errands-postgres", "latency_p50_ms", 2.0)),
        ("peak RSS ≤ 60 MB per process (8 threads)", "max", _at_most("errands-postgres", "rss_peak_process_mb", 60)),
        ("drain with 1M finished rows stays flat", "min", _flat("errands-postgres")),
    ],
    "mysql": [
        ("peak RSS ≤ 60 MB per process (8 threads)", "max", _at_most("errands-mysql", "rss_peak_process_mb", 60)),
        ("drain with 1M finished rows stays flat", "min", _flat("errands-mysql")),
    ],
    "rabbitmq": [
        ("drain ≥ 2× best peer (amqp alone)", "min", _vs("errands-rabbitmq", "drain_per_s", RABBITMQ_PEERS, 2.0)),
        ("drain ≥ 2× best peer (amqp + PostgreSQL store)", "min",
         _vs("errands-rabbitmq-postgres", "drain_per_s", RABBITMQ_PEERS, 2.0)),
        ("peak RSS ≤ 60 MB per process (8 threads)", "max",
         _at_most("errands-rabbitmq", "rss_peak_process_mb", 60)),
        ("drain with 1M finished rows in the store stays flat", "min", _flat("errands-rabbitmq-postgres")),
    ],
}


def evaluate(rows: dict[str, Row]) -> list[Row]:
    verdicts = []
    ran = {row.get("backend") for row in rows.values()}
    for backend, checks in TARGETS.items():
        if backend not in ran:
            continue
        for title, kind, check in checks:
            value, limit, basis = check(rows)
            if value is None:
                verdict = "not measured"
            elif kind == "min":
                verdict = "met" if value >= limit else f"MISSED by {(1 - value / limit) * 100:.0f}%"
            else:
                verdict = "met" if value <= limit else f"MISSED by {(value / limit - 1) * 100:.0f}%"
            verdicts.append({"backend": backend, "target": title, "kind": kind, "value": value, "limit": limit,
                             "basis": basis, "verdict": verdict})
    return verdicts


def targets_table(verdicts: list[Row]) -> list[str]:
    out = ["| backend | target | measured | verdict | compared with |", "|---|---|---:|---|---|"]
    for v in verdicts:
        value = v["value"]
        if value is None:
            shown = "—"
        elif "ms" in v["target"] or "MB" in v["target"]:
            shown = f"{value:.2f}"
        else:
            shown = f"{value:.2f}×"
        out.append(f"| {TITLES[v['backend']]} | {v['target']} | {shown} | {v['verdict']} | {v['basis']} |")
    return out


def durability_table(rows: list[Row]) -> list[str]:
    out = ["| run | backend | durability of an acknowledged enqueue | delivery | worker (2 cores) | bulk API |",
           "|---|---|---|---|---|---|"]
    for row in rows:
        out.append(f"| {row['name']} | {row.get('backend', '')} | {row.get('durability', '')} "
                   f"| {row.get('delivery', '') or '—'} | {row.get('worker', '') or '—'} | {row.get('bulk_api') or '—'} |")
    return out


# the document ----------------------------------------------------------------------------------------
def markdown(rows: list[Row], notes: list[Row], meta: dict[str, Any], verdicts: list[Row]) -> str:
    by_name = {r["name"]: r for r in rows}
    million = f"{meta['million']:,} finished rows" if meta["million"] else "skipped"
    lines = [
        "# errands benchmark results",
        "",
        (f"{meta['date']} · errands {meta.get('errands_commit', '?')} · {meta['cpu']} · {meta['cores']} cores · "
        f"{meta['memory_gib']} GiB · Python {meta['python']}"),
        (f"N = {meta['n']:,} jobs per phase · {meta['latency_samples']} latency samples · bulk batches of "
        f"{meta['batch']:,} · million-row test: "
        f"{million} · "
        f"load average at start {meta['loadavg_start']}, at end {meta.get('loadavg_end')} · "
        f"whole run {meta.get('wall_seconds', 0) / 60:.1f} min"),
        "",
        ("Every job does one thing: append (job number, start time) to a shared file. Rates are computed "
        "after the jobs were counted in that file. drain/s = N ÷ (last handler start − first); steady/s: "
        "the middle 80% of the jobs; boot s: worker start → first job; p50/p99: enqueue call → handler "
        "start on an idle worker; RSS: peak per worker process (peak sum over the worker's process tree); "
        f"1M-row drain: N bulk-enqueued jobs drained with {meta['million']:,} finished jobs in the table "
        "(ratio to the empty-table drain); drain CPU µs/job: CPU time of the worker processes (+ the "
        "server's processes, for the bench's own Redis and PostgreSQL) per job over the drain's middle "
        "80%; server cost/job: Redis µs of command execution per job "
        "(INFO commandstats, Lua included), PostgreSQL WAL bytes per job, for enqueue one and drain "
        "(immune to machine noise); dup: jobs that ran more than once during the drain. RabbitMQ is the "
        "shared broker (in a virtual host of the bench's own): no server cost or CPU is read from it; "
        "errands with a PostgreSQL store shows the store's WAL bytes per job."),
        "",
    ]
    for backend in BACKENDS:
        group = [r for r in rows if r.get("backend") == backend]
        if not group:
            continue
        lines += [f"## {TITLES[backend]}", "", *results_table(group), ""]
        peers = [r for r in group if not r["name"].startswith(("errands", "raw")) and _ok(r)]
        raw = by_name.get(f"raw-{backend}")
        # every errands row of a backend has its table (RabbitMQ: alone, and with a store);
        # the other errands rows of SQLite are variants of the first (synchronous=full)
        mine = [r for r in group if r["name"] == f"errands-{backend}"
                or (backend == "rabbitmq" and r["name"].startswith("errands-"))]
        for errands in mine:
            if _ok(errands):
                title = f"{errands.get('label') or 'errands'} on {TITLES[backend]}"
                lines += [f"{title} against the best peer and the raw client:", "",
                          *ratio_table(errands, peers, raw), ""]
    lines += ["## Targets (issue 6)", "", *targets_table(verdicts), "",
              "## Durability and workers each library ran with", "", *durability_table(rows), ""]
    servers = meta.get("servers", {})
    if servers:
        lines += ["Servers: " + "; ".join(f"{k}: " + ", ".join(f"{a}={b}" for a, b in v.items())
                                           for k, v in servers.items()), ""]
    left_out = list(notes) + [{"name": name, "status": "not installed", "reason": why}
                              for name, why in meta.get("install_failures", {}).items()]
    if left_out:
        lines += ["## Left out", ""] + [f"- {n['name']}: {n['status']} — {n['reason']}" for n in left_out] + [""]
    lines += ["Versions: " + ", ".join(sorted({_label(r) for r in rows if not r.get('raw')})), ""]
    return "\n".join(lines)


def chart(rows: list[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("enqueue_one_per_s", "enqueue one (jobs/s)"), ("enqueue_bulk_per_s", "bulk enqueue (jobs/s)"),
              ("drain_per_s", "drain (jobs/s)"), ("latency_p50_ms", "latency p50 (ms, lower is better)")]
    colours = {"sqlite": "#4c72b0", "redis": "#c44e52", "postgres": "#55a868", "mysql": "#8172b2",
               "rabbitmq": "#dd8452"}
    ordered = [r for b in BACKENDS for r in rows if r.get("backend") == b]
    fig, axes = plt.subplots(1, 4, figsize=(20, max(5, 0.32 * len(ordered) + 1.5)), sharey=True)
    names = [f"{r['name']}" for r in ordered]
    for ax, (key, title) in zip(axes, panels):
        values = [r.get(key) if isinstance(r.get(key), (int, float)) and r.get(key) else 0 for r in ordered]
        bars = ax.barh(range(len(ordered)), values, color=[colours.get(r.get("backend", ""), "grey") for r in ordered])
        for bar, row in zip(bars, ordered):
            if row["name"].startswith("errands"):
                bar.set_edgecolor("black")
                bar.set_linewidth(1.5)
            if row["name"].startswith("raw"):
                bar.set_hatch("//")
                bar.set_alpha(0.6)
        for bar, value in zip(bars, values):
            if value:
                ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:,.0f}" if value >= 10
                        else f" {value:.2f}", va="center", fontsize=7)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0].set_yticks(range(len(ordered)))
    axes[0].set_yticklabels(names)
    axes[0].invert_yaxis()
    fig.suptitle("errands vs peers (bold outline: errands; hatched: raw client loop; log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(folder: str, rows: list[Row], notes: list[Row], meta: dict[str, Any]) -> dict[str, str]:
    by_name = {r["name"]: r for r in rows}
    verdicts = evaluate(by_name)
    meta["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    paths = {"json": os.path.join(folder, "results.json"), "md": os.path.join(folder, "results.md"),
             "png": os.path.join(folder, "chart.png")}
    with open(paths["json"], "w") as f:
        json.dump({"meta": meta, "runs": rows, "left_out": notes, "targets": verdicts}, f, indent=1)
    with open(paths["md"], "w") as f:
        f.write(markdown(rows, notes, meta, verdicts))
    try:
        chart(rows, paths["png"])
    except Exception as exc:  # noqa: BLE001 - a chart is a nicety: the tables are the result
        print(f"chart not drawn: {exc}")
        paths.pop("png")
    return paths


def rewrite(json_path: str) -> dict[str, str]:
    """Render results.md and chart.png again from a results.json (same data, e.g. after a
    change to the report's layout): ``python -m harness.report bench/results/results.json``."""
    with open(json_path) as f:
        data = json.load(f)
    folder = os.path.dirname(os.path.abspath(json_path))
    meta, rows, notes = data["meta"], data["runs"], data["left_out"]
    verdicts = evaluate({r["name"]: r for r in rows})
    paths = {"md": os.path.join(folder, "results.md"), "png": os.path.join(folder, "chart.png")}
    with open(paths["md"], "w") as f:
        f.write(markdown(rows, notes, meta, verdicts))
    chart(rows, paths["png"])
    return paths


if __name__ == "__main__":
    import sys

    print(rewrite(sys.argv[1]))
