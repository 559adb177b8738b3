"""Reading a file as text, or saying exactly why it is not text."""

from __future__ import annotations

from pathlib import Path

from conddsl.bounded import FileTooLarge, read_bounded
from conddsl.errors import LineIndex, Span
from conddsl.rules.diagnostics import Diagnostic

# Larger files are refused (the reading stops there): no rule or task file comes close.
MAX_BYTES = 50_000_000


def read_text(path: Path, display: str) -> tuple[str | None, Diagnostic | None]:
    """The file's text (UTF-8, CRLF read as LF, a leading BOM dropped) or a C102 finding.

    Raises :class:`OSError` when the file cannot be read at all, and
    :class:`~conddsl.bounded.FileRefused` (one) when it is not a regular file.
    """
    try:
        data = read_bounded(path, MAX_BYTES)
    except FileTooLarge as error:
        return None, _not_text(display, 1, 1, error.strerror)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _byte_position(data, error.start)
        byte = data[error.start]
        return None, _not_text(display, line, column, f"byte 0x{byte:02x} is not UTF-8")
    nul = text.find("\0")
    if nul >= 0:
        line, column = LineIndex(text).position(nul)
        return None, _not_text(display, line, column, "it holds NUL bytes (a binary file?)")
    return text.replace("\r\n", "\n"), None


def _byte_position(data: bytes, at: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, at) + 1
    column = len(data[line_start:at].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, at) + 1, column


def _not_text(display: str, line: int, column: int, why: str) -> Diagnostic:
    return Diagnostic(
        "C102",
        f"not a text file: {why}",
        display,
        Span(line, column, line, column + 1),
        hint="rule and task files are UTF-8 text",
    )
