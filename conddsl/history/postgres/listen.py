"""Wake-ups from other nodes: LISTEN on a connection of its own, a hint and never the truth.

Every record a node writes sends a NOTIFY (delivered when its transaction commits) naming
the task. The listener calls ``on_change(task)`` for the tasks other nodes' notifications
name, and ``on_change(None)`` ("look at everything again") after it (re)connects, since
notifications sent while it was away are gone, and every ``poll`` seconds, the safety net
for a notification lost any other way.

Anybody who may connect to the database may NOTIFY on the channel, so the wake-ups are
coalesced: a notification after a quiet spell is passed on at once, and the ones that
follow within ``MIN_GAP`` are gathered and passed on together, each task once (more than
``MAX_NAMED`` tasks: ``None`` once). A window that gathered ``FLOOD`` notifications or
more doubles the gap, up to ``MAX_GAP``; a calmer one brings it back. A flood then costs
the scheduler at most one look a ``MAX_GAP`` (the listener thread still reads every
notification the server sends).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from conddsl.history.postgres.leases import CHANNEL

log = logging.getLogger("conddsl.history")

OnChange = Callable[[str | None], None]

MIN_GAP = 0.05  # seconds between two passings-on of gathered notifications
MAX_GAP = 1.0  # ... at most, under a flood
FLOOD = 500  # notifications in one gap that make the next gap twice as long
MAX_NAMED = 32  # tasks passed on by name from one gap; more: everything is looked at


class Listener:
    """A daemon thread listening for other nodes' records."""

    def __init__(
        self,
        connect: Callable[[], Any],
        node: str,
        on_change: OnChange,
        *,
        poll: float,
        retry: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._clock = clock
        self._node = node
        self._on_change = on_change
        self._poll = poll
        self._retry = retry
        self._stop = threading.Event()
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        self.connected = threading.Event()
        self.reconnects = 0  # how many times the connection was lost and made again
        self._thread = threading.Thread(target=self._serve, name="conddsl-listen", daemon=True)

    def start(self) -> None:
        """Start listening (returns at once)."""
        self._thread.start()

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (tests terminate it)."""
        with self._conn_lock:
            conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    def close(self) -> None:
        """Stop listening and close the connection."""
        self._stop.set()
        with self._conn_lock:
            conn = self._conn
        if conn is not None:
            # Closing from here ends the notifies() wait of the thread.
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                conn.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _serve(self) -> None:
        failures = 0
        was_connected = False
        while not self._stop.is_set():
            try:
                conn = self._connect()
                conn.execute(f"LISTEN {CHANNEL}")
            except Exception as exc:  # any failure means: try again later
                failures += 1
                if failures == 1:
                    log.warning("history listener cannot connect (%s); retrying", exc)
                self._stop.wait(self._retry)
                continue
            with self._conn_lock:
                self._conn = conn
            if was_connected:
                self.reconnects += 1
                log.info("history listener connected again: resynchronising")
            failures = 0
            was_connected = True
            self.connected.set()
            self._emit(None)  # whatever happened while nobody listened
            try:
                self._listen(conn)
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning("history listener lost its connection (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                with self._conn_lock:
                    self._conn = None
                with contextlib.suppress(Exception):  # a broken connection may fail to close
                    conn.close()
            self._stop.wait(min(self._retry, 0.2))

    def _listen(self, conn: Any) -> None:
        prefix = self._node + "\n"
        clock = self._clock
        gap = MIN_GAP
        passed = -gap  # when gathered notifications were last passed on
        next_poll = clock() + self._poll
        gathered: set[str | None] = set()
        count = 0  # notifications from other nodes since the last passing-on
        while not self._stop.is_set():
            now = clock()
            if count and now >= passed + gap:
                # A window as busy as a flood makes the next one longer; a calm one resets.
                gap = min(gap * 2, MAX_GAP) if count >= FLOOD else MIN_GAP
                passed = now
                self._pass_on(gathered)
                gathered, count = set(), 0
            if now >= next_poll:
                next_poll = now + self._poll
                self._emit(None)  # the safety poll
            wait_until = passed + gap if count else next_poll
            # stop_after=1: back after the first packet (all of it: nothing is dropped).
            timeout = max(0.0, min(wait_until, next_poll) - clock())
            for notice in conn.notifies(timeout=timeout, stop_after=1):
                if notice.payload.startswith(prefix):
                    continue  # our own record: the scheduler already knows
                _, _, task = notice.payload.partition("\n")
                count += 1
                if None not in gathered:
                    gathered.add(task or None)
                    if len(gathered) > MAX_NAMED:
                        gathered = {None}

    def _pass_on(self, gathered: set[str | None]) -> None:
        """Pass on one window's notifications: everything, or each task once."""
        if None in gathered:
            self._emit(None)
            return
        for task in sorted(gathered, key=str):
            self._emit(task)

    def _emit(self, task: str | None) -> None:
        try:
            self._on_change(task)
        except Exception:  # a broken callback must not end the listener
            log.exception("history change callback failed")
