"""The task book on its own: what registering, removing and asking for manual starts
leave pending (the scheduler's behaviour over it is tested in test_runtime_*.py)."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import datetime, timezone

import pytest

from conddsl.compile import compile_condition
from conddsl.runtime.config import ConfigError
from conddsl.runtime.taskbook import TaskBook
from conddsl.runtime.tasks import Task
from conddsl.runtime.wake import SHUT

NOON = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)


def _task(name: str, role: str | None = None) -> Task:
    return Task(name=name, start=compile_condition("true"), execution="async", role=role)


def _due(book: TaskBook) -> list[object]:
    keys = []
    while book.due:
        keys.append(book.due.pop())
    return keys


def test_a_task_added_in_the_main_phase_is_due_at_once_and_a_permanent_one_pending():
    book = TaskBook()
    book.register(_task("before"), main=False)
    assert _due(book) == []
    book.register(_task("later"), main=True)
    book.register(_task("keep", role="permanent"), main=True)
    assert _due(book) == ["later", "keep"]
    assert list(book.permanent_pending) == ["keep"]


def test_removing_a_task_forgets_everything_pending_for_it():
    book = TaskBook()
    task = _task("gone", role="permanent")
    book.register(task, main=True)
    book.ask_manual("gone")
    book.checks.set("gone", NOON)
    book.due_since["gone"] = NOON
    assert book.unregister(task) is True
    assert (book.tasks, book.manual, book.permanent_pending, book.due_since) == ({}, {}, {}, {})
    assert book.checks.next() is None and _due(book) == []


def test_an_old_copy_of_a_task_removed_and_added_again_removes_nothing():
    book = TaskBook()
    old, new = _task("again"), _task("again")
    book.register(new, main=False)
    assert book.unregister(old) is False
    assert book.tasks == {"again": new}


def test_manual_starts_are_counted_down_as_they_are_made():
    book = TaskBook()
    book.ask_manual("m")
    book.ask_manual("m")
    book.manual_made("m")
    assert book.manual == {"m": 1}
    book.manual_made("m")
    assert book.manual == {}


def test_a_name_is_taken_once_and_on_startup_tasks_only_before_serving():
    book = TaskBook()
    book.declare(_task("a"), serving=False)
    with pytest.raises(ConfigError, match="already exists"):
        book.declare(_task("a"), serving=False)
    with pytest.raises(ConfigError, match="before the scheduler starts"):
        book.declare(_task("boot", role="on_startup"), serving=True)
    assert book.withdraw("a").name == "a" and book.known == {}


def test_entering_the_main_phase_looks_at_the_shut_condition_first():
    book = TaskBook()
    book.register(_task("t"), main=False)
    book.shut_cond = compile_condition("false")
    book.watch_shut_cond(book.shut_cond)
    book.enter_main()
    assert _due(book) == [SHUT, "t"]


def test_the_keys_due_leave_no_memory_behind_once_looked_at():
    book = TaskBook()
    names = [f"t{i}" for i in range(5000)]  # made first: their strings are not measured
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        book.due.mark_all(names)
        for name in names[:100]:
            book.due.mark_urgent(name)
        assert len(_due(book)) == 5000
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 4096, kept  # (the tables of 5,000 keys: ~150 KiB)


def test_due_keys_come_shut_first_then_urgent_then_in_marked_order_each_once():
    due = TaskBook().due
    due.mark_all(["a", "b", "c", "d"])
    due.mark_urgent("c")
    due.mark(SHUT)
    due.mark("a")  # (marked again: keeps its place)
    assert [due.take() for _ in range(5)] == [SHUT, "c", "a", "b", "d"]
    assert due.take() is None and not due
    with pytest.raises(KeyError):
        due.pop()
    due.mark_urgent("e")
    assert due.pop() == "e" and not due


@pytest.mark.parametrize(
    ("conds", "woken"),
    [
        ({"a": "true", "b": "true", "c": "true"}, ["c", "a"]),  # nobody reads records
        ({"a": "true", "b": "after task 'a'", "c": "after task 'c' finished"}, ["b", "c", "a"]),
    ],
)
def test_a_batch_of_records_wakes_the_keys_one_by_one_would_in_the_same_order(conds, woken):
    batch = [("a", False), ("c", True), ("a", True), ("b", False), ("c", False)]
    books = []
    for _ in range(2):
        book = TaskBook()
        for name, text in conds.items():
            start = compile_condition(text)
            book.register(Task(name=name, start=start, execution="async"), main=False)
        books.append(book)
    one_by_one, batched = books
    for name, own_change in batch:
        one_by_one.woken(name, own_change)
    batched.woken_all(
        [(name, "success" if own else "run", NOON, "r", None, None, None) for name, own in batch]
    )
    assert _due(batched) == _due(one_by_one) == woken
    assert batched.wake_index.reads_records() is ("b" in woken)


def test_a_key_put_back_comes_next_and_once():
    """A pass that stops before looking at the key it took (records to write first) puts
    it back: it is the first looked at by the next pass, not behind the others."""
    due = TaskBook().due
    due.mark_all(["a", "b", "c"])
    due.mark_urgent("u")
    assert due.take() == "u"
    due.put_back("u")
    assert due.take() == "u"
    assert due.take() == "a"
    due.put_back("a")
    due.put_back(SHUT)
    assert [due.take() for _ in range(4)] == [SHUT, "a", "b", "c"]
    assert due.take() is None
