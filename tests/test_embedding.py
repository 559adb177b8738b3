"""The scheduler inside a web app: examples/asgi/webapp.py through Starlette's TestClient.

The TestClient runs the app (its lifespan, and so the scheduler, and each request) in
an event loop of its own thread; the scheduler runs on the real clock, with tasks that
take milliseconds. Needs the ``asgi`` extra (starlette) and httpx2.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx2")
from starlette.testclient import TestClient  # noqa: E402

from conddsl.runtime import Scheduler  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "asgi" / "webapp.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("conddsl_example_webapp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


webapp = _load_example()


def scheduler() -> Scheduler:
    app = Scheduler({"timeout": "1 minute", "kill_grace": 0.2})

    @app.task(on_startup=True)
    async def warm() -> None:
        pass

    @app.task(permanent=True)
    async def consumer() -> None:
        await asyncio.Event().wait()

    @app.task("false")
    async def report() -> None:
        pass

    @app.task("false")
    async def slow() -> None:
        await asyncio.Event().wait()

    @app.task("false", execution="main")
    def inline() -> None:
        pass

    @app.task(on_shutdown=True)
    async def goodbye() -> None:
        pass

    return app


def wait_for(client: TestClient, name: str, check, limit: float = 5.0) -> dict:
    """Poll GET /tasks until ``check`` holds for the task's entry."""
    deadline = time.monotonic() + limit
    while True:
        (entry,) = [task for task in client.get("/tasks").json() if task["name"] == name]
        if check(entry):
            return entry
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: {entry}")
        time.sleep(0.005)


def test_get_tasks_shows_states_and_last_records():
    app = scheduler()
    with TestClient(webapp.create_app(app)) as client:
        wait_for(client, "consumer", lambda task: task["state"] == "running")
        tasks = {task["name"]: task for task in client.get("/tasks").json()}
        assert sorted(tasks) == ["consumer", "goodbye", "inline", "report", "slow", "warm"]
        assert tasks["warm"]["state"] == "idle"
        assert tasks["warm"]["last"]["action"] == "success"
        assert tasks["consumer"]["last"]["action"] == "run"
        assert tasks["report"] == {"name": "report", "state": "idle", "last": None}
        app.disable("report")
        assert client.get("/tasks").json()[3]["state"] == "disabled"


def test_run_and_terminate_over_http():
    app = scheduler()
    with TestClient(webapp.create_app(app)) as client:
        answer = client.post("/tasks/report/run")
        assert (answer.status_code, answer.json()) == (202, {"task": "report", "requested": "run"})
        wait_for(client, "report", lambda task: (task["last"] or {}).get("action") == "success")
        (run,) = app.history.records("report", actions="run")
        assert run.reason == "manual"

        assert client.post("/tasks/slow/run").status_code == 202
        wait_for(client, "slow", lambda task: task["state"] == "running")
        again = client.post("/tasks/slow/run")
        assert again.status_code == 409 and "is running" in again.json()["error"]
        assert client.post("/tasks/slow/terminate").status_code == 202
        ended = wait_for(client, "slow", lambda task: task["last"]["action"] == "terminate")
        assert ended["last"]["reason"] == "forced" and ended["state"] == "idle"

        unknown = client.post("/tasks/reprot/run")
        assert unknown.status_code == 404
        assert unknown.json() == {"error": "no task named 'reprot'; did you mean 'report'?"}
        inline = client.post("/tasks/inline/terminate")
        assert inline.status_code == 409 and "main execution" in inline.json()["error"]
        assert client.get("/tasks/slow/run").status_code == 405


def test_stopping_the_server_shuts_the_scheduler_down_gracefully():
    app = scheduler()
    with TestClient(webapp.create_app(app)) as client:
        wait_for(client, "consumer", lambda task: task["state"] == "running")
        assert app.state == "running"
    assert app.state == "done"
    ends = {r.task: (r.action, r.reason) for r in app.history.records() if r.action != "run"}
    assert ends == {
        "warm": ("success", None),
        "consumer": ("terminate", "shutdown"),  # a permanent task ends at shutdown
        "goodbye": ("success", None),  # then the on_shutdown tasks run
    }


def test_runs_still_going_after_the_grace_are_forced():
    app = scheduler()
    started = time.monotonic()
    with TestClient(webapp.create_app(app, grace=0.1)) as client:
        client.post("/tasks/slow/run")
        wait_for(client, "slow", lambda task: task["state"] == "running")
    assert time.monotonic() - started < 15  # a hang guard (slow runs for ever)
    (end,) = app.history.records("slow", actions="terminate")
    assert (end.reason, end.message) == ("forced", "shut_down(force=True) was called")
    assert [r.action for r in app.history.records("goodbye")] == ["run", "success"]
