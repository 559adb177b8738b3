"""``conddsl check`` end to end: a table of bad files with their exact findings, hostile
inputs, the output formats, suppression and exit codes.

The table is ``tests/check_cases/expected.json``: for each run, the arguments (paths
relative to ``tests/check_cases``), the exit code and every finding as
``path:line:col: CODE``. The CLI runs in-process; one run goes through a subprocess to
prove there is no traceback and the exit code reaches the shell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conddsl.cli import main
from conddsl.errors import Span
from conddsl.lint.output import as_json
from conddsl.rules.codes import CODES
from conddsl.rules.diagnostics import Diagnostic

CASES = Path(__file__).resolve().parent / "check_cases"
ROOT = CASES.parent.parent
TABLE = json.loads((CASES / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _own_registry():
    """Custom conditions registered by a test (or by an imported func) do not leak."""
    from conddsl.custom import default_registry

    saved = dict(default_registry._by_phrase)
    yield
    default_registry._by_phrase.clear()
    default_registry._by_phrase.update(saved)
    sys.modules.pop("check_jobs", None)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``conddsl check …`` in-process: (exit code, stdout, stderr)."""
    code = main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", TABLE, ids=[" ".join(c["args"]) for c in TABLE])
def test_table(case: dict, capsys, monkeypatch) -> None:
    monkeypatch.chdir(CASES)
    code, out, err = run(case["args"], capsys)
    found = [" ".join(line.split(" ")[:2]) for line in out.splitlines()]
    assert found == case["found"], out
    assert code == case["exit"], err
    assert "Traceback" not in out + err


def test_every_code_is_in_the_table() -> None:
    reported = {line.rsplit(" ", 1)[1] for case in TABLE for line in case["found"]}
    assert set(CODES) - reported == set(), "each C code needs a case in expected.json"


def test_every_finding_is_also_a_full_and_json_entry(capsys, monkeypatch) -> None:
    monkeypatch.chdir(CASES)
    code, out, _ = run(["--output-format", "json", "clock.toml", "syntax.cond"], capsys)
    items = json.loads(out)
    assert code == 1
    assert {item["code"] for item in items} >= {"C401", "C402", "C403", "C404", "E101"}
    first = items[0]
    assert set(first) == {
        "code",
        "message",
        "severity",
        "filename",
        "location",
        "end_location",
        "hint",
    }
    assert first["filename"] == "clock.toml"
    assert first["location"] == {"row": 8, "column": 15}
    assert first["end_location"] == {"row": 8, "column": 65}  # the text inside the quotes
    warnings = [item for item in items if item["severity"] == "warning"]
    assert {item["code"] for item in warnings} == {"C404", "C405"}


def test_json_output_is_clean_even_when_nothing_is_found(capsys, monkeypatch) -> None:
    monkeypatch.chdir(CASES)
    code, out, err = run(["--output-format", "json", "clean.toml"], capsys)
    assert (code, json.loads(out)) == (0, [])
    assert err == "All checks passed.\n"


def test_full_output_shows_the_line_and_carets(capsys, monkeypatch) -> None:
    monkeypatch.chdir(CASES)
    _, out, _ = run(["--output-format", "full", "strings.toml"], capsys)
    block = out.split("\n\n")[0].splitlines()
    assert block == [
        "strings.toml:5:33: E101 unexpected 'succeded'; expected 'failed', 'finished', "
        "'inacted', 'started', 'succeeded' or 'terminated'",
        '5 | start_cond = "task \\"a\\\\b\\" has succeded"',
        "                                    ^^^^^^^^",
        "hint: did you mean 'succeeded'?",
    ]


def test_github_output(capsys, monkeypatch) -> None:
    monkeypatch.chdir(CASES)
    _, out, _ = run(["--output-format", "github", "clock.toml"], capsys)
    lines = out.splitlines()
    assert lines[0].startswith(
        "::error file=clock.toml,line=8,col=15,endLine=8,endColumn=65,title=C401::C401 "
    )
    assert any(line.startswith("::warning file=clock.toml,line=38,") for line in lines)


def test_summary_line(capsys, monkeypatch) -> None:
    monkeypatch.chdir(CASES)
    _, _, err = run(["clock.toml", "syntax.cond"], capsys)
    assert err.splitlines()[-1] == "Found 14 errors, 4 warnings in 2 files."


def test_warnings_alone_exit_0_unless_strict(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text('[tasks.a]\nfunc = "m:f"\nstart_cond = "every 10 minutes"\ntimeout = 3600\n')
    code, out, err = run([str(path)], capsys)
    assert code == 0 and " C404 " in out
    assert err.strip() == "Found 1 warning in 1 file."
    assert run(["--strict", str(path)], capsys)[0] == 1


# ---------------------------------------------------------------- suppression


@pytest.mark.parametrize(
    ("comment", "kept"),
    [
        ("", ["C401"]),
        ("# conddsl: ignore[C401]", []),
        ("# conddsl: ignore[C404, C401]", []),
        ("# conddsl: ignore", []),
        ("# conddsl: ignore[C402]", ["C401"]),
    ],
)
def test_suppression_comment(tmp_path: Path, capsys, comment: str, kept: list[str]) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text(
        '[tasks.a]\nfunc = "m:f"\n'
        f'start_cond = "time of day before 08:00 & time of day after 18:00"  {comment}\n'
    )
    _, out, _ = run([str(path)], capsys)
    assert [line.split(" ")[1] for line in out.splitlines()] == kept


def test_suppression_in_a_rule_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "rules.cond"
    path.write_text("a = time of dya after 10:00  # conddsl: ignore[E101]\nb = hourly\n")
    assert run([str(path)], capsys)[:2] == (0, "")


# ---------------------------------------------------------------- hostile inputs


def test_missing_path_is_exit_2_but_the_rest_is_checked(capsys, monkeypatch) -> None:
    monkeypatch.chdir(CASES)
    code, out, err = run(["no/such/file.toml", "toml_syntax.toml"], capsys)
    assert code == 2
    assert "C101" in out
    assert "conddsl: error: no/such/file.toml: no such file or folder" in err
    assert err.splitlines()[-1] == "Found 1 error in 1 file; 1 path could not be checked."


def test_other_extension_is_a_usage_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    code, _, err = run([str(path)], capsys)
    assert code == 2 and "not a .cond or .toml file" in err


def test_unreadable_file_is_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text("[tasks]\n")
    rules = tmp_path / "rules.cond"
    rules.write_text("a = daily\n")

    def refuse(path, limit):
        raise PermissionError(13, "Permission denied")

    # chmod 0 does not stop root: the reader itself refuses
    monkeypatch.setattr("conddsl.rules.textfile.read_bounded", refuse)
    code, out, err = run([str(path), str(rules)], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == "No findings, but 2 paths could not be checked."
    assert f"conddsl: error: {path}: Permission denied" in err
    assert f"conddsl: error: {rules}: Permission denied" in err


def test_folder_without_matching_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "readme.md").write_text("# nothing here")
    code, out, err = run([str(tmp_path)], capsys)
    assert (code, out) == (0, "")
    assert "no .cond or task .toml files found" in err


def test_folder_is_searched_recursively_and_other_toml_is_skipped(tmp_path: Path, capsys) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "bad.cond").write_text("a = time of dya\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "rules.cond").write_text("a = time of dya after 10:00\n")
    (deep / "tasks.toml").write_text('[tasks.x]\nfunc = "m:f"\nstart_cond = "dayly"\n')
    code, out, _ = run([str(tmp_path)], capsys)
    assert code == 1
    assert [line.split(": ")[1].split()[0] for line in out.splitlines()] == ["E101", "E120"]
    assert "pyproject" not in out and ".hidden" not in out


def test_misspelt_task_table_is_not_skipped(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text('[taks.x]\nfunc = "m:f"\n')
    code, out, _ = run([str(tmp_path)], capsys)
    assert code == 1 and "C201 unknown key 'taks'" in out


@pytest.mark.parametrize("name", ["garbage.toml", "garbage.cond"])
def test_binary_garbage(tmp_path: Path, capsys, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"office = daily\n\x89PNG\r\n\x1a\n\xff\xfe\x00\x01" * 3)
    code, out, _ = run([str(path)], capsys)
    assert code == 1
    assert out.strip() == f"{path}:2:1: C102 not a text file: byte 0x89 is not UTF-8"


def test_nul_bytes(tmp_path: Path, capsys) -> None:
    path = tmp_path / "rules.cond"
    path.write_bytes(b"office = daily\nx = \x00\n")
    _, out, _ = run([str(path)], capsys)
    assert out.strip() == f"{path}:2:5: C102 not a text file: it holds NUL bytes (a binary file?)"


def test_bom_and_crlf_keep_columns(tmp_path: Path, capsys) -> None:
    path = tmp_path / "rules.cond"
    path.write_bytes(b"\xef\xbb\xbfoffice = daily\r\nx = time of dya\r\n")
    _, out, _ = run([str(path)], capsys)
    assert out.strip().split(" ")[0] == f"{path}:2:13:"


def test_wrong_types_everywhere(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text(
        "scheduler = 5\n"
        "[tasks]\n"
        "a = 1\n"
        'b = { func = "m:f", start_cond = 5, end_cond = ["x"], timeout = true }\n'
    )
    code, out, _ = run([str(path)], capsys)
    assert code == 1
    assert [line.split(": ", 1)[1] for line in out.splitlines()] == [
        "C202 scheduler: expected a table, got 5",
        "C202 task 'a': expected a table, got 1",
        "C202 start_cond: expected text in quotes, got 5",
        "C202 end_cond: expected text in quotes, got a list",
        "C202 timeout: expected a duration: seconds as a number, or text such as "
        "'10 minutes', '1h30m' or '01:30:00'",
    ]


# Seconds of real work: run by CI's smoke pass, kept out of the default run.
@pytest.mark.long
@pytest.mark.smoke
def test_huge_files(tmp_path: Path, capsys) -> None:
    rules = tmp_path / "big.cond"
    body = "".join(f"rule_{i} = time of day after {i % 24:02d}:00 & weekly\n" for i in range(5000))
    rules.write_text(body + "broken = time of dya\n")
    long_line = tmp_path / "long.cond"
    long_line.write_text("x = " + " | ".join(["daily"] * 50_000) + " | time of dya\n")
    code, out, _ = run([str(rules), str(long_line)], capsys)
    assert code == 1
    assert [line.split(" ")[0] for line in out.splitlines()] == [
        f"{rules}:5001:18:",
        f"{long_line}:1:400013:",
    ]


def test_too_large_file_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    from conddsl.rules import textfile

    monkeypatch.setattr(textfile, "MAX_BYTES", 10)
    path = tmp_path / "rules.cond"
    path.write_text("office = daily\n")
    _, out, _ = run([str(path)], capsys)
    assert "C102 not a text file: the file is larger than 10 bytes" in out


def test_empty_and_comment_only_files_pass(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.cond").write_text("")
    (tmp_path / "b.cond").write_text("# nothing yet\n\n")
    (tmp_path / "tasks.toml").write_text("[scheduler]\n")
    assert run([str(tmp_path)], capsys)[:2] == (0, "")


def test_same_file_twice_is_reported_once(capsys, monkeypatch) -> None:
    monkeypatch.chdir(CASES)
    _, out, _ = run(["toml_syntax.toml", "./toml_syntax.toml", "."], capsys)
    assert out.count("toml_syntax.toml:3:14: C101") == 1


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--output-format", "xml", "x.toml"])
    assert exit_info.value.code == 2


def test_internal_error_is_not_a_traceback(capsys, monkeypatch) -> None:
    from conddsl.lint import runner

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "check_paths", boom)
    code, out, err = run([str(CASES / "clean.toml")], capsys)
    assert code == 2
    assert "internal error: boom" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        main(["check", "--debug", str(CASES / "clean.toml")])


def test_subprocess_exit_code_and_no_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conddsl.cli", "check", "schema.toml", "missing.cond"],
        cwd=CASES,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == (
        "schema.toml:3:12: C202 timezone: unknown timezone 'Europe/Helsinky'"
    )
    assert done.stderr.splitlines()[-1] == "Found 15 errors in 1 file; 1 path could not be checked."


_CHECK_ONLY = """
import sys
from conddsl.cli import main
code = main(["check", *sys.argv[1:]])
heavy = ("conddsl.runtime", "conddsl.history", "asyncio", "psycopg", "prometheus_client")
print(code, sorted(m for m in sys.modules if m.startswith(heavy)))
"""


def test_check_imports_neither_the_runtime_nor_the_history() -> None:
    """`conddsl check` runs in editors and hooks at every save: it loads what it checks
    with, not the scheduler (asyncio, the histories, PostgreSQL, metrics)."""
    done = subprocess.run(
        [sys.executable, "-c", _CHECK_ONLY, "clock.toml", "clean.toml", "syntax.cond"],
        cwd=CASES,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.splitlines()[-1] == "1 []", done.stderr


def test_schema_command(capsys) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "conddsl task file"
    assert schema["additionalProperties"] is False
    validator = jsonschema.Draft202012Validator(schema)
    good = {"scheduler": {"timeout": "30 minutes"}, "tasks": {"a": {"func": "m:f"}}}
    assert list(validator.iter_errors(good)) == []
    bad = {"tasks": {"a": {"func": "m:f", "timout": 5}}}
    assert [e.validator for e in validator.iter_errors(bad)] == ["additionalProperties"]


# ---------------------------------------------------------------- big files, pre-commit


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "check_bench", ROOT / "benchmarks" / "check_bench.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_500_task_file(tmp_path: Path, capsys) -> None:
    """The benchmark's file: clean as generated, and every planted mistake is found.
    (Its timing is measured by benchmarks/check_bench.py, not asserted here.)"""
    bench = _bench_module()
    path = bench.write_task_files(tmp_path, 500)
    assert run([str(path)], capsys)[:2] == (0, "")
    path = bench.write_task_files(tmp_path, 500, problems=5)
    code, out, _ = run([str(path)], capsys)
    assert code == 1
    assert sorted(line.split(" ")[1] for line in out.splitlines()) == [
        "C302",
        "C401",
        "C402",
        "C403",
        "C403",
    ]


def test_pre_commit_hook_definition() -> None:
    yaml = pytest.importorskip("yaml")
    import re

    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert (hook["id"], hook["entry"], hook["language"]) == (
        "conddsl-check",
        "conddsl check",
        "python",
    )
    files = re.compile(hook["files"])
    assert files.search("rules/office.cond") and files.search("scheduling/tasks.toml")
    assert not files.search("setup.py") and not files.search("cond.txt")


# ---------------------------------------------------------------- custom conditions


def test_custom_conditions_registered_in_the_process_are_known(tmp_path: Path, capsys) -> None:
    from conddsl.custom import default_registry

    default_registry.register("file exists", lambda path: True)
    (tmp_path / "rules.cond").write_text("office = time of day after 08:00\n")
    path = tmp_path / "tasks.toml"
    path.write_text(
        '[scheduler]\nrules = ["rules.cond"]\n'
        "[tasks.a]\nfunc = 'm:f'\nstart_cond = \"file exists '/data/x.csv' & office\"\n"
        "[tasks.b]\nfunc = 'm:f'\nstart_cond = \"file exists & office 'x'\"\n"
    )
    code, out, _ = run([str(path)], capsys)
    assert code == 1
    assert [line.split(": ", 1)[1] for line in out.splitlines()] == [
        "E122 'file exists' takes 1 quoted argument(s), 0 given",
        "E120 'office' is a named condition: it takes no quoted arguments",
    ]


def _c408(tmp_path: Path, body: str, *args: str, capsys) -> tuple[int, str]:
    (tmp_path / "jobs.py").write_text(
        "import sys\n"
        "from conddsl import TerminationFlag\n\n"
        "def deaf():\n    pass\n\n"
        "def listens(flag=TerminationFlag()):\n    pass\n\n"
        "async def also_listens(*, stop=TerminationFlag()):\n    pass\n"
    )
    (tmp_path / "tasks.toml").write_text(body)
    code, out, _ = run([*args, str(tmp_path / "tasks.toml")], capsys)
    return code, out


@pytest.mark.parametrize("args", [(), ("--import-funcs",)], ids=["source", "imported"])
def test_c408_a_thread_task_that_takes_no_flag_cannot_be_stopped(tmp_path, capsys, args):
    code, out = _c408(
        tmp_path,
        textwrap.dedent(
            """
            [tasks.deaf]
            func = "jobs:deaf"
            timeout = "1 minute"

            [tasks.deaf_ended]
            func = "jobs:deaf"
            end_cond = "time of day after 18:00"

            [tasks.listens]
            func = "jobs:listens"
            timeout = "1 minute"

            [tasks.also_listens]
            func = "jobs:also_listens"
            timeout = "1 minute"

            [tasks.in_a_process]
            func = "jobs:deaf"
            timeout = "1 minute"
            execution = "process"

            [tasks.no_limit]
            func = "jobs:deaf"
            timeout = "never"
            """
        ),
        *args,
        capsys=capsys,
    )
    assert code == 0  # a warning
    found = [line.split(" C408 ")[1] for line in out.splitlines() if " C408 " in line]
    assert found == [
        "task 'deaf' runs in a thread and has a timeout, but 'jobs:deaf' takes no"
        " TerminationFlag: nothing can stop it, it runs on until it returns",
        "task 'deaf_ended' runs in a thread and has an end condition, but 'jobs:deaf' takes no"
        " TerminationFlag: nothing can stop it, it runs on until it returns",
    ]


@pytest.mark.parametrize(
    ("scheduler", "found"),
    [
        ('timeout = "1 hour"', ["plain"]),  # the file's own default: it asked for it
        ('timeout = "never"', []),
        ("", []),  # the built-in 30 minutes: the file never asked for a timeout
    ],
)
def test_c408_counts_the_files_scheduler_timeout(tmp_path, capsys, scheduler, found):
    code, out = _c408(
        tmp_path,
        f'[scheduler]\n{scheduler}\n[tasks.plain]\nfunc = "jobs:deaf"\n'
        '[tasks.own_never]\nfunc = "jobs:deaf"\ntimeout = "never"\n',
        capsys=capsys,
    )
    assert code == 0
    reported = [
        line.split("task '")[1].split("'")[0] for line in out.splitlines() if "C408" in line
    ]
    assert reported == found
    if found:
        assert "has the scheduler's timeout" in out


def test_c408_reads_the_source_without_running_it(tmp_path, capsys):
    (tmp_path / "loud.py").write_text("raise SystemExit('ran')\n\ndef work():\n    pass\n")
    (tmp_path / "tasks.toml").write_text('[tasks.w]\nfunc = "loud:work"\ntimeout = "1 minute"\n')
    code, out, _ = run(["--output-format", "full", str(tmp_path / "tasks.toml")], capsys)
    assert code == 0 and "C408" in out
    assert 'use execution = "process"' in out


TERMINAL_BAIT = textwrap.dedent(
    r"""
    [tasks.a]
    command = ["true"]
    start_cond = "task 'n\u0085\u009b2J\u202e\u007f' has succeeded"
    """
)


def _terminal_safe(text: str) -> bool:
    return all(ch.isprintable() or ch in "\n " for ch in text)


def test_json_and_github_output_escape_what_a_terminal_acts_on(tmp_path: Path, capsys) -> None:
    """C1 controls (U+0085, U+009B: CSI), DEL and bidirectional overrides in a message and
    a path are escaped in JSON (``\\u009b``, which JSON readers decode back) and GitHub
    annotations; JSON itself escapes only U+0000-U+001F."""
    folder = tmp_path / "x\x9b\u202e"
    folder.mkdir()
    (folder / "tasks.toml").write_text(TERMINAL_BAIT)
    code, out, err = run(["--output-format", "json", str(folder / "tasks.toml")], capsys)
    assert code == 1 and _terminal_safe(out + err), ascii(out + err)
    assert "x\\u009b\\u202e" in out
    (item,) = json.loads(out)
    assert item["code"] == "C301" and item["filename"] == str(folder / "tasks.toml")
    # A message and hint as raw as a custom condition's could make them.
    found = Diagnostic("C301", "a\x85\x9b2J\x7f\u2028", "f", Span(1, 1, 1, 2), hint="\U000e0001")
    shown = as_json([found], {})
    assert _terminal_safe(shown) and "a\\u0085\\u009b2J\\u007f\\u2028" in shown
    assert json.loads(shown)[0]["message"] == found.message
    assert json.loads(shown)[0]["hint"] == found.hint
    code, out, err = run(["--output-format", "github", str(folder / "tasks.toml")], capsys)
    assert code == 1 and _terminal_safe(out + err), ascii(out + err)
    assert out.startswith("::error file=") and len(out.splitlines()) == 1


@pytest.mark.parametrize("output_format", ["concise", "full", "json", "github"])
def test_a_file_name_cannot_forge_an_output_line(tmp_path: Path, capsys, output_format) -> None:
    """A task file named ``a<newline>fake.toml:1:1: E999 forged.toml``, and a missing one
    alike: the line break is printed escaped, so no line of output is the forged one."""
    forged = "fake.toml:1:1: E999 forged"
    (tmp_path / f"a\n{forged}.toml").write_text(TERMINAL_BAIT)
    missing = str(tmp_path / f"m\n{forged}.toml")
    argv = ["--output-format", output_format, str(tmp_path / f"a\n{forged}.toml"), missing]
    code, out, err = run(argv, capsys)
    assert code == 2, out + err  # the missing path
    for line in (out + err).splitlines():
        assert not line.lstrip("\"' ").startswith("fake.toml"), out + err
    assert f"m\\n{forged}.toml: no such file or folder" in err
    assert "C301" in out


def test_equal_condition_texts_are_reported_at_each_place(tmp_path: Path, capsys) -> None:
    """The checks work out each distinct text once: every task written with it still has
    its own findings, at its own line and column (one written with an escape)."""
    path = tmp_path / "tasks.toml"
    start = "daily between 10:00 and 10:00 & cron 0 9 */2 * 1 & after task 'nosuch'"
    end = "time of day after 00:00"
    path.write_text(
        f'[tasks.a]\nfunc = "m:f"\nstart_cond = "{start}"\nend_cond = "{end}"\n'
        'timeout = "2 days"\n\n'
        f'[tasks.b]\nfunc = "m:f"\nstart_cond =   "\\u0064{start[1:]}"\nend_cond = "{end}"\n'
        'timeout = "2 days"\n'
    )
    _, out, _ = run([str(path)], capsys)
    found = sorted(line.split(" ")[0] + " " + line.split(" ")[1] for line in out.splitlines())
    place = f"{path}:"
    assert found == sorted(
        [
            f"{place}3:15: C406",
            f"{place}3:47: C407",
            f"{place}3:66: C301",
            f"{place}4:13: C402",
            f"{place}9:17: C406",
            f"{place}9:54: C407",
            f"{place}9:73: C301",
            f"{place}10:13: C402",
        ]
    ), out
