"""One reader for every duration, timeout and zone setting: the API, task files and
custom conditions accept and refuse the same values for the same reasons."""

from __future__ import annotations

import inspect
import math
from datetime import timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from conddsl.custom import ConditionRegistry
from conddsl.errors import ConfigError, SettingValueError, TaskFileError
from conddsl.rules.models import SchedulerTable, TaskTable
from conddsl.rules.taskfile import load_task_file
from conddsl.runtime import Scheduler, scheduler_from_task_file
from conddsl.runtime.config import SchedulerConfig
from conddsl.settings import SchedulerSettings, read_duration, read_timeout, read_zone

BAD = [
    (0, "must be longer than zero"),
    (-3, "must be longer than zero"),
    (math.inf, "must be a finite number"),
    (1e20, "is too long"),
    ("soon", "'soon' is not a duration"),
    ("90", "'90' needs a unit"),
]


def _file_reason(tmp_path: Path, value: object) -> str:
    path = tmp_path / "tasks.toml"
    toml = repr(value) if not isinstance(value, float) else ("inf" if value == math.inf else "1e20")
    path.write_text(f"[tasks.a]\nfunc = 'm:f'\ntimeout = {toml}\n", encoding="utf-8")
    with pytest.raises(TaskFileError) as info:
        load_task_file(path)
    (found,) = info.value.diagnostics
    return found.message


@pytest.mark.parametrize(("value", "reason"), BAD)
def test_the_api_the_task_file_and_recheck_refuse_alike(tmp_path, value, reason):
    with pytest.raises(ConfigError, match=reason):
        SchedulerConfig.load({"timeout": value})
    with pytest.raises(ConfigError, match=reason):
        ConditionRegistry().register("flag", lambda: True, recheck=value)
    assert reason in _file_reason(tmp_path, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(90, timedelta(seconds=90)), ("1h30m", timedelta(hours=1, minutes=30)), ("01:00:00", 3600)],
)
def test_every_reader_takes_the_same_forms(value, expected):
    if isinstance(expected, int):
        expected = timedelta(seconds=expected)
    assert read_duration(value, "x") == expected
    assert read_timeout(value) == expected
    assert SchedulerConfig.load({"kill_grace": value}).kill_grace == expected
    assert ConditionRegistry().register("flag", lambda: True, recheck=value).recheck == expected


def test_a_setting_error_says_which_setting_and_why_apart():
    with pytest.raises(SettingValueError) as info:
        read_duration("5 parsecs", "kill_grace", allow_zero=True)
    error = info.value
    assert (error.what, error.kind) == ("kill_grace", "text")
    assert str(error).startswith("kill_grace '5 parsecs' is not a duration")
    assert read_duration(0, "kill_grace", allow_zero=True) == timedelta(0)


def test_never_is_no_timeout_but_not_a_duration():
    assert read_timeout(" Never ") is None
    with pytest.raises(SettingValueError, match="'never' is not a duration"):
        read_duration("never", "kill_grace")


def test_a_zone_is_an_iana_name_with_a_close_guess():
    assert read_zone("Europe/Helsinki") == "Europe/Helsinki"
    with pytest.raises(SettingValueError) as info:
        read_zone("Europe/Helsinky")
    assert info.value.reason == "unknown timezone 'Europe/Helsinky'"
    assert info.value.hint == "did you mean 'Europe/Helsinki'?"


# ---------------------------------------------------------------- one declaration

# Keys the API and the file both have but declare each (see SchedulerSettings: the
# kind or the default differs), and keys only one of them has.
DECLARED_BY_EACH = {"timeout", "shut_cond", "history"}
FILE_ONLY = {"rules", "keep", "node", "lease"}  # node and lease: for a shared history
API_ONLY = {"env", "params"}


def test_a_setting_the_api_and_the_file_share_is_declared_once():
    shared = set(SchedulerSettings.model_fields)
    api = set(SchedulerConfig.model_fields) - shared
    in_file = set(SchedulerTable.model_fields) - shared
    # A key new to both belongs in SchedulerSettings (or in DECLARED_BY_EACH, with why).
    assert api & in_file == DECLARED_BY_EACH
    assert in_file - api == FILE_ONLY
    assert api - in_file == API_ONLY
    for name, declared in SchedulerSettings.model_fields.items():
        for model in (SchedulerConfig, SchedulerTable):
            field = model.model_fields[name]
            assert (field.default, field.description) == (declared.default, declared.description)


def test_the_file_hands_every_shared_setting_to_the_scheduler(tmp_path):
    path = tmp_path / "tasks.toml"
    path.write_text(
        "[scheduler]\ninstant_shutdown = true\nkill_grace = 0\nmax_process_count = 3\n"
        'execution = "process"\nsilence_cond_check = true\n',
        encoding="utf-8",
    )
    config = scheduler_from_task_file(load_task_file(path)).config
    assert config.instant_shutdown is True
    assert config.kill_grace == timedelta(0)
    assert config.max_process_count == 3
    assert config.execution == "process"
    assert config.silence_cond_check is True


def test_the_api_stays_lax_where_the_file_is_strict():
    # One declaration, two modes: Python callers pass 2.0 or "2", TOML values are typed.
    assert SchedulerConfig.load({"max_process_count": 2.0}).max_process_count == 2
    assert SchedulerConfig.load({"max_process_count": "2"}).max_process_count == 2
    with pytest.raises(ValidationError) as info:
        SchedulerTable.model_validate({"max_process_count": 2.0})
    assert info.value.errors()[0]["type"] == "int_type"
    # Both refuse what is no bool at all.
    with pytest.raises(ConfigError, match="instant_shutdown"):
        SchedulerConfig.load({"instant_shutdown": 1})
    with pytest.raises(ValidationError):
        SchedulerTable.model_validate({"instant_shutdown": 1})


def test_the_api_names_the_setting_of_a_bad_shared_duration():
    # kill_grace is declared once with the file's type; the API reads it first with its
    # own reader, so its message names the setting as before.
    with pytest.raises(ConfigError, match="^kill_grace must be zero or more$"):
        SchedulerConfig.load({"kill_grace": -1})


def test_a_task_table_key_is_the_api_keyword_of_the_same_name():
    # A task's settings are keywords of Scheduler.task and command_task, not a model; the
    # file names what the API is handed instead (the callable, argv, a partial's params).
    keywords = set(inspect.signature(Scheduler.task).parameters) | set(
        inspect.signature(Scheduler.command_task).parameters
    )
    file_only = {"func", "command", "params"}
    assert set(TaskTable.model_fields) - file_only <= keywords
    assert file_only.isdisjoint(keywords - {"self"})


def test_the_shared_timezone_keeps_a_tzinfo_given_in_code():
    fixed = dt_timezone(timedelta(hours=2))
    assert SchedulerConfig.load({"timezone": fixed}).timezone is fixed
    assert SchedulerTable(timezone=fixed).timezone is fixed
    with pytest.raises(ConfigError, match="'Europe/Helsinky'; did you mean 'Europe/Helsinki'"):
        SchedulerConfig.load({"timezone": "Europe/Helsinky"})
    with pytest.raises(ConfigError, match="timezone must be text"):
        SchedulerConfig.load({"timezone": 2})
