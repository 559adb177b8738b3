"""The rule-file and task-file API: ``load_rules`` and ``load_task_file``."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conddsl import compile_condition
from conddsl.rules import (
    RuleFileError,
    TaskFile,
    TaskFileError,
    load_rules,
    load_task_file,
    read_rule_file,
)

RULES = """\
# office hours
office = time of day between 08:00 and 18:00   # local time
weekday = time of week between Mon and Fri
workday =
    office
# a comment in the first column does not end the definition
    & weekday

late = ~workday & later_still   # a name defined further down is fine
later_still = time of day after 20:00
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_rules_feeds_compile_condition(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, "office.cond", RULES))
    assert list(rules) == ["office", "weekday", "workday", "late", "later_still"]
    assert str(rules["workday"]) == "office & weekday"
    condition = compile_condition("workday & daily", rules=rules, timezone="UTC")
    assert condition.is_true(datetime(2024, 1, 5, 17, 59))  # Friday
    assert not condition.is_true(datetime(2024, 1, 6, 12, 0))  # Saturday
    late = compile_condition("late", rules=rules, timezone="UTC")
    assert late.is_true(datetime(2024, 1, 6, 21, 0))


def test_rule_file_error_carries_every_finding(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.cond",
        "a = time of dya after 10:00\nb =\n    a &\nc = d\nthen this\n",
    )
    with pytest.raises(RuleFileError) as info:
        load_rules(path)
    found = [(d.code, d.span.line, d.span.column) for d in info.value.diagnostics]
    assert found == [("E101", 1, 13), ("E106", 3, 7), ("E120", 4, 5), ("C103", 5, 1)]
    assert str(info.value).splitlines()[0] == (
        f"{path}:1:13: E101 unexpected 'dya'; expected 'day', 'hour', 'minute', 'month' or 'week'"
    )
    assert isinstance(info.value, ValueError)


def test_a_missing_rule_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_rules(tmp_path / "nowhere.cond")


def test_names_known_from_an_earlier_file(tmp_path: Path) -> None:
    base = load_rules(write(tmp_path, "base.cond", "office = time of day after 08:00\n"))
    more = write(tmp_path, "more.cond", "late = ~office\n")
    rules = load_rules(more, known=base)
    assert list(rules) == ["office", "late"]
    with pytest.raises(RuleFileError) as info:
        load_rules(more)
    assert [d.code for d in info.value.diagnostics] == ["E120"]


def test_redefining_a_known_name(tmp_path: Path) -> None:
    path = write(tmp_path, "more.cond", "office = daily\n")
    found = read_rule_file(
        path, known={"office": compile_condition("true").ast}, known_where={"office": "a.cond:3"}
    )
    assert [(d.code, d.message) for d in found.diagnostics] == [
        ("C105", "'office' is already defined (a.cond:3)")
    ]


@pytest.mark.parametrize(
    ("text", "code", "column"),
    [
        ("daily = hourly\n", "C104", 1),
        ("and = hourly\n", "C104", 1),
        ("time = hourly\n", "C104", 1),
        ("my-rule = hourly\n", "C104", 1),
        ("2fast = hourly\n", "C104", 1),
        ("office time of day after 10:00\n", "C103", 1),
        ("    time of day after 10:00\n", "C103", 5),
        ("a = daily\na = hourly\n", "C105", 1),
        ("a = b\nb = a\n", "E121", 5),
        ("a = a | daily\n", "E121", 5),
        ("a = \n", "E103", 4),
        ("a = task 'x\nb = daily\n", "E102", 10),
    ],
)
def test_rule_file_findings(tmp_path: Path, text: str, code: str, column: int) -> None:
    found = read_rule_file(write(tmp_path, "r.cond", text)).diagnostics
    assert [(d.code, d.span.column) for d in found] == [(code, column)]


def test_a_broken_rule_does_not_hide_the_next(tmp_path: Path) -> None:
    found = read_rule_file(write(tmp_path, "r.cond", "a = task 'x\nb = time of dya\n"))
    assert [(d.code, d.span.line) for d in found.diagnostics] == [("E102", 1), ("E101", 2)]
    assert [d.name for d in found.definitions] == ["a", "b"]


# ---------------------------------------------------------------- task files

TASKS = """\
[scheduler]
timezone = "Europe/Helsinki"
history = "state/history.sqlite3"
rules = ["office.cond"]
timeout = "30 minutes"
kill_grace = 0

[tasks.extract]
func = "etl.jobs:extract"
start_cond = "workday & daily after 09:00"
end_cond = "time of day after 17:00"
timeout = 3600

[tasks.load]
command = ["load.sh", "--all"]
start_cond = "after task 'extract' succeeded"
timeout = "never"
execution = "process"

[tasks.archive]
command = "tar czf archive.tgz data/"
shell = true
disabled = true
"""


def test_load_task_file(tmp_path: Path) -> None:
    write(tmp_path, "office.cond", RULES)
    task_file = load_task_file(write(tmp_path, "tasks.toml", TASKS))
    assert isinstance(task_file, TaskFile)
    assert task_file.path == tmp_path / "tasks.toml"
    assert task_file.history_path == tmp_path / "state" / "history.sqlite3"
    assert task_file.rule_paths == [tmp_path / "office.cond"]
    assert "workday" in task_file.rules
    scheduler = task_file.scheduler
    assert (scheduler.timeout, scheduler.kill_grace) == (timedelta(minutes=30), timedelta(0))
    extract = task_file.tasks["extract"]
    assert (extract.func, extract.timeout) == ("etl.jobs:extract", timedelta(hours=1))
    assert task_file.tasks["load"].timeout == "never"
    assert task_file.tasks["archive"].command == "tar czf archive.tgz data/"
    condition = task_file.condition(extract.start_cond)
    assert condition.zone.key == "Europe/Helsinki"
    assert condition.is_true(datetime(2024, 1, 5, 10, 0))


def test_load_task_file_raises_with_every_finding(tmp_path: Path) -> None:
    write(tmp_path, "office.cond", "office = time of dya\n")
    path = write(
        tmp_path,
        "tasks.toml",
        '[scheduler]\nrules = ["office.cond"]\ntimout = 5\n'
        '[tasks.a]\nfunc = "m:f"\nstart_cond = "office & task \'b\' is running"\n',
    )
    with pytest.raises(TaskFileError) as info:
        load_task_file(path)
    found = sorted((Path(d.path).name, d.code) for d in info.value.diagnostics)
    assert found == [("office.cond", "E101"), ("tasks.toml", "C201"), ("tasks.toml", "C301")]


@pytest.mark.parametrize(
    ("table", "message", "hint"),
    [
        ("timezone = 'UTC'", "unknown key 'timezone' in task 'a'", "belongs in the [scheduler]"),
        ("star_cond = 'daily'", "unknown key 'star_cond' in task 'a'", "did you mean 'start_cond'"),
        ("timeout = 0", "timeout: the duration must be longer than zero", "'never'"),
        ("timeout = '90'", "timeout: '90' needs a unit", "'90 seconds'"),
        ("timeout = 1e400", "timeout: the duration must be a finite number", None),
        ("execution = 'subprocess'", "execution: expected one of 'main'", None),
    ],
)
def test_task_values(tmp_path: Path, table: str, message: str, hint: str | None) -> None:
    path = write(tmp_path, "tasks.toml", f"[tasks.a]\nfunc = 'm:f'\n{table}\n")
    with pytest.raises(TaskFileError) as info:
        load_task_file(path)
    (found,) = info.value.diagnostics
    assert found.message.startswith(message)
    assert (hint is None) or (found.hint is not None and hint in found.hint)


def test_durations_accept_the_language_words(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tasks.toml",
        "[scheduler]\ntimeout = '1h30m'\nkill_grace = 2.5\n"
        "[tasks.a]\nfunc = 'm:f'\ntimeout = '01:00:30'\n",
    )
    task_file = load_task_file(path)
    assert task_file.scheduler.timeout == timedelta(hours=1, minutes=30)
    assert task_file.scheduler.kill_grace == timedelta(seconds=2.5)
    assert task_file.tasks["a"].timeout == timedelta(hours=1, seconds=30)
