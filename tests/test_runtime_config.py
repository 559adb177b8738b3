"""Scheduler settings and task registration: what is accepted, what is refused and how it reads."""

from __future__ import annotations

import math
import warnings
from datetime import timedelta

import pytest

from conddsl.history import MemoryHistory, SQLiteHistory
from conddsl.runtime import ConfigError, Scheduler, SchedulerConfig, TerminationWarning
from conddsl.settings import read_timeout as parse_timeout

TIMEOUTS = [
    (30, timedelta(seconds=30)),
    (0.25, timedelta(milliseconds=250)),
    ("1 hour", timedelta(hours=1)),
    ("30 min", timedelta(minutes=30)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1d, 5h, 10m, 20s", timedelta(days=1, hours=5, minutes=10, seconds=20)),
    ("0.1 sec", timedelta(milliseconds=100)),
    ("01:30:00", timedelta(hours=1, minutes=30)),
    (timedelta(minutes=5), timedelta(minutes=5)),
    ("never", None),
    (" Never ", None),
]


@pytest.mark.parametrize("value, expected", TIMEOUTS, ids=[repr(v) for v, _ in TIMEOUTS])
def test_timeout_values(value, expected):
    assert parse_timeout(value) == expected


BAD_TIMEOUTS = [
    (0, "longer than zero: 0 would terminate every run as soon as it starts; write 'never'"),
    ("0 seconds", "must be longer than zero: 0 would terminate every run"),
    (timedelta(0), "must be longer than zero: 0 would terminate every run"),
    (-5, "must be longer than zero: write 'never' for no timeout"),
    (1e20, "timeout is too long"),  # was an OverflowError from timedelta
    ("30", "needs a unit: write '30 seconds'"),
    ("soon", "is not a duration"),
    ("1 hour and a bit", "is not a duration"),
    ("5.", "needs a unit"),
    ("5 minutes # five", "is not a duration"),  # a comment in a condition, not here
    ("99999999999 days", "is too long a duration: durations go up to 999,999,999 days"),
    (True, "not True"),
    (math.nan, "finite"),
    ([1], "not list"),
]


@pytest.mark.parametrize("value, message", BAD_TIMEOUTS, ids=[repr(v) for v, _ in BAD_TIMEOUTS])
def test_bad_timeouts_are_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_timeout(value)


def test_defaults():
    config = SchedulerConfig.load(None)
    assert config.timeout == timedelta(minutes=30)
    assert config.kill_grace == timedelta(seconds=5)
    assert config.instant_shutdown is False and config.silence_cond_check is False
    assert config.execution == "thread"
    assert isinstance(config.history, MemoryHistory)
    assert SchedulerConfig.load(None).history is not config.history  # one store per scheduler


@pytest.mark.parametrize(
    "config, message",
    [
        ({"timout": 60}, "unknown config key 'timout'; did you mean 'timeout'?"),
        ({"instant_shutdwn": True}, "did you mean 'instant_shutdown'?"),
        ({"cycle_sleep": 0.1}, "unknown config key 'cycle_sleep'; known keys: env, execution,"),
        ({"timeout": 0}, "timeout must be longer than zero: 0 would terminate every run"),
        ({"instant_shutdown": "yes"}, "'instant_shutdown': Input should be a valid boolean"),
        ({"execution": "async"}, "'execution': Input should be 'main', 'thread' or 'process'"),
        ({"kill_grace": "never"}, "kill_grace 'never' is not a duration"),
        ({"max_process_count": 0}, "'max_process_count': Input should be greater than or equal"),
    ],
)
def test_bad_config_is_refused_with_a_readable_message(config, message):
    with pytest.raises(ConfigError) as info:
        Scheduler(config)
    assert message in str(info.value)


def test_config_history_path_opens_a_sqlite_history(tmp_path):
    app = Scheduler({"history": str(tmp_path / "runs.db")})
    assert isinstance(app.history, SQLiteHistory)
    app.history.close()


def test_a_kill_grace_of_zero_is_allowed():
    assert SchedulerConfig.load({"kill_grace": 0}).kill_grace == timedelta(0)


def plain() -> None:
    pass


async def coroutine() -> None:
    pass


def test_default_execution():
    app = Scheduler()
    app.task("false", name="plain")(plain)
    app.task("false", name="coroutine")(coroutine)
    assert app.tasks["plain"].execution == "thread"
    assert app.tasks["coroutine"].execution == "async"
    app = Scheduler({"execution": "process"})
    app.task("false")(plain)
    app.task("false")(coroutine)
    assert app.tasks["plain"].execution == "process"
    assert app.tasks["coroutine"].execution == "async"


def test_task_timeouts_inherit_or_override_the_session():
    app = Scheduler({"timeout": "1 hour"})
    app.task("false", name="inherits")(plain)
    app.task("false", name="own", timeout="5 min")(plain)
    app.task("false", name="never", timeout="never")(plain)
    assert app.tasks["inherits"].timeout == timedelta(hours=1)
    assert app.tasks["own"].timeout == timedelta(minutes=5)
    assert app.tasks["never"].timeout is None


@pytest.mark.parametrize(
    "options, message",
    [
        ({"timeout": 0}, "timeout of task 'plain' must be longer than zero"),
        ({"execution": "async"}, "async execution needs an 'async def' function"),
        ({"execution": "fork"}, "execution must be one of main, async, thread, process"),
        ({"name": ""}, "a task name must be a non-empty string"),
    ],
)
def test_bad_task_options(options, message):
    with pytest.raises(ConfigError, match=message):
        Scheduler().task("false", **options)(plain)


def test_bad_start_conditions():
    with pytest.raises(ValueError, match="E10"):
        Scheduler().task("time of dya after 10:00")(plain)
    with pytest.raises(TypeError, match="must be condition text or a Condition"):
        Scheduler().task(42)(plain)


@pytest.mark.parametrize(
    "text",
    [
        "daily",
        "every 1 minute",
        "cron 0 18 * * *",
        "has succeeded",
        "running for more than 1 minute",
        "time of day after 18:00 & daily",
    ],
)
def test_shut_cond_about_its_own_task_is_refused(text):
    """The shut_cond belongs to no task: it used to raise MissingTaskError once running."""
    with pytest.raises(ConfigError, match="is about the runs of the task it belongs to"):
        Scheduler({"shut_cond": text})
    Scheduler({"shut_cond": "task 'a' has succeeded today | time of day after 18:00"})


def test_duplicate_task_names_are_refused():
    app = Scheduler()
    app.task("false")(plain)
    with pytest.raises(ConfigError, match="a task named 'plain' already exists"):
        app.task("true", name="plain")(coroutine)


def test_a_lambda_needs_a_name():
    with pytest.raises(ConfigError, match="give the task a name="):
        Scheduler().task("false")(lambda: None)


def test_main_tasks_warn_that_they_cannot_be_terminated():
    app = Scheduler()
    with pytest.warns(TerminationWarning, match="cannot be terminated") as caught:
        app.task("false", name="timed", execution="main", timeout="1 hour")(plain)
    assert caught[0].filename == __file__  # points at the registration
    with pytest.warns(TerminationWarning):
        app.task("false", name="ended", execution="main", end_cond="true")(plain)
    assert app.tasks["timed"].timeout is None and app.tasks["ended"].end is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.task("false", name="quiet", execution="main")(plain)  # the session timeout is fine


def test_command_task_argv_is_a_list_of_strings():
    app = Scheduler()
    with pytest.raises(ConfigError, match="no shell is involved"):
        app.command_task("false", argv="tar czf x.tgz /data")
    with pytest.raises(ConfigError, match="non-empty list"):
        app.command_task("false", argv=[])
    task = app.command_task("false", argv=["/usr/bin/tar", "czf", "x.tgz", "/data"], timeout=60)
    assert task.name == "tar" and task.timeout == timedelta(minutes=1)


def test_unknown_timezones_are_named_with_a_hint():
    with pytest.raises(ConfigError, match="unknown timezone 'Europe/Helsinky'; did you mean"):
        Scheduler({"timezone": "Europe/Helsinky"})


def test_shell_commands_are_one_string():
    app = Scheduler()
    task = app.command_task("false", argv="find tmp -mtime +7 -delete", shell=True)
    assert task.name == "find" and task.argv == ("/bin/sh", "-c", "find tmp -mtime +7 -delete")
    with pytest.raises(ConfigError, match="one non-empty string"):
        app.command_task("false", argv=["ls"], shell=True)


READS = [
    # (condition, tasks read, own history, cycles)
    ("time of day between 08:00 and 18:00", set(), False, False),
    ("daily after 22:00", set(), True, False),
    ("every 10 minutes | cron 0 * * * *", set(), True, False),
    ("after task 'extract' succeeded", {"extract"}, True, False),
    ("task 'a' has failed today & task 'b' is running", {"a", "b"}, False, False),
    ("has succeeded in past 1 hour", set(), True, False),
    ("~ (scheduler has more than 3 cycles)", set(), False, True),
    ("scheduler has run over 1 hour & env 'prod'", set(), False, False),
    ("office & workday", {"w"}, False, False),
]


@pytest.mark.parametrize("text, tasks, own, cycles", READS, ids=[r[0] for r in READS])
def test_what_a_condition_reads(text, tasks, own, cycles):
    from conddsl.compile import compile_condition
    from conddsl.parse import parse
    from conddsl.runtime.conditions import reads

    rules = {"office": parse("time of day after 08:00"), "workday": parse("task 'w' is running")}
    found = reads(compile_condition(text, rules=rules))
    assert (set(found.tasks), found.own, found.cycles, found.any_task) == (
        tasks,
        own,
        cycles,
        False,
    )


def test_conditions_without_an_ast_may_read_anything():
    from conddsl.runtime.conditions import reads

    class Opaque:
        def is_true(self, at, **context):
            return True

        def next_change(self, after, **context):
            return None

    found = reads(Opaque())
    assert found.any_task and found.cycles


# ---------------------------------------------------------------- plain values, no pydantic

PLAIN_CONFIGS = [
    None,
    {},
    {"timezone": "UTC", "timeout": "never"},
    {"timeout": 90, "kill_grace": 0, "instant_shutdown": True, "silence_cond_check": False},
    {"timeout": "1h30m", "kill_grace": "2 seconds", "max_process_count": 3},
    {"timeout": timedelta(minutes=5), "kill_grace": 0.5, "execution": "process"},
    {"timezone": None, "env": "prod", "params": {"a": 1}, "shut_cond": "false"},
    {"execution": "main", "env": None, "timeout": None},
]


@pytest.mark.parametrize("config", PLAIN_CONFIGS, ids=repr)
def test_plain_values_read_as_the_model_reads_them(config):
    from conddsl.runtime import config_model
    from conddsl.runtime.config import FIELDS, _plain

    assert _plain(config) is not None  # read without the model
    ours = SchedulerConfig.load(config)
    model = config_model.SchedulerConfigModel.model_validate(config or {})
    for name in FIELDS:
        if name == "history":
            assert type(getattr(ours, name)) is type(getattr(model, name))
        else:
            assert getattr(ours, name) == getattr(model, name), name


def test_the_fields_and_defaults_are_the_models():
    from conddsl.runtime import config_model
    from conddsl.runtime.config import FIELDS, _default

    model = config_model.SchedulerConfigModel
    assert FIELDS == tuple(model.model_fields) == tuple(SchedulerConfig.model_fields)
    for name, field in model.model_fields.items():
        expected = field.default_factory() if field.default_factory else field.default
        assert type(_default(name)) is type(expected)
        if name != "history":
            assert _default(name) == expected, name


@pytest.mark.parametrize(
    "config",
    [
        {"max_process_count": "2"},  # lax: the model turns text into a number
        {"max_process_count": 2.0},
        {"history": "runs.db"},  # a file name: the model opens the store
        {"timezone": "Europe/Helsinky"},  # refused: the model's message
        {"instant_shutdown": 1},
        {"timout": 5},
    ],
    ids=repr,
)
def test_anything_else_goes_to_the_model(config):
    from conddsl.runtime.config import _plain

    assert _plain(config) is None


def test_the_config_is_frozen_and_answers_as_the_model():
    import copy

    from pydantic import ValidationError

    config = SchedulerConfig.load({"timeout": 60, "params": {"a": 1}})
    with pytest.raises(ValidationError, match="frozen"):
        config.timeout = None
    assert config.model_dump()["timeout"] == timedelta(minutes=1)
    assert SchedulerConfig.load(config) is config
    assert copy.copy(config) == config and copy.copy(config).history is config.history
    assert SchedulerConfig(timeout=60).timeout == timedelta(minutes=1)
    assert SchedulerConfig.model_validate({"timeout": 60}).timeout == timedelta(minutes=1)
    with pytest.raises(AttributeError):
        SchedulerConfig.no_such_thing  # noqa: B018
    with pytest.raises(ValidationError, match="1 validation error for SchedulerConfig\n"):
        SchedulerConfig(timout=60)


def test_every_plain_value_of_every_key_reads_as_the_models():
    import itertools
    from datetime import timezone

    from conddsl.runtime import config_model
    from conddsl.runtime.config import FIELDS, _plain

    store = MemoryHistory()
    values = [True, False, 0, 1, -1, 2, 2.5, math.nan, 10**20, "2", "1h", "0 s", "never"]
    values += [" Never ", None, timedelta(0), timedelta(seconds=3), -timedelta(seconds=1)]
    values += ["UTC", "Europe/Helsinki", "Bad/Zone", timezone.utc, "main", "thread"]
    values += ["process", "async", {}, {"a": 1}, {1: 2}, [], store, "x"]
    plain = 0
    for key, value in itertools.product(FIELDS, values):
        config = {key: value}
        read = _plain(config)
        if read is None:
            continue  # the model's to judge: accepted or refused, as it always was
        plain += 1
        model = config_model.SchedulerConfigModel.model_validate(config)
        for name in FIELDS:
            if name != "history" or key == "history":
                theirs = getattr(model, name)
                assert read[name] is theirs or read[name] == theirs, (key, value, name)
    assert plain > 40  # the common values do take the plain path
