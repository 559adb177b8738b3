"""Syntax-error translation takes its keywords from the grammar, not from a second list."""

from __future__ import annotations

import pytest
from lark import Lark
from lark.exceptions import UnexpectedInput

from conddsl.errors import ConditionSyntaxError
from conddsl.grammar import get_parser, grammar_text
from conddsl.lalr_tables import terminal_regex
from conddsl.literals import read_duration_text
from conddsl.parse import parse
from conddsl.syntax_errors import keyword_words, start_keywords, translate


def _error(text: str) -> ConditionSyntaxError:
    with pytest.raises(ConditionSyntaxError) as info:
        parse.__wrapped__(text)
    return info.value


def test_start_keywords_are_the_grammars_first_words_of_a_condition():
    assert set(start_keywords(get_parser())) == {
        "after", "always", "cron", "daily", "env", "every", "false", "has", "hourly",
        "minutely", "monthly", "param", "running", "scheduler", "secondly", "task",
        "time", "true", "weekly", "while",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("terminal", "words"),
    [
        ("AND", ("and",)),
        ("_OR", ("or",)),
        ("_NOT", ("not",)),
        ("IN_PAST", ("in past",)),
        ("CYCLE_SPAN", ("today", "this minute", "this hour", "this week", "this month")),
        ("WHILE", ("while",)),
        ("NAME", ()),  # a pattern, not a choice of words
        ("DURATION", ()),
        ("$END", ()),
    ],
)
def test_keyword_words_expand_the_grammars_terminals(terminal, words):
    assert keyword_words(get_parser(), terminal) == words


@pytest.mark.parametrize("keyword", sorted(start_keywords(get_parser())))
def test_a_misspelt_first_keyword_is_named(keyword):
    typo = keyword + keyword[-1]  # "dailyy"
    error = _error(f"{typo} after 10:00")
    assert error.code == "E101"
    assert error.hint == f"did you mean '{keyword}'?"


def test_a_keyword_added_to_the_grammar_is_suggested_without_other_changes():
    grammar = grammar_text().replace(
        "     | reference\n", '     | reference\n     | "fortnightly"i -> constant\n'
    )
    parser = Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True)
    text = "fortnigthly after 10:00"
    with pytest.raises(UnexpectedInput) as info:
        parser.parse(text)
    error = translate(text, info.value, parser)
    assert (error.code, error.hint) == ("E101", "did you mean 'fortnightly'?")
    assert "fortnightly" not in start_keywords(get_parser())


def test_the_unit_of_a_secondly_window_is_named_in_what_is_expected():
    # Bug: the expectation after "secondly between 500 and" was a time of day.
    error = _error("secondly between 500 and")
    assert error.code == "E106"
    assert "a millisecond of the second like 500" in error.message


@pytest.mark.parametrize(
    ("text", "value"),
    [("5 minutes", 300), ("1h30m", 5400), (" 2 hours ", 7200), ("1 hour, 30 minutes", 5400)],
)
def test_duration_settings_are_read_with_the_grammars_duration_terminal(text, value):
    assert read_duration_text(text).total_seconds() == value
    assert terminal_regex("DURATION").fullmatch(text.strip())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5 minutes # five", "is not a duration"),
        ("1 hour 30", "is not a duration"),
        ("5m5", "is not a duration"),
        ("99999999999 days", "is too long a duration"),
        ("99999999999 days # a comment", "is too long a duration"),
    ],
)
def test_duration_settings_refuse_what_conditions_refuse(text, message):
    with pytest.raises(ValueError, match=message):
        read_duration_text(text)
