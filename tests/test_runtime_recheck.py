"""``recheck(phrase)``: a custom condition that may have changed is looked at again at once;
``recheck=`` is read like every other duration setting."""

from __future__ import annotations

import threading

import pytest
from runtime_helpers.scenario import at, play, until, virtual

from conddsl.custom import ConditionRegistry
from conddsl.runtime import Scheduler
from conddsl.runtime.config import ConfigError


def _flagged(registry_owner: Scheduler) -> dict[str, bool]:
    state = {"up": False}
    registry_owner.cond("flag is up", lambda: state["up"])  # default recheck: 1 minute
    return state


def test_recheck_starts_a_task_at_once_not_at_its_recheck_interval():
    app = virtual(shut_cond="time of day after 07:30", threshold=0.02)
    state = _flagged(app)
    app.task("flag is up", name="work", execution="main")(lambda: state.update(up=False))

    async def flip(app: Scheduler) -> None:
        await until(app, "07:00:30")
        state["up"] = True
        calling = threading.Thread(target=app.recheck, args=("flag  is up",))  # any thread
        calling.start()
        calling.join()

    play(app, flip)
    (started,) = app.history.records("work", actions="run")
    assert started.at == at("07:00:30")  # not 07:01, its next minute's recheck


def test_registry_recheck_reaches_the_serving_scheduler():
    app = virtual(shut_cond="time of day after 07:30", threshold=0.02)
    registry = app.registry  # a ConditionRegistry, told of the serving scheduler
    state = {"up": False}
    registry.register("flag is up", lambda: state["up"])
    app.task("flag is up", name="work", execution="main")(lambda: state.update(up=False))

    async def flip(app: Scheduler) -> None:
        await until(app, "07:00:30")
        state["up"] = True
        registry.recheck("flag is up")

    play(app, flip)
    (started,) = app.history.records("work", actions="run")
    assert started.at == at("07:00:30")


def test_recheck_of_an_unknown_phrase_suggests_the_registered_one():
    app = virtual()
    _flagged(app)
    with pytest.raises(ValueError, match="no custom condition 'flag is upp'.*'flag is up'"):
        app.recheck("flag is upp")


@pytest.mark.parametrize(
    "value, message",
    [
        ("5 parsecs", "recheck '5 parsecs' is not a duration"),
        ("10 minutes and then some", "recheck '10 minutes and then some' is not a duration"),
        ("0 seconds", "recheck must be longer than zero"),
        (True, "recheck must be seconds as a number, or text such as '10 minutes'"),
        (-1, "recheck must be longer than zero"),
        (1e20, "recheck is too long"),
    ],
)
def test_recheck_is_read_like_every_duration_setting(value, message):
    registry = ConditionRegistry()
    with pytest.raises(ConfigError) as info:
        registry.register("flag is up", lambda: True, recheck=value)
    assert str(info.value).startswith(message)


def test_recheck_takes_the_duration_forms_of_the_settings():
    registry = ConditionRegistry()
    assert registry.register("a", lambda: True, recheck="1h30m").recheck.total_seconds() == 5400
    assert registry.register("b", lambda: True, recheck=2.5).recheck.total_seconds() == 2.5
