"""A Starlette app that runs a conddsl scheduler in its lifespan, with a small control API.

    pip install starlette uvicorn
    uvicorn --app-dir examples/asgi webapp:app

- ``GET /tasks``: every task, with its state and its last record;
- ``POST /tasks/{name}/run``: start a run now (202; 404 for an unknown name; 409 if the
  task is running and not multilaunch, or the scheduler is shutting down);
- ``POST /tasks/{name}/terminate``: terminate its runs, reason ``forced`` (202; 404; 409
  for a task in the ``main`` execution).

The scheduler runs as a background task of the server's event loop (``await
app.serve()``), so the endpoints and the scheduler share one thread: control calls take
effect at once. Stopping the server shuts the scheduler down gracefully: nothing new
starts, running runs finish; runs still going after ``grace`` seconds are terminated
(reason ``forced``), then the ``on_shutdown`` tasks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conddsl.history import ACTIONS, History
from conddsl.runtime import ControlError, Scheduler, UnknownTaskError

log = logging.getLogger("webapp")


def create_app(scheduler: Scheduler, *, grace: float = 30.0) -> Starlette:
    """A web app serving ``scheduler`` for as long as the app runs."""

    @contextlib.asynccontextmanager
    async def lifespan(web: Starlette) -> AsyncIterator[None]:
        serving = asyncio.ensure_future(scheduler.serve())
        try:
            yield
        finally:
            scheduler.shut_down()  # graceful: nothing new starts, running runs may finish
            done, _ = await asyncio.wait({serving}, timeout=grace)
            if not done:
                log.warning("runs still going after %s s: terminating them", grace)
                scheduler.shut_down(force=True)
            await serving  # raises SchedulerError if a fatal error stopped the scheduler

    async def list_tasks(request: Request) -> JSONResponse:
        return JSONResponse(
            [
                {
                    "name": name,
                    "state": scheduler.task_state(name),
                    "last": last_record(scheduler.history, name),
                }
                for name in sorted(scheduler.tasks)
            ]
        )

    async def run_task(request: Request) -> JSONResponse:
        return control(scheduler.run_task, request.path_params["name"], "run")

    async def terminate(request: Request) -> JSONResponse:
        return control(scheduler.terminate, request.path_params["name"], "terminate")

    return Starlette(
        routes=[
            Route("/tasks", list_tasks, methods=["GET"]),
            Route("/tasks/{name}/run", run_task, methods=["POST"]),
            Route("/tasks/{name}/terminate", terminate, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def control(action: Any, name: str, what: str) -> JSONResponse:
    """Apply a control request; errors become 404 (unknown task) or 409 (not now)."""
    try:
        action(name)
    except UnknownTaskError as error:  # "no task named 'x'; did you mean 'y'?"
        return JSONResponse({"error": str(error)}, status_code=404)
    except ControlError as error:
        return JSONResponse({"error": str(error)}, status_code=409)
    return JSONResponse({"task": name, "requested": what}, status_code=202)


def last_record(history: History, name: str) -> dict[str, Any] | None:
    """The task's latest record, or None if it has none."""
    at = history.last(name, ACTIONS)
    if at is None:
        return None
    record = history.records(name, since=at)[-1]
    return {
        "action": record.action,
        "at": record.at.isoformat(),
        "reason": record.reason,
        "message": record.message,
        "run_id": record.run_id,
    }


# ---------------------------------------------------------------- the demo's scheduler


def demo_scheduler() -> Scheduler:
    """A few tasks to look at and to press buttons for."""
    scheduler = Scheduler({"timeout": "10 minutes"})

    @scheduler.task(on_startup=True)
    async def warm_cache() -> None:
        await asyncio.sleep(0.1)

    @scheduler.task(permanent=True)
    async def consume_queue() -> None:
        while True:  # a worker for as long as the app runs
            await asyncio.sleep(1)

    @scheduler.task("every 1 minute")
    async def heartbeat() -> None:
        pass

    @scheduler.task("false")  # run by hand only: POST /tasks/rebuild_index/run
    async def rebuild_index() -> None:
        await asyncio.sleep(5)

    return scheduler


app = create_app(demo_scheduler())
