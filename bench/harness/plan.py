"""What runs, in which order, against which store: one entry per (library, backend) row."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Spec:
    name: str  # the run's id: results/<name>.json, --only NAME
    adapter: str  # module:Class
    backend: str  # sqlite | redis | postgres | mysql | rabbitmq
    needs_errands_backend: str = ""  # skip (with a note) when errands lacks this backend module
    # extra BENCH_* variables, {dir} {redis} {pg} {mysql} {amqp}
    env: dict[str, str] = field(default_factory=dict)
    also: tuple[str, ...] = ()  # servers it uses besides its backend's (a store): "postgres"

    @property
    def servers(self) -> tuple[str, ...]:
        return (self.backend, *self.also)


PLAN: tuple[Spec, ...] = (
    # embedded: SQLite files, WAL
    Spec("raw-sqlite", "adapters.raw:RawSqlite", "sqlite"),
    Spec("raw-sqlite-full", "adapters.raw:RawSqliteFull", "sqlite"),
    Spec("errands-sqlite", "adapters.errands:ErrandsSqlite", "sqlite",
         env={"BENCH_ERRANDS_URL": "sqlite:///{dir}/errands.db"}),
    Spec("errands-sqlite-full", "adapters.errands:ErrandsSqliteFull", "sqlite",
         env={"BENCH_ERRANDS_URL": "sqlite:///{dir}/errands.db?synchronous=full"}),
    Spec("litequeue", "adapters.litequeue:LitequeueAdapter", "sqlite"),
    Spec("persist-queue", "adapters.persistqueue:PersistQueueAdapter", "sqlite"),
    Spec("huey-sqlite", "adapters.huey:HueySqlite", "sqlite"),
    # Redis
    Spec("raw-redis", "adapters.raw:RawRedis", "redis"),
    Spec("errands-redis", "adapters.errands:ErrandsRedis", "redis",
         env={"BENCH_ERRANDS_URL": "{redis}"}),
    Spec("rq", "adapters.rq:RqAdapter", "redis"),
    Spec("dramatiq", "adapters.dramatiq:DramatiqAdapter", "redis"),
    Spec("huey-redis", "adapters.huey:HueyRedis", "redis"),
    Spec("celery", "adapters.celery:CeleryAdapter", "redis"),
    Spec("arq", "adapters.arq:ArqAdapter", "redis"),
    Spec("saq", "adapters.saq:SaqRedis", "redis"),
    Spec("taskiq", "adapters.taskiq:TaskiqAdapter", "redis"),
    # PostgreSQL
    Spec("raw-postgres", "adapters.raw:RawPostgres", "postgres"),
    Spec("errands-postgres", "adapters.errands:ErrandsPostgres", "postgres", "postgres",
         env={"BENCH_ERRANDS_URL": "{pg}"}),
    Spec("procrastinate", "adapters.procrastinate:ProcrastinateAdapter", "postgres"),
    Spec("pgqueuer", "adapters.pgqueuer:PgqueuerAdapter", "postgres"),
    Spec("saq-postgres", "adapters.saq:SaqPostgres", "postgres"),
    # MySQL / MariaDB (no peer: errands is reported beside the raw client)
    Spec("raw-mysql", "adapters.raw:RawMysql", "mysql"),
    Spec("errands-mysql", "adapters.errands:ErrandsMysql", "mysql", "mysql",
         env={"BENCH_ERRANDS_URL": "{mysql}"}),
    # RabbitMQ: the shared broker, in a virtual host of the bench's own (no raw row: a publish
    # loop would measure pika, not a job library)
    Spec("errands-rabbitmq", "adapters.errands:ErrandsRabbitmq", "rabbitmq", "amqp",
         env={"BENCH_ERRANDS_URL": "{amqp}?prefix=errands-bench"}),
    Spec("errands-rabbitmq-postgres", "adapters.errands:ErrandsRabbitmqPostgres", "rabbitmq", "amqp",
         env={"BENCH_ERRANDS_URL": "{amqp}?prefix=errands-bench", "BENCH_ERRANDS_STORE": "{pg}"},
         also=("postgres",)),
    Spec("celery-rabbitmq", "adapters.celery:CeleryRabbitmq", "rabbitmq", env={"BENCH_BROKER": "rabbitmq"}),
    Spec("dramatiq-rabbitmq", "adapters.dramatiq:DramatiqRabbitmq", "rabbitmq",
         env={"BENCH_BROKER": "rabbitmq"}),
)


def errands_has(backend_module: str) -> bool:
    try:
        return importlib.util.find_spec(f"errands.backends.{backend_module}") is not None
    except ModuleNotFoundError:
        return False


def select(only: list[str], skip: list[str]) -> tuple[list[Spec], list[dict[str, Any]]]:
    """The runs to do, and notes on the ones left out."""
    chosen, notes = [], []
    for spec in PLAN:
        if only and not any(spec.name == o or spec.backend == o for o in only):
            continue
        if spec.name in skip or spec.backend in skip:
            continue
        if spec.needs_errands_backend and not errands_has(spec.needs_errands_backend):
            notes.append({"name": spec.name, "status": "skipped",
                          "reason": f"errands has no {spec.needs_errands_backend} backend module yet"})
            continue
        chosen.append(spec)
    return chosen, notes


def expand(env: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    return {key: value.format(**values) for key, value in env.items()}


__all__ = ["PLAN", "Spec", "errands_has", "expand", "select"]
