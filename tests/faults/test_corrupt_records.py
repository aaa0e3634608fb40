"""Corrupted records (issue #7, "bad input"): jobs enqueued normally, then one field of each
written straight into the store: JSON that doesn't parse, bytes that aren't UTF-8, ``args`` an
object, ``kwargs`` a list, no name, no args, a handler nobody registered, a pickle whose
``__reduce__`` would run a command, a payload far above ``max_payload_bytes``, an unknown state,
``attempts = -1``, ``run_at = 'yesterday'``. A real worker process runs among 200 good jobs.

Each corrupt job ends ``failed`` with a clear error (a state errands doesn't know: at the next
maintenance, with an error naming it), or (the metadata cases) runs as the job it still is; the
worker never crashes or loops, reading the records back never raises, nothing is unpickled, and
every good job succeeds. A case the store's own schema refuses can't happen
there and is counted as such."""

from __future__ import annotations

import json
import os
import pickle
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.faults._harness import Figures, Fleet, Ledger, client_app, record, scaled, scan, settle_and_check
from tests.faults._stores import corrupt

from ._broker_verdict import settle_from_ledger
from .conftest import FAULT_BACKENDS, Target

# RabbitMQ with a store: the records are the store's, the messages only wake a worker
pytestmark = [pytest.mark.slow, pytest.mark.fault_backends(*FAULT_BACKENDS, "amqp+sqlite")]

LEASE = 1.0
HUGE = 5 * 1024 * 1024  # above the 1 MiB max_payload_bytes, below every server's packet limit


class Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def cases(marker: Path) -> dict[str, tuple[str, object, tuple[str, ...]]]:
    """case -> (field, value, end states it may reach)."""
    failed = ("failed",)
    return {
        "truncated JSON": ("args", "[1, 2", failed),
        "not UTF-8": ("args", b"[\x80\xff]", failed),
        "args an object": ("args", '{"n": 1}', failed),
        "kwargs a list": ("kwargs", "[1]", failed),
        "no args": ("args", None, failed),
        "no name": ("name", None, failed),
        "empty name": ("name", "", failed),
        "unknown handler": ("name", "ghost_handler", failed),
        "pickle": ("args", pickle.dumps(Exploit(str(marker))), failed),
        "huge payload": ("args", '["' + "x" * HUGE + '"]', failed),
        "unknown state": ("state", "zombie", failed),
        "attempts -1": ("attempts", -1, ("failed", "succeeded")),
        "run_at junk": ("run_at", "yesterday", ("failed", "succeeded")),
    }


def test_corrupt_records_fail_alone(target: Target, tmp_path: Path) -> None:
    good = scaled(200, 50)
    marker = tmp_path / "unpickled"
    ledger = Ledger(tmp_path / "ledger.log")
    fleet = Fleet(tmp_path, target.url, LEASE, ledger)
    client = client_app(target.url, LEASE)
    try:
        work = client.registry["work"]
        planted, refused = {}, []
        for what, (field, value, ends) in cases(marker).items():
            job_id = work.perform(-1).id
            if corrupt(target.backend, target.url, job_id, field, value):
                planted[job_id] = (what, ends)
            else:
                refused.append(what)
                client.cancel_job(job_id)
        acked = {h.id: "succeeded" for h in work.perform_many([((n,), {}) for n in range(good)])}
        started = time.monotonic()
        worker = fleet.spawn(4)
        verdict = settle_and_check(client, acked, timeout=60)
        # the corrupt ones: wait until each reached an end it may reach
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = scan(client)  # reading every record back never raises
            if all(jobs[i].state in ends for i, (_, ends) in planted.items()):
                break
            time.sleep(0.2)
        ends_seen = {what: str(jobs[i].state) for i, (what, _) in planted.items()}
        # the verdict was taken when the good jobs were done; a corrupt one may have ended since
        stuck = [i for i in verdict.stuck if str(jobs[i].state) not in ("succeeded", "failed", "cancelled")]
        record(Figures(
            "corrupt records", target.backend, jobs=good + len(planted), faults=len(planted), lost=len(verdict.lost),
            stuck=len(stuck), duplicates=0,
            seconds=round(time.monotonic() - started, 1),
            note="; ".join(f"{w}: {s}" for w, s in ends_seen.items()) + (f"; refused by the schema: {', '.join(refused)}"
                                                                        if refused else ""),
        ))
        assert worker.poll() is None, "the worker crashed\n" + fleet.logs()
        assert not marker.exists(), "a pickle from the store was unpickled"
        bad = {what: (str(jobs[i].state), jobs[i].error) for i, (what, ends) in planted.items()
               if jobs[i].state not in ends}
        assert not bad, bad
        for job_id, (what, _) in planted.items():
            if jobs[job_id].state == "failed":
                assert jobs[job_id].error, f"{what}: failed without saying why"
        zombie = next(i for i, (what, _) in planted.items() if what == "unknown state")
        assert "unknown state 'zombie'" in str(jobs[zombie].error), jobs[zombie].error
        assert not verdict.lost, verdict.lost
        assert not stuck, stuck
    finally:
        fleet.close()
        client.close()


def messages(marker: Path) -> dict[str, tuple[str, bytes, tuple[str, ...]]]:
    """RabbitMQ alone, the message is the record: case -> (message id, body, ends it may reach).
    A body that is no job is undecodable (it goes to the dead-letter queue with the reason); a
    job whose fields are junk fails when the worker runs it."""
    failed = ("failed",)

    def job(case: str, **fields: object) -> tuple[str, bytes, tuple[str, ...]]:
        envelope = {"id": f"bad-{case}", "name": "work", "queue": "default", "args": "[-1]", "kwargs": "{}",
                    "attempts": 0, "max_attempts": 1, **fields}
        ends = ("failed", "succeeded") if case == "attempts" else failed
        return f"bad-{case}", json.dumps(envelope).encode(), ends

    raw = {
        "truncated JSON": b'{"id": "bad-truncated", "name": "work", "que',
        "not UTF-8": b"[\x80\xff]",
        "not an object": b"[1, 2]",
        "no name": json.dumps({"id": "bad-noname", "queue": "default"}).encode(),
        "args not a string": json.dumps({"id": "bad-argslist", "name": "work", "queue": "default",
                                         "args": [1]}).encode(),
        "pickle": pickle.dumps(Exploit(str(marker))),
    }
    cases = {what: (f"bad-raw-{n}", body, failed) for n, (what, body) in enumerate(raw.items())}
    cases.update({
        "truncated args": job("args", args="[1, 2"),
        "args an object": job("argsobj", args='{"n": 1}'),
        "kwargs a list": job("kwargs", kwargs="[1]"),
        "unknown handler": job("ghost", name="ghost_handler"),
        "huge payload": job("huge", args='["' + "x" * HUGE + '"]'),
        "attempts -1": job("attempts", attempts=-1),
    })
    return cases


@pytest.mark.fault_backends("amqp")
def test_undecodable_messages_fail_alone(target: Target, tmp_path: Path) -> None:
    """RabbitMQ alone keeps no records to corrupt: the same faults are messages published
    straight into the work queue (another program, a hand-made publish). Each ends in the
    dead-letter queue with its reason (undecodable, or the job's own error); the worker lives,
    nothing is unpickled, every good job runs."""
    import pika

    good = scaled(200, 50)
    marker = tmp_path / "unpickled"
    ledger = Ledger(tmp_path / "ledger.log")
    fleet = Fleet(tmp_path, target.url, LEASE, ledger)
    client = client_app(target.url, LEASE)
    prefix = urllib.parse.parse_qs(urllib.parse.urlsplit(target.url).query)["prefix"][0]
    try:
        work = client.registry["work"]
        acked = {work.perform(0).id: "succeeded"}  # errands declares the work queue first
        planted = messages(marker)
        connection = pika.BlockingConnection(pika.URLParameters(target.url.split("?", 1)[0]))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for message_id, body, _ in planted.values():
                channel.basic_publish("", f"{prefix}.q.default", body,
                                      pika.BasicProperties(delivery_mode=2, message_id=message_id))
        finally:
            connection.close()
        acked.update({h.id: "succeeded" for h in work.perform_many([((n,), {}) for n in range(1, good)])})
        must_fail = {i: "failed" for i, _, ends in planted.values() if ends == ("failed",)}
        started = time.monotonic()
        worker = fleet.spawn(4)
        verdict = settle_from_ledger(client, ledger, {**acked, **must_fail}, timeout=60)
        failed = {info.id: info for info in client.list_jobs(state="failed", limit=10_000)}
        ended = {m.id for m in ledger.marks() if m.event == "end"}
        ends_seen = {what: "failed" if i in failed else "succeeded" if i in ended else "nowhere"
                     for what, (i, _, _) in planted.items()}
        flexible = {i for i, _, ends in planted.values() if ends != ("failed",)}
        phantoms = [i for i in verdict.phantoms if i not in flexible]
        record(Figures(
            "corrupt records", target.backend, jobs=good + len(planted), faults=len(planted),
            lost=len(verdict.lost), stuck=len(verdict.stuck), duplicates=ledger.duplicates(acked),
            seconds=round(time.monotonic() - started, 1),
            note="messages published straight into the work queue: "
                 + "; ".join(f"{w}: {s}" for w, s in ends_seen.items()),
        ))
        assert worker.poll() is None, "the worker crashed\n" + fleet.logs()
        assert not marker.exists(), "a pickled message body was unpickled"
        bad = {what: seen for what, seen in ends_seen.items() if seen not in planted[what][2]}
        assert not bad, bad
        for what, (message_id, _, _) in planted.items():
            if message_id in failed:
                assert failed[message_id].error, f"{what}: failed without saying why"
        for what in ("truncated JSON", "not UTF-8", "not an object", "no name", "args not a string", "pickle"):
            assert "undecodable message" in str(failed[planted[what][0]].error), failed[planted[what][0]].error
        assert not phantoms, phantoms
        assert not verdict.lost, verdict.lost
        assert not verdict.stuck, verdict.stuck
    finally:
        fleet.close()
        client.close()
