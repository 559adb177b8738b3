"""Every analysis of conditions is a visitor that names every node type, and each
question (what a condition reads, its bounds with unknown parts) has one answer."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from datetime import datetime

import pytest

import conddsl
from conddsl import ast
from conddsl.bounds import FALSE, BoundsAnalysis
from conddsl.compile import Condition, compile_condition
from conddsl.custom import ConditionRegistry
from conddsl.parse import parse
from conddsl.reads import NOTHING, OWN, UNKNOWN, ReadsAnalysis, reads_of
from conddsl.visitor import ConditionVisitor


def _visitors() -> list[type]:
    for info in pkgutil.walk_packages(conddsl.__path__, "conddsl."):
        importlib.import_module(info.name)
    found, stack = [], list(ConditionVisitor.__subclasses__())
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_the_analyses_of_the_package_are_visitors():
    names = {cls.__name__ for cls in _visitors()}
    assert {"_Compiler", "ReadsAnalysis", "BoundsAnalysis", "ClockAnalysis"} <= names
    assert "_MandatoryWaits" in names


def test_a_new_condition_form_is_refused_by_every_analysis_until_it_answers(monkeypatch):
    @dataclass(frozen=True)
    class NewForm(ast.Node):
        pass

    visitors = _visitors()
    monkeypatch.setattr(ast, "CONDITIONS", (*ast.CONDITIONS, NewForm))
    for visitor in visitors:
        with pytest.raises(TypeError, match="does not handle NewForm"):
            type(f"Again{visitor.__name__}", (visitor,), {})


def test_a_condition_knows_what_it_reads_and_finds_it_once():
    condition = compile_condition("after task 'extract' & daily")
    assert condition.reads is condition.reads
    assert condition.reads.tasks == {"extract"} and condition.reads.own


def test_what_a_name_reads_follows_rules_customs_and_unknown_names():
    registry = ConditionRegistry()
    registry.register("holiday", lambda: False)
    rules = {"office": parse("task 'w' is running & workday"), "workday": parse("daily")}
    assert reads_of(parse("holiday"), {}, registry) == NOTHING
    assert reads_of(parse("office"), rules, registry).tasks == {"w"}
    assert reads_of(parse("office"), rules, registry).own
    # A lenient condition may name what is not defined yet: it may read anything.
    lenient = Condition(parse("later"), lenient=True)
    assert lenient.reads == UNKNOWN
    # A cycle is E121 when compiled; the analysis itself stays total.
    cyclic = {"a": parse("b"), "b": parse("a & daily")}
    assert ReadsAnalysis(cyclic).visit(parse("a")) == UNKNOWN | OWN


def test_bounds_replace_custom_parts_by_their_truest_and_falsest_values():
    analysis = BoundsAnalysis({"quiet": parse("~holiday")})
    over, under = analysis.bounds(parse("daily & quiet"))
    assert (over, under) == (parse("daily"), FALSE)
    assert analysis.customs(parse("daily & quiet")) == ("holiday",)
    over, under = analysis.bounds(parse("daily | ~ flag 'x'"))
    assert over == ast.Constant(True) and under == parse("daily")


def test_the_analyses_follow_names_as_deep_as_a_condition_may_nest():
    # 248 names, an '&' and its parts: 250 levels written out, E123's limit.
    rules = {f"r{i}": parse(f"r{i + 1}") for i in range(247)}
    rules["r247"] = parse("flag & task 'x' is running")
    registry = ConditionRegistry()
    registry.register("flag", lambda: True)
    condition = Condition(parse("r0"), rules=rules, registry=registry)
    assert condition.reads.tasks == {"x"}
    analysis = BoundsAnalysis(rules)
    assert analysis.bounds(parse("r0")) == (parse("task 'x' is running"), FALSE)
    assert analysis.customs(parse("r0")) == ("flag",)
    # So do the runtime's cases of it.
    assert condition.custom_cases.customs == ("flag",)
    assert condition.next_change(datetime(2024, 1, 1)) is None
