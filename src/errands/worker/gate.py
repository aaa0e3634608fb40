"""Between claim and run: which claimed jobs may start now.

A workflow step whose dependencies have not all finished, or a job over a global concurrency or
rate limit, is given back scheduled a moment later without counting an attempt (a snooze): it
waits, it never fails for it. A step whose dependency failed under ``on_failure="fail"`` fails
here. Everything else runs, a workflow step handed what it was fed (the previous result, a
group's summary). Jobs outside workflows and limits pass through without a round trip.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._states import JobState
from ..backends.base import Backend, Claim, Outcome, SlotRequest
from ..encryption import open_arguments
from ..jobs import JobInfo
from ..limits import Limits
from ..serialization import decode_meta
from ..workflows import WAIT_POLL, is_finished, linked_ids, links_of, summary

if TYPE_CHECKING:
    from ..app import Errands

__all__ = ["Admitted", "Gate"]

logger = logging.getLogger("errands.worker")

SLOT_RETRY = (0.25, 1.0)  # seconds: a job over a concurrency limit looks again after this long


@dataclass
class Admitted:
    """The gate's answer for one batch of claims."""

    run: list[tuple[Claim, list[Any]]] = field(default_factory=list)  # (claim, arguments to put first)
    failed: list[Outcome] = field(default_factory=list)
    followers: dict[str, list[str]] = field(default_factory=dict)  # job id -> jobs to wake when it ends


class Gate:
    def __init__(self, app: Errands, backend: Backend, lease: float) -> None:
        self.app, self.backend, self.lease = app, backend, lease
        self._held: dict[str, list[SlotRequest]] = {}  # job id -> slots it holds while running
        self._lock = threading.Lock()

    # admission -------------------------------------------------------------------------------
    def admit(self, claims: Sequence[Claim]) -> Admitted:
        answer = Admitted()
        links = {c.id: found for c in claims if (found := _links(c)) is not None}
        for job_id, found in links.items():
            if then := linked_ids(found, "then"):
                answer.followers[job_id] = then
        waits = {job_id: after for job_id, found in links.items() if (after := linked_ids(found, "after"))}
        waiting: list[Claim] = []
        ready: list[tuple[Claim, list[Any]]] = []
        dependencies = self._dependencies(waits)
        for claim in claims:
            after = waits.get(claim.id, [])
            if not after:
                ready.append((claim, []))
                continue
            infos = [dependencies.get(i) for i in after]
            if not all(is_finished(info) for info in infos):
                waiting.append(claim)
                continue
            verdict = _verdict(claim, links[claim.id], after, infos)
            if isinstance(verdict, Outcome):
                answer.failed.append(verdict)
            else:
                ready.append((claim, verdict))
        if waiting:
            self._snooze(waiting, WAIT_POLL)
            self._recheck(waiting, waits)
        answer.run = self._within_limits(ready)
        return answer

    def _recheck(self, waiting: list[Claim], waits: dict[str, list[str]]) -> None:
        """A dependency that finished while its step was claimed woke a running job, which does
        nothing; now that the step is scheduled again, look once more and wake it ourselves."""
        dependencies = self._dependencies({c.id: waits[c.id] for c in waiting})
        ready = [c.id for c in waiting if all(is_finished(dependencies.get(i)) for i in waits[c.id])]
        if ready:
            self.backend.wake(ready)

    def _dependencies(self, waits: dict[str, list[str]]) -> dict[str, JobInfo]:
        wanted = {i for after in waits.values() for i in after}
        if not wanted:
            return {}
        records = self.backend.get_many(sorted(wanted))
        return {record.id: _info(record, self.app) for record in records}

    def _within_limits(self, ready: list[tuple[Claim, list[Any]]]) -> list[tuple[Claim, list[Any]]]:
        scoped = [(claim, prefix, self._scopes(claim, prefix)) for claim, prefix in ready]
        limited = [entry for entry in scoped if entry[2]]
        if not limited:
            return ready
        admitted = [(claim, prefix) for claim, prefix, scopes in scoped if not scopes]
        requests = [SlotRequest(key, _holder(claim), limits.concurrency)
                    for claim, _, scopes in limited for key, limits in scopes if limits.concurrency]
        granted = dict(zip(((r.key, r.holder) for r in requests),
                           self.backend.acquire_slots(requests, self.lease) if requests else []))
        over: dict[float, list[Claim]] = {}
        for claim, prefix, scopes in limited:
            mine = [SlotRequest(key, _holder(claim), limits.concurrency)
                    for key, limits in scopes if limits.concurrency]
            if not all(granted[(r.key, r.holder)] for r in mine):
                self._give_back(r for r in mine if granted[(r.key, r.holder)])
                over.setdefault(random.uniform(*SLOT_RETRY), []).append(claim)
                continue
            wait = self._rate_wait(scopes)
            if wait > 0:
                self._give_back(mine)
                over.setdefault(wait + random.uniform(0.0, 0.1), []).append(claim)
                continue
            if mine:
                with self._lock:
                    self._held[claim.id] = mine
            admitted.append((claim, prefix))
        for delay, claims in over.items():
            self._snooze(claims, delay)
        return admitted

    def _scopes(self, claim: Claim, prefix: list[Any]) -> list[tuple[str, Limits]]:
        """The limits ``claim`` runs under, each with the key it counts against."""
        scopes: list[tuple[str, Limits]] = []
        handler = self.app.registry.get(claim.name)
        limits = handler.options.limits if handler is not None else None
        if limits is not None:
            key = f"job:{claim.name}"
            partition = self._partition(claim, prefix, limits) if limits.key is not None else None
            if partition is not None:  # limit_key answered None: the job-wide limit
                key = f"{key}:{partition}"
            scopes.append((key, limits))
        queue_limits = self.app.queue_limits.get(claim.queue)
        if queue_limits is not None:
            scopes.append((f"queue:{claim.queue}", queue_limits))
        return scopes

    def _partition(self, claim: Claim, prefix: list[Any], limits: Limits) -> str | None:
        try:
            args, kwargs = open_arguments(claim.args, claim.kwargs, self.app.settings)
            return limits.partition([*prefix, *args], kwargs)
        except Exception as exc:  # the handler would fail on these arguments too: count them together
            logger.warning("limit_key of job %s (%s) raised %s; limiting it with the '?' partition",
                           claim.id, claim.name, exc)
            return "?"

    def _rate_wait(self, scopes: list[tuple[str, Limits]]) -> float:
        for key, limits in scopes:
            if limits.rate is not None:
                wait = self.backend.take_rate(key, limits.rate.limit, limits.rate.period)
                if wait > 0:
                    return wait
        return 0.0

    def _snooze(self, claims: list[Claim], delay: float) -> None:
        if claims:
            self.backend.release(claims, delay=delay)

    def _give_back(self, requests: Any) -> None:
        pairs = [(r.key, r.holder) for r in requests]
        if pairs:
            self.backend.release_slots(pairs)

    # while running ---------------------------------------------------------------------------
    def renew(self) -> None:
        """Heartbeat: keep the slots of running jobs from lapsing."""
        with self._lock:
            held = {job_id: list(requests) for job_id, requests in self._held.items()}
        requests = [r for job_requests in held.values() for r in job_requests]
        if not requests:
            return
        lost = [r for r, ok in zip(requests, self.backend.acquire_slots(requests, self.lease)) if not ok]
        for request in lost:
            logger.warning("slot %s of a running job lapsed and was taken; the job runs on", request.key)
        with self._lock:  # a job that finished during the round trip may have had its slot renewed
            ended = [r for job_id, job_requests in held.items() if job_id not in self._held for r in job_requests]
        self._give_back(ended)

    def finished(self, job_id: str) -> None:
        with self._lock:
            held = self._held.pop(job_id, None)
        if held:
            try:
                self._give_back(held)
            except Exception as exc:  # the slot lapses after one lease
                logger.warning("could not give back the limit slots of job %s: %s", job_id, exc)


def _links(claim: Claim) -> dict[str, Any] | None:
    if not claim.meta or '"workflow"' not in claim.meta:
        return None
    try:
        return links_of(decode_meta(claim.meta))
    except Exception:  # a corrupt meta fails in the executor, with its error
        return None


def _holder(claim: Claim) -> str:
    return f"{claim.id}:{claim.token}"


def _info(record: Any, app: Errands) -> JobInfo:
    try:
        return JobInfo.from_record(record, app.settings)  # decrypted: a sealed result is fed in clear
    except Exception:
        return JobInfo.from_record(record)


def _verdict(claim: Claim, links: dict[str, Any], after: list[str],
             infos: list[JobInfo | None]) -> Outcome | list[Any]:
    """A failed Outcome for a step whose dependency failed under ``on_failure="fail"``, else the
    arguments it is fed."""
    if links.get("on_failure", "fail") == "fail":
        for job_id, info in zip(after, infos):
            if info is None or info.state != JobState.SUCCEEDED:
                state = "missing (purged?)" if info is None else str(getattr(info.state, "value", info.state))
                name = f" ({info.name})" if info is not None else ""
                return Outcome(claim.id, claim.token, JobState.FAILED,
                               error=f"DependencyFailed: job {job_id}{name} it waits on ended {state}")
    feed = links.get("feed")
    if feed == "result":
        first = infos[0]
        return [first.result if first is not None and first.state == JobState.SUCCEEDED else None]
    if feed == "summary":
        return [summary(after, {info.id: info for info in infos if info is not None})]
    return []
