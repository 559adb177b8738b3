"""The language and runtime modules depend on each other one way: no import cycle, lazy
imports included."""

from __future__ import annotations

import ast
import graphlib
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "conddsl"
# The history is being reworked separately; it is checked later.
_NOT_YET = ("conddsl.history",)


@cache
def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file (functions included), except
    under ``if TYPE_CHECKING:``, which never runs."""
    names: set[str] = set()

    class Imports(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == (
                "TYPE_CHECKING"
            ):
                for item in node.orelse:
                    self.visit(item)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            names.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)

    Imports().visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


@cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {other for other in _imports(path) if other in modules and other != name}
        for name, path in modules.items()
        if not name.startswith(_NOT_YET)
    }


def test_the_language_modules_have_no_import_cycle():
    graph = _graph()
    language = {
        name: deps - {d for d in deps if d.startswith(_NOT_YET)} for name, deps in graph.items()
    }
    try:
        list(graphlib.TopologicalSorter(language).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


def test_a_cycle_would_be_seen(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from conddsl.b import g\n")
    assert "conddsl.b" in _imports(tmp_path / "a.py")
    (tmp_path / "t.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import conddsl.c\n"
    )
    assert "conddsl.c" not in _imports(tmp_path / "t.py")


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("conddsl.errors", "conddsl."),  # the bottom: imports nothing of conddsl
        ("conddsl.ast", "conddsl.parse"),
        ("conddsl.literals", "conddsl.parse"),
        ("conddsl.grammar", "conddsl.parse"),
        ("conddsl.parse", "conddsl.compile"),
        ("conddsl.taskstate", "conddsl.compile"),
        ("conddsl.timeline", "conddsl.compile"),
        ("conddsl.timeline", "conddsl.ast"),  # the time engine knows no condition language
        ("conddsl.timeline", "conddsl.literals"),
        ("conddsl.compile", "conddsl.lint"),
        ("conddsl.compile", "conddsl.rules"),
        ("conddsl.parse", "conddsl.runtime"),
        ("conddsl.runtime", "conddsl.lint"),
        ("conddsl.runtime", "conddsl.runfile"),
        ("conddsl.runtime", "conddsl.cli"),
        # The scheduler's collaborators and the executors know nothing of the scheduler.
        *(
            (f"conddsl.runtime.{name}", "conddsl.runtime.scheduler")
            for name in (
                "control",
                "deadlines",
                "evaluator",
                "eventloop",
                "executors",
                "frozen_heap",
                "handles",
                "judge",
                "launcher",
                "leftovers",
                "lifecycle",
                "output",
                "phases",
                "process_exec",
                "records",
                "registry_place",
                "requests",
                "runs",
                "runtable",
                "session",
                "taskbook",
                "wake",
            )
        ),
        # The task book is bookkeeping: it neither evaluates, nor starts, nor controls.
        *(
            ("conddsl.runtime.taskbook", f"conddsl.runtime.{name}")
            for name in ("evaluator", "requests", "launcher", "lifecycle", "judge", "runtable")
        ),
        ("conddsl.runtime.evaluator", "conddsl.runtime.requests"),
        ("conddsl.runtime.requests", "conddsl.runtime.evaluator"),
        # Executors know nothing of clocks (the scheduler holds the clock for them).
        ("conddsl.runtime.executors", "conddsl.runtime.clock"),
        ("conddsl.runtime.process_exec", "conddsl.runtime.clock"),
        ("conddsl.runtime.output", "conddsl.runtime.clock"),
    ],
)
def test_a_lower_layer_never_imports_a_higher_one(lower, upper):
    reaching = {
        (name, other)
        for name, deps in _graph().items()
        if name == lower or name.startswith(lower + ".")
        for other in deps
        if other.startswith(upper) and other != "conddsl.errors"
    }
    assert reaching == set()


def test_no_module_imports_another_ones_private_names():
    private = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("conddsl")
            ):
                private += [
                    f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")
                ]
    assert private == []


def test_one_public_class_per_name():
    import importlib
    import inspect

    homes: dict[str, list[str]] = {}
    for name in sorted(_modules()):
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == name and not attr.startswith("_"):
                homes.setdefault(attr, []).append(name)
    assert {attr: where for attr, where in homes.items() if len(where) > 1} == {}
