"""A progress line on stderr for long work: a bar when the total is known, else count + rate."""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 28


def render(done: int, elapsed: float, fraction: float | None, unit: str = "msgs") -> str:
    """One progress line (pure)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    figures = f"{done:,} {unit}  {rate:,.0f} {unit}/s"
    if fraction is None:
        return figures
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%}  {figures}"


class Progress:
    """Redraws in place on a terminal; on a pipe (when forced) prints a line per interval."""

    def __init__(self, out: TextIO, *, enabled: bool, interval: float = 0.1) -> None:
        self.out = out
        self.enabled = enabled
        self.tty = out.isatty()
        self.interval = interval if self.tty else max(interval, 1.0)
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, fraction: float | None = None) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < self.interval:
            return
        self._last = now
        self._draw(render(done, now - self.started, fraction))

    def finish(self, done: int, fraction: float | None = None) -> None:
        if self.enabled:
            self._draw(render(done, time.monotonic() - self.started, fraction))
            if self.tty:
                self.out.write("\n")
                self.out.flush()

    def _draw(self, line: str) -> None:
        self.out.write(f"\r\x1b[2K{line}" if self.tty else f"{line}\n")
        self.out.flush()
