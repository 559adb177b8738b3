"""The one error module: every error under ConddslError, one suggest, one line index."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import conddsl
from conddsl.errors import ConddslError, LineIndex, Span, suggest

# Raised by task code to end its run: not errors of conddsl (see errors.py).
_SIGNALS = {"TaskTerminationException", "Inaction"}


def _modules():
    for info in pkgutil.walk_packages(conddsl.__path__, "conddsl."):
        if info.name != "conddsl.errors":
            yield importlib.import_module(info.name)


def test_every_exception_is_defined_in_errors_and_under_conddsl_error():
    stray = []
    for module in _modules():
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not issubclass(value, Warning)  # a warning is not an error
                # a private signal that never leaves its module (tomlpos._Stop) may stay
                and not name.startswith("_")
            ):
                stray.append(f"{module.__name__}.{name}")
    assert stray == []
    errors = importlib.import_module("conddsl.errors")
    defined = {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "conddsl.errors"
    }
    assert len(defined) > 20
    assert [name for name, cls in defined.items() if not issubclass(cls, ConddslError)] == sorted(
        _SIGNALS, key=list(defined).index
    )


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("conddsl.runtime.runlock", "HistoryInUse"),
        ("conddsl.runtime.runlock", "LockFileError"),
        ("conddsl.runtime.flags", "TaskTerminationException"),
        ("conddsl.runtime.flags", "Inaction"),
        ("conddsl.runtime", "TaskTerminationException"),
        ("conddsl.runtime.config", "ConfigError"),
        ("conddsl.runtime.conditions", "ConditionFailed"),
        ("conddsl.history.base", "HistoryError"),
        ("conddsl.history", "HistoryJournaled"),
    ],
)
def test_old_import_paths_give_the_one_class(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors_module(), name)


def errors_module():
    return importlib.import_module("conddsl.errors")


@pytest.mark.parametrize("signal", sorted(_SIGNALS))
def test_a_task_guarding_with_conddsl_error_does_not_swallow_its_termination(signal):
    raised = getattr(errors_module(), signal)

    def task_body():
        try:
            raise raised()
        except ConddslError:  # a task's own guard around, say, compiling a condition
            return "swallowed"

    with pytest.raises(raised):
        task_body()


@pytest.mark.parametrize(
    ("name", "known", "cutoff", "expected"),
    [
        ("dialy", ["daily", "hourly", "weekly"], 0.6, "daily"),
        ("extrct", ["extract", "load"], 0.6, "extract"),
        ("zzz", ["daily", "hourly"], 0.6, None),
        ("hurly", ["hourly", "daily"], 0.99, None),
        ("x", [], 0.6, None),
    ],
)
def test_suggest_names_the_closest_known_name_or_nothing(name, known, cutoff, expected):
    assert suggest(name, known, cutoff=cutoff) == expected


def test_suggest_takes_any_iterable_of_names():
    assert suggest("mno", {"mon": 0, "tue": 1}) == "mon"


@pytest.mark.parametrize("text", ["", "daily", "a\nbc\n\ndef", "\n\n", "x\r\ny"])
def test_span_and_line_index_agree_on_every_offset(text):
    index = LineIndex(text)
    for start in range(-1, len(text) + 2):
        for end in range(start, len(text) + 2):
            span = Span.from_offsets(text, start, end)
            assert span == index.span(start, end)
            clamped = max(0, min(start, len(text)))
            assert span.offsets(text) == (clamped, max(clamped, min(end, len(text))))


def test_line_index_positions_are_one_based():
    index = LineIndex("ab\ncd")
    assert index.position(0) == (1, 1)
    assert index.position(3) == (2, 1)
    assert index.position(5) == (2, 3)
    assert index.line_text(2) == "cd"
