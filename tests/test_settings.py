"""One reader for every duration, timeout and zone setting: the API, task files and
custom conditions accept and refuse the same values for the same reasons."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest

from conddsl.custom import ConditionRegistry
from conddsl.errors import ConfigError, SettingValueError, TaskFileError
from conddsl.rules.taskfile import load_task_file
from conddsl.runtime.config import SchedulerConfig
from conddsl.settings import read_duration, read_timeout, read_zone

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
