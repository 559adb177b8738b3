"""Wake-ups from other nodes: LISTEN on a connection of its own, a hint and never the truth.

Every record a node writes sends a NOTIFY (delivered when its transaction commits) naming
the task. The listener calls ``on_change(task)`` for each one from another node, and
``on_change(None)`` ("look at everything again") after it (re)connects, since
notifications sent while it was away are gone, and after each quiet ``poll`` seconds, the
safety net for a notification lost any other way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from conddsl.history.postgres.leases import CHANNEL

log = logging.getLogger("conddsl.history")

OnChange = Callable[[str | None], None]


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
    ) -> None:
        self._connect = connect
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
        while not self._stop.is_set():
            for notice in conn.notifies(timeout=self._poll):
                if notice.payload.startswith(prefix):
                    continue  # our own record: the scheduler already knows
                _, _, task = notice.payload.partition("\n")
                self._emit(task or None)
            if not self._stop.is_set():
                self._emit(None)  # the safety poll

    def _emit(self, task: str | None) -> None:
        try:
            self._on_change(task)
        except Exception:  # a broken callback must not end the listener
            log.exception("history change callback failed")
