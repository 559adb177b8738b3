"""One resolver of named conditions, one tree transform, and a visitor that misses nothing."""

from __future__ import annotations

import pytest

from conddsl import ast
from conddsl.compile import compile_condition
from conddsl.errors import ConditionSyntaxError
from conddsl.lint.clock import ClockAnalysis
from conddsl.parse import parse
from conddsl.resolve import Resolver, reference_problem
from conddsl.visitor import ConditionVisitor

RULES = {
    "office": parse("time of day between 08:00 and 18:00"),
    "workday": parse("office & time of week between Mon and Fri"),
    "loop_a": parse("loop_b | daily"),
    "loop_b": parse("~loop_a"),
}


def test_expand_analyses_each_name_once():
    resolver = Resolver(RULES)
    calls = []

    def analyse(node):
        calls.append(str(node))
        return str(node)

    for _ in range(3):
        assert resolver.expand(parse("office"), analyse) == str(RULES["office"])
    assert calls == [str(RULES["office"])]


def test_a_cycle_answers_what_the_caller_says_or_is_e121():
    resolver = Resolver(RULES)
    chains = []

    def analyse(node):
        refs = [item for item in ast.walk(node) if isinstance(item, ast.Reference)]
        return [resolver.expand(ref, analyse, on_cycle=chains.append) for ref in refs]

    resolver.expand(parse("loop_a"), analyse)
    assert chains == [["loop_a", "loop_b", "loop_a"]]
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition("loop_a", rules=RULES, timezone="UTC")
    assert info.value.code == "E121"
    assert "loop_a -> loop_b -> loop_a" in info.value.message


def test_reached_follows_names_to_the_end_once_each():
    assert sorted(Resolver(RULES).reached("workday")) == ["office", "workday"]
    assert sorted(Resolver(RULES).reached("loop_b")) == ["loop_a", "loop_b"]
    assert list(Resolver(RULES).reached("nothing")) == []


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("offce", "E120", "unknown condition 'offce'"),
        ("office 'x'", "E120", "'office' is a named condition: it takes no quoted arguments"),
    ],
)
def test_compile_and_the_checker_word_a_bad_name_alike(text, code, message):
    reference = parse(text)
    found = reference_problem(reference, RULES, None, hint="-")
    assert found is not None and found[:2] == (code, message)
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition(text, rules=RULES, timezone="UTC")
    assert (info.value.code, info.value.message) == (code, message)


def test_every_node_class_is_a_condition_or_a_part_of_one():
    classes = {
        value
        for value in vars(ast).values()
        if isinstance(value, type) and issubclass(value, ast.Node) and value is not ast.Node
    }
    assert classes == set(ast.CONDITIONS) | set(ast.PARTS)
    assert not set(ast.CONDITIONS) & set(ast.PARTS)


def test_a_visitor_that_forgets_a_node_type_cannot_be_defined():
    with pytest.raises(TypeError, match="does not handle .*ParamIs"):

        class Forgetful(ConditionVisitor[str]):
            def visit_Constant(self, node):
                return "constant"


def test_a_visitor_refuses_what_is_not_a_condition():
    analysis = ClockAnalysis({}, "UTC")
    with pytest.raises(TypeError, match="cannot visit Duration"):
        analysis.visit(parse("every 10 minutes").duration)


def test_transform_rebuilds_the_tree_bottom_up():
    written_out = ast.transform(
        parse("daily & ~(workday | hourly)"),
        lambda node: RULES.get(node.name, node) if isinstance(node, ast.Reference) else node,
    )
    assert written_out == parse("daily & ~(office & time of week between Mon and Fri | hourly)")
    unchanged = parse("daily | hourly")
    assert ast.transform(unchanged, lambda node: node) is unchanged


def test_transform_reaches_any_depth_without_recursion():
    deep = ast.Constant(True)
    for _ in range(5000):
        deep = ast.Not(deep)
    flipped = ast.transform(
        deep, lambda n: ast.Constant(not n.value) if n == ast.Constant(True) else n
    )
    node = flipped
    while isinstance(node, ast.Not):
        node = node.item
    assert node == ast.Constant(False)
