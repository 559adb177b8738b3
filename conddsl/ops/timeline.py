"""``conddsl timeline FILE --from … --to … -o week.svg``: a picture of when tasks may and did run.

One row per task on a time axis: its start windows (``windows()`` of its start condition
with the history, light bars on top) and its runs from the history (bars below, coloured
by outcome, a tooltip each). The SVG is standalone (no script, no external file) and
every bar carries ``data-`` attributes with its exact times, so a program can read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape, quoteattr

from conddsl.errors import UsageError, printable
from conddsl.history import History
from conddsl.ops.common import PastRun, Setup, runs_of, show_span, show_time
from conddsl.ops.status import session_at

__all__ = ["TaskRow", "timeline_rows", "timeline_svg", "MAX_WINDOWS"]

# A condition true every minute has 10,080 windows a week: past this many a row says so
# instead of drawing bars narrower than a pixel.
MAX_WINDOWS = 2000

COLOURS = {
    "success": "#2e7d32",
    "fail": "#c62828",
    "terminate": "#ef6c00",
    "crash": "#6a1b9a",
    "inaction": "#757575",
    "running": "#1565c0",
}
WINDOW_COLOUR = "#c8e6c9"

_LABEL_WIDTH = 170
_PLOT_WIDTH = 1000
_ROW_HEIGHT = 34
_TOP = 44
_STEPS = [
    timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
]


@dataclass
class TaskRow:
    """What one row draws: the task's start windows and its runs in the range."""

    task: str
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)
    runs: list[PastRun] = field(default_factory=list)
    note: str | None = None  # why no windows are drawn, when they are not


def timeline_rows(
    setup: Setup, history: History, start: datetime, end: datetime, now: datetime
) -> list[TaskRow]:
    """The rows of the picture, one per task, in the file's order."""
    if not start < end:
        raise UsageError(f"--from {start.isoformat()} must be before --to {end.isoformat()}")
    session = session_at(now)
    # Runs that began before the range but ended in it are drawn too (clipped).
    records = history.records(since=start - timedelta(days=1), until=end)
    runs = [
        run
        for run in runs_of(records)
        if run.start.at < end and (run.finish is None or run.finish.at >= start)
    ]
    rows = []
    for name, task in setup.model.tasks.items():
        row = TaskRow(name, runs=[run for run in runs if run.task == name])
        if task.disabled:
            row.note = "disabled"
        elif task.role is not None:
            row.note = task.role
        elif task.start_cond is None:
            row.note = "no start_cond"
        else:
            try:
                condition = setup.condition(task.start_cond)
                context = {"task": name, "history": history, "session": session}
                for window in condition.windows(start, end, **context):
                    if len(row.windows) >= MAX_WINDOWS:
                        row.note = f"more than {MAX_WINDOWS} windows: only the first are drawn"
                        break
                    row.windows.append(window)
            except Exception as error:  # a custom condition without its module, say
                row.note = f"windows cannot be foreseen here: {error}"
        rows.append(row)
    return rows


def timeline_svg(
    rows: list[TaskRow], start: datetime, end: datetime, now: datetime, setup: Setup
) -> str:
    """The standalone SVG document of ``rows`` between ``start`` and ``end``."""
    zone = setup.zone
    span = (end - start).total_seconds()

    def x(at: datetime) -> float:
        clipped = min(max(at, start), end)
        return round(_LABEL_WIDTH + (clipped - start).total_seconds() / span * _PLOT_WIDTH, 2)

    height = _TOP + _ROW_HEIGHT * len(rows) + 60
    width = _LABEL_WIDTH + _PLOT_WIDTH + 20
    title = (
        f"conddsl timeline of {setup.path.name}: {show_time(start, zone)} to {show_time(end, zone)}"
    )
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12"'
        f" data-from={_iso(start)} data-to={_iso(end)}>",
        f"<title>{escape(printable(title))}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="18" font-size="14" font-weight="bold">{escape(printable(title))}</text>',
    ]
    axis_bottom = _TOP + _ROW_HEIGHT * len(rows)
    for tick in _ticks(start, end, zone):
        tx = x(tick)
        out.append(
            f'<line class="tick" x1="{tx}" y1="{_TOP - 6}" x2="{tx}" y2="{axis_bottom}"'
            ' stroke="#e0e0e0"/>'
        )
        label = tick.astimezone(zone).strftime("%a %d %H:%M")
        out.append(
            f'<text x="{tx}" y="{_TOP - 10}" text-anchor="middle" font-size="10">{label}</text>'
        )
    if start <= now < end:
        nx = x(now)
        out.append(
            f'<line class="now" x1="{nx}" y1="{_TOP - 6}" x2="{nx}" y2="{axis_bottom}"'
            f' stroke="black" stroke-dasharray="4 3" data-at={_iso(now)}/>'
        )
    for index, row in enumerate(rows):
        top = _TOP + index * _ROW_HEIGHT
        out.append(f'<g class="task" data-task={quoteattr(row.task)}>')
        out.append(
            f'<text x="10" y="{top + 20}">{escape(printable(row.task))}</text>'
            f'<line x1="{_LABEL_WIDTH}" y1="{top + _ROW_HEIGHT}" x2="{_LABEL_WIDTH + _PLOT_WIDTH}"'
            f' y2="{top + _ROW_HEIGHT}" stroke="#eeeeee"/>'
        )
        for w_start, w_end in row.windows:
            left, right = x(w_start), x(w_end)
            tip = f"may start: {show_time(w_start, zone)} to {show_time(w_end, zone)}"
            out.append(
                f'<rect class="window" x="{left}" y="{top + 4}" width="{max(right - left, 1)}"'
                f' height="10" fill="{WINDOW_COLOUR}" data-start={_iso(w_start)}'
                f" data-end={_iso(w_end)}><title>{escape(tip)}</title></rect>"
            )
        for run in row.runs:
            finish = run.finish.at if run.finish is not None else now
            left, right = x(run.start.at), x(finish)
            ran = "still open" if run.duration is None else f"ran {show_span(run.duration)}"
            tip = f"{printable(run.task)}: {run.outcome}, started {show_time(run.start.at, zone)}"
            tip += f", {ran}"
            if run.finish is not None and run.finish.reason:
                tip += f" (reason: {printable(run.finish.reason)})"
            if run.finish is not None and run.finish.message:
                tip += f": {printable(' '.join(run.finish.message.split())[:200])}"
            end_attr = _iso(run.finish.at) if run.finish is not None else '""'
            out.append(
                f'<rect class="run" x="{left}" y="{top + 17}" width="{max(right - left, 2)}"'
                f' height="12" fill="{COLOURS.get(run.outcome, "#000000")}"'
                f" data-outcome={quoteattr(run.outcome)}"
                f" data-run-id={quoteattr(run.start.run_id or '')}"
                f" data-start={_iso(run.start.at)} data-end={end_attr}>"
                f"<title>{escape(tip)}</title></rect>"
            )
        if row.note:
            out.append(
                f'<text class="note" x="{_LABEL_WIDTH + 4}" y="{top + 13}" font-size="10"'
                f' fill="#555555">{escape(printable(row.note))}</text>'
            )
        out.append("</g>")
    legend_y = axis_bottom + 30
    items = [("may start", WINDOW_COLOUR)] + [(name, colour) for name, colour in COLOURS.items()]
    lx = _LABEL_WIDTH
    for name, colour in items:
        out.append(
            f'<rect x="{lx}" y="{legend_y - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{lx + 16}" y="{legend_y}">{name}</text>'
        )
        lx += 110
    zone_name = show_time(start, zone).rsplit(" ", 1)[-1]
    out.append(f'<text x="10" y="{legend_y}" font-size="10">times in {escape(zone_name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _iso(at: datetime) -> str:
    return quoteattr(at.astimezone(timezone.utc).isoformat())


def _ticks(start: datetime, end: datetime, zone) -> list[datetime]:
    """Axis ticks on round local times, at most about a dozen."""
    span = end - start
    step = next((s for s in _STEPS if span / s <= 12), _STEPS[-1])
    local = start.astimezone(zone)
    if step >= timedelta(days=1):
        first = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        minutes = int(step.total_seconds() // 60)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        passed = (local.hour * 60 + local.minute) // minutes * minutes
        first = day + timedelta(minutes=passed)
    ticks = []
    at = first
    while at < end and len(ticks) < 40:
        if at >= start:
            ticks.append(at)
        at = (at.astimezone(timezone.utc) + step).astimezone(zone)
    return ticks
