"""conddsl.taskoutput: what thread and async tasks print, line by line, with their name."""

from __future__ import annotations

import asyncio
import io
import threading

from conddsl.taskoutput import TaskOutput, current_task_name


def test_lines_of_task_threads_are_prefixed_and_never_mixed():
    stream = io.StringIO()
    output = TaskOutput(stream)
    both_started = threading.Barrier(2)

    def body(word: str) -> None:
        both_started.wait()
        for n in range(50):
            output.write(f"{word} ")  # a line in pieces, as print() writes it
            output.write(f"{n}\n")

    threads = [
        threading.Thread(target=body, args=(word,), name=f"conddsl:{word}")
        for word in ("extract", "load")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    output.write("conddsl: not a task's line\n")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 101
    for word in ("extract", "load"):
        assert [line for line in lines if line.startswith(word)] == [
            f"{word} | {word} {n}" for n in range(50)
        ]
    assert lines[-1] == "conddsl: not a task's line"


def test_async_tasks_and_unended_lines():
    stream = io.StringIO()
    output = TaskOutput(stream)

    async def task_body() -> None:
        assert current_task_name() == "report:x"  # a name with a colon keeps it
        output.write("half a line")

    async def main() -> None:
        await asyncio.get_running_loop().create_task(task_body(), name="conddsl:report:x:abc123")

    asyncio.run(main())
    assert stream.getvalue() == ""  # waits for its end
    output.finish()
    assert stream.getvalue() == "report:x | half a line\n"
    assert current_task_name() is None
