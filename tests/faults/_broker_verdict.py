"""The end-of-run check for a backend that keeps no job records (RabbitMQ alone): the store
can't be scanned, so the handlers' ledger and the broker's own answers stand in for it. A job
meant to succeed has succeeded once a run of it reached its end (the handler returned; a kill
before the ack only makes it run again); a job meant to fail is in the dead-letter queue
(``list_jobs(state="failed")``, which the broker answers); stuck is what is still ready in the
work queue once the wait is over (unacked deliveries of killed workers return there)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping

from errands import Errands

from ._harness import Ledger, Verdict

__all__ = ["settle_from_ledger"]


def settle_from_ledger(app: Errands, ledger: Ledger, acked: Mapping[str, str], *, timeout: float = 60.0) -> Verdict:
    started = time.monotonic()
    deadline = started + timeout
    while True:
        ended = {m.id for m in ledger.marks() if m.event == "end"}
        failed = {info.id for info in app.list_jobs(state="failed", limit=10_000)}
        reached = {i for i, want in acked.items() if (i in ended if want == "succeeded" else i in failed)}
        ready = app.stats()["available"]
        if (len(reached) == len(acked) and ready == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    drained = time.monotonic()
    lost = [i for i in acked if i not in reached]
    # a job meant to succeed that ended in the dead-letter queue was lost too (its runs all died)
    lost += [i for i in failed if acked.get(i) == "succeeded"]
    stuck = [f"{ready} message(s) still ready"] if ready else []
    phantoms = [i for i in failed if i not in acked]
    states = Counter({"succeeded": len(ended & acked.keys()), "failed": len(failed), "ready": ready})
    return Verdict(lost, stuck, phantoms, states, drained, len(phantoms))
