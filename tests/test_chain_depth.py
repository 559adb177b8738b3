"""Named conditions nested deep: a positioned E123 past 250 levels, never a RecursionError."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from reliability import count_steps, grows_linearly

from conddsl import ConditionSyntaxError, compile_condition
from conddsl.cli import main
from conddsl.history import MemoryHistory
from conddsl.nesting import MAX_EXPANDED_DEPTH, ExpandedDepth
from conddsl.parse import parse

UTC = timezone.utc
AT = datetime(2024, 1, 1, 9, 30, tzinfo=UTC)


def _chain(names: int, body: str = "{next}", end: str = "daily") -> dict:
    """``r0 = r1``, … (``body`` around the next name), and the last name is ``end``."""
    rules = {f"r{i}": parse(body.format(next=f"r{i + 1}")) for i in range(names - 1)}
    rules[f"r{names - 1}"] = parse(end)
    return rules


def test_the_depth_counts_each_name_as_a_level():
    assert ExpandedDepth(_chain(201)).of(parse("r0"))[0] == 202  # 201 names and daily
    depth, pointer = ExpandedDepth(_chain(3, "~{next}")).of(parse("daily & ~(hourly | r0)"))
    assert depth == 3 + 3 + 2 + 1  # &, ~, |; r0 and its ~; r1 and its ~; r2 and daily
    assert pointer is not None and pointer.name == "r0"


@pytest.mark.parametrize(("names", "deep"), [(249, False), (250, True), (500, True)])
def test_a_chain_up_to_the_limit_compiles(names, deep):
    rules = _chain(names)
    assert ExpandedDepth(rules).of(parse("r0"))[0] == names + 1
    if not deep:
        condition = compile_condition("r0", rules=rules, timezone="UTC")
        assert condition.is_true(AT, task="t", history=MemoryHistory())
        return
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition("r0", rules=rules, timezone="UTC")
    error = info.value
    assert error.code == "E123"
    assert (error.line, error.column, error.end_column) == (1, 1, 3)
    assert f"nests {names + 1} levels, more than {MAX_EXPANDED_DEPTH}" in error.message
    assert error.hint


def test_the_nesting_around_a_name_counts_and_the_name_is_pointed_at():
    rules = _chain(240)  # 241 levels: fine alone
    compile_condition("r0", rules=rules, timezone="UTC")
    text = "daily & ~(~(~(~(~(~(~(~(~(~(r0)))))))))) | hourly"
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition(text, rules=rules, timezone="UTC")
    assert info.value.code == "E123"
    assert info.value.column == text.index("r0") + 1


@pytest.mark.parametrize(("names", "body"), [(2_000, "{next}"), (120, "{next} | ~{next}")])
def test_long_chains_are_refused(names, body):
    # Deeper than the recursion limit, and 2**120 paths: measured without recursion, per name.
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition("r0", rules=_chain(names, body), timezone="UTC")
    assert info.value.code == "E123"


@pytest.mark.parametrize("body", ["{next}", "{next} | ~{next}"])
def test_long_chains_are_refused_at_once(body):
    """The refusal costs steps linear in the names, whatever the number of paths.

    Counted steps, not seconds: a wall-clock bound failed whenever the machine was loaded.
    """

    def cost(names: int) -> int:
        rules = _chain(names, body)

        def refuse() -> None:
            with pytest.raises(ConditionSyntaxError):
                compile_condition("r0", rules=rules, timezone="UTC")

        return count_steps(refuse)

    linear, figures = grows_linearly(cost, 300)
    assert linear, figures


def test_a_cycle_is_still_a_cycle():
    rules = {"a": parse("b | daily"), "b": parse("~a")}
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition("a", rules=rules, timezone="UTC")
    assert info.value.code == "E121"


@pytest.mark.parametrize(
    "body",
    ["({next} | after task 'a')", "~{next}", "({next} & every 1 hour)", "{next} in 'UTC'"],
)
def test_at_the_limit_it_compiles_and_evaluates(body):
    """250 levels, the most with ``|`` (which evaluates through three frames per level)."""
    for names in range(1, 400):
        rules = _chain(names, body, end="time of day between 09:00 and 10:00")
        if ExpandedDepth(rules).of(parse("r0"))[0] > MAX_EXPANDED_DEPTH:
            break
        fits = rules
    condition = compile_condition("r0", rules=fits, timezone="UTC")
    history = MemoryHistory()
    history.record("a", "success", at=AT - timedelta(hours=1))
    context = {"task": "t", "history": history}
    condition.is_true(AT, **context)
    condition.next_change(AT, **context)
    list(condition.windows(AT, AT + timedelta(days=2), **context))


def _task_file(folder: Path, names: int) -> Path:
    (folder / "chain.cond").write_text(
        "".join(f"r{i} = r{i + 1}\n" for i in range(names - 1)) + f"r{names - 1} = daily\n"
    )
    path = folder / "tasks.toml"
    path.write_text(
        '[scheduler]\nrules = ["chain.cond"]\n'
        '[tasks.a]\nfunc = "jobs:f"\nstart_cond = "daily & r0"\n'
        '[tasks.b]\nfunc = "jobs:f"\nstart_cond = "time of day after 10:00 & time of day '
        'before 09:00"\n'
    )
    return path


def test_check_reports_it_at_the_name(tmp_path, capsys):
    path = _task_file(tmp_path, 500)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(str(path))]
    assert lines[0] == (
        f"{path}:5:23: E123 named conditions nest too deep: written out in place, the "
        "condition nests 502 levels, more than 250"
    )
    # The other checks still run on the other conditions.
    assert [line.split(" ")[1] for line in lines] == ["E123", "C401"]


def test_check_passes_a_chain_under_the_limit(tmp_path, capsys):
    path = _task_file(tmp_path, 240)
    assert main(["check", str(path)]) == 1  # only task b's C401
    out = capsys.readouterr().out
    assert [line.split(" ")[1] for line in out.splitlines() if line.startswith(str(path))] == [
        "C401"
    ]


# ---------------------------------------------------------------- expanded size


def test_the_size_counts_every_part_written_out():
    rules = _chain(4, "{next} | ~{next}")  # r0 = r1 | ~r1, r1 = r2 | ~r2, r2 = r3 | ~r3
    # A leaf is one part; r3 (daily) written out is 2; r2 = 1 + 2 * (1 + 2) + 1 ...
    sizes = [ExpandedDepth(rules).measure(parse(f"r{i}"))[1] for i in range(4)]
    assert sizes[3] == 2  # the name and daily
    for i in range(3):  # the name, the |, the operand, and the ~ with its operand
        assert sizes[i] == 1 + 1 + sizes[i + 1] + 1 + sizes[i + 1]


def test_a_condition_that_doubles_at_every_level_is_refused_at_once(tmp_path, capsys):
    rules = _chain(40, "{next} | ~{next}")  # 2**40 parts written out
    # Measured per name, never written out (test_long_chains_are_refused_at_once counts it).
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition("hourly & r0", rules=rules, timezone="UTC")
    assert info.value.code == "E123" and "expand too far" in info.value.message
    assert (info.value.column, info.value.end_column) == (10, 12)  # at r0
    # Under the limit, the same shape compiles and evaluates.
    small = compile_condition("hourly & r30", rules=rules, timezone="UTC")
    assert small.is_true(AT, task="t", history=MemoryHistory()) in (True, False)
    (tmp_path / "r.cond").write_text(
        "".join(f"r{i} = r{i + 1} | ~r{i + 1}\n" for i in range(30)) + "r30 = daily\n"
    )
    (tmp_path / "tasks.toml").write_text(
        '[scheduler]\nrules = ["r.cond"]\n[tasks.a]\nfunc = "jobs:f"\nstart_cond = "r0"\n'
    )
    assert main(["check", str(tmp_path / "tasks.toml")]) == 1
    assert ":5:15: E123 named conditions expand too far" in capsys.readouterr().out
