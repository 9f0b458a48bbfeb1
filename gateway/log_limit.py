"""A log message that a peer can cause at any rate, written at a bounded rate.

A backend that writes a million junk lines must not write a million log records: that is hundreds
of megabytes of stderr, and the event loop's time spent formatting them is every client's latency.
"""

from __future__ import annotations

import asyncio
import logging
import time


class LimitedLog:
    """Logs at most `burst` records per `window` seconds; of the rest it counts the `count`s each
    report carries, and logs their sum when the window ends ("... and 12345 more <what> in the
    last 5 s")."""

    def __init__(self, logger: logging.Logger, what: str, *, burst: int = 3, window: float = 5.0) -> None:
        self.logger = logger
        self.what = what
        self.burst = burst
        self.window = window
        self._window_end = 0.0
        self._logged = 0
        self._dropped = 0
        self._timer: asyncio.TimerHandle | None = None

    def warning(self, count: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now >= self._window_end:
            self.flush()
            self._window_end = now + self.window
            self._logged = 0
        if self._logged < self.burst:
            self._logged += 1
            self.logger.warning(message, *args)
            return
        self._dropped += count
        if self._timer is None:  # the count is told when the window ends, even if nothing follows
            self._timer = asyncio.get_running_loop().call_later(self._window_end - now, self.flush)

    def flush(self) -> None:
        """Logs the count of what was left out, if anything was."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._dropped:
            self.logger.warning("... and %d more %s in the last %g s", self._dropped, self.what, self.window)
            self._dropped = 0
