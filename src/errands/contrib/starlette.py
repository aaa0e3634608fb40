"""Starlette and FastAPI: an in-process worker that lives as long as the web app, and the dashboard
mounted beside your routes.

The worker starts once your app has started and stops (gracefully: running jobs get ``grace``
seconds, the rest go back to the queue) before your app's own shutdown runs, so a job never
outlives the resources your lifespan opened::

    from fastapi import FastAPI
    from errands.contrib.starlette import lifespan

    jobs = Errands("postgresql://app@db/app")
    api = FastAPI(lifespan=lifespan(jobs, concurrency=4, inner=my_own_lifespan))
    api.mount("/errands", jobs.dashboard_app(token=os.environ["ERRANDS_DASHBOARD_TOKEN"]))

    @api.post("/signup")
    async def signup(user_id: int) -> dict[str, str]:
        handle = await send_welcome.aperform(user_id)
        return {"job": handle.id}

Starlette is the same: ``Starlette(routes=[..., Mount("/errands", app=jobs.dashboard_app(token=T))],
lifespan=lifespan(jobs))``. Inside a lifespan of your own, ``async with running_worker(jobs):``
does the same job. Each server process (``uvicorn --workers N``) runs its own worker; for heavy
work, run ``errands worker`` processes instead and keep the web app a producer only.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

if TYPE_CHECKING:
    from ..app import Errands
    from ..worker import Worker

__all__ = ["errands_lifespan", "lifespan", "running_worker"]

AppT = TypeVar("AppT")
Lifespan = Callable[[AppT], AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def running_worker(app: Errands, *, concurrency: int = 8, queues: Sequence[str] | None = None,
                         grace: float = 30.0, **options: Any) -> AsyncGenerator[Worker, None]:
    """A worker on background threads of this process while the block runs.

    The backend is opened before the worker starts, so a wrong URL or a missing extra fails the
    app's startup instead of a thread nobody watches. Starting and stopping run on a worker
    thread: the event loop keeps serving while running jobs finish.

    >>> @contextlib.asynccontextmanager
    ... async def my_lifespan(web_app):
    ...     async with open_pools(), running_worker(jobs, concurrency=4):
    ...         yield
    """
    await anyio.to_thread.run_sync(lambda: app.backend)
    start = functools.partial(app.start, concurrency=concurrency, queues=queues, grace=grace, **options)
    worker = await anyio.to_thread.run_sync(start)
    try:
        yield worker
    finally:
        await anyio.to_thread.run_sync(app.stop, grace)


def lifespan(app: Errands, *, concurrency: int = 8, queues: Sequence[str] | None = None, grace: float = 30.0,
             inner: Lifespan[AppT] | None = None, **options: Any) -> Lifespan[AppT]:
    """A lifespan for ``Starlette(lifespan=...)`` / ``FastAPI(lifespan=...)`` that runs a worker
    of ``app`` while the web app runs.

    Args:
        concurrency: jobs run at once, as for ``Errands.start``.
        queues: the queues to work (None: every queue), as for ``Errands.start``.
        grace: how long running jobs get to finish at shutdown (keep it under your server's own
            shutdown timeout).
        inner: your own lifespan. It starts first and stops last, and the state it yields is
            passed on, so jobs may use whatever it opened.
        options: more ``Worker`` options (``grace``).

    >>> api = FastAPI(lifespan=lifespan(jobs, concurrency=4))
    """

    @contextlib.asynccontextmanager
    async def run(web_app: AppT) -> AsyncGenerator[Any, None]:
        async with contextlib.AsyncExitStack() as stack:
            state = await stack.enter_async_context(inner(web_app)) if inner is not None else None
            await stack.enter_async_context(
                running_worker(app, concurrency=concurrency, queues=queues, grace=grace, **options))
            yield state

    return run


errands_lifespan = lifespan  # the name to import beside other libraries' lifespans
