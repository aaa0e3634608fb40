"""Run one claimed job in the calling thread: what ``errands.testing.drain`` and ``eager`` use.

It is the worker's executor without its threads, kept faithful on purpose: the same lookup and
argument decoding, the same ``current_job()`` context, the same outcome rules (``retry.decide``,
the result through the JSON codec), the same events and log line (``Reporter``), and the outcome
settled by the caller with the claim's token. A test that passes here fails where production
would fail.

What it can't do inline: enforce a handler's ``timeout`` (nothing can safely interrupt the
caller's own thread) or deliver a cancel request while the handler runs.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._states import JobState
from .backends.base import Claim, Outcome
from .context import JobContext, _current
from .errors import SerializationError, UnknownJob
from .middleware import around_run
from .retry import decide
from .encryption import open_arguments, seal_result
from .serialization import decode_meta, encode_value
from .worker.executor import format_error

if TYPE_CHECKING:
    from .app import Errands
    from .worker.reporting import Reporter

__all__ = ["run_claim"]


def run_claim(app: Errands, claim: Claim, reporter: Reporter) -> tuple[Outcome, BaseException | None]:
    """Run ``claim`` here and now; return its outcome and the exception the attempt raised (None
    when it succeeded). ``KeyboardInterrupt`` is not the job's: it propagates, and the caller
    puts the claim back."""
    reporter.started([claim])
    try:
        job = app.handler(claim.name)
        args, kwargs = open_arguments(claim.args, claim.kwargs, app.settings)
        meta = decode_meta(claim.meta)
    except (UnknownJob, SerializationError) as exc:  # as the executor: such a job can never run
        outcome = Outcome(claim.id, claim.token, JobState.FAILED, error=f"{type(exc).__name__}: {exc}")
        reporter.finished(claim, outcome)
        return outcome, exc
    context = JobContext(claim.id, claim.name, claim.queue, claim.attempts, claim.max_attempts, meta)
    error: BaseException | None = None
    try:
        with around_run(app.middleware, context):
            result = _call(job.func, job.is_async, args, kwargs, context)
        encoded = seal_result(encode_value(result, "result"), claim.args, app.settings)
        outcome = Outcome(claim.id, claim.token, JobState.SUCCEEDED, result=encoded)
    except (Exception, SystemExit) as exc:  # noqa: BLE001  # any error fails the attempt; sys.exit() too
        error = exc
        text = format_error(exc, app.settings.max_error_bytes)
        outcome = decide(claim, exc, text, job.options.backoff)
    reporter.finished(claim, outcome)
    return outcome, error


def _call(func: Callable[..., Any], is_async: bool, args: list[Any], kwargs: dict[str, Any],
          context: JobContext) -> Any:
    token = _current.set(context)
    try:
        if not is_async:
            return func(*args, **kwargs)
        return _run_coroutine(lambda: func(*args, **kwargs))
    finally:
        _current.reset(token)


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run an async handler to its end from sync code, whether or not this thread already runs
    an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    # called from inside a running loop (an async test): asyncio.run can't nest, so the handler
    # gets a loop of its own on a helper thread, seeing this thread's context (current_job())
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1, thread_name_prefix="errands-inline") as pool:
        return pool.submit(context.run, lambda: asyncio.run(make())).result()
