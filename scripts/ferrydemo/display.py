"""What the demo prints: step headers, a progress line, the summary (pure formatting)."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any, TextIO

BAR_WIDTH = 30


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = width if total <= 0 else min(width, done * width // total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


@dataclass(frozen=True)
class Progress:
    stored: int
    total: int
    lag: int | None
    collectors: int
    elapsed: float  # since the pass's streamers started: the summary's window (Summary.seconds)

    def line(self) -> str:
        pct = 100.0 if self.total <= 0 else 100.0 * self.stored / self.total
        rate = self.stored / self.elapsed if self.elapsed > 0 else 0.0
        lag = "?" if self.lag is None else str(self.lag)
        return (f"{bar(self.stored, self.total)} {self.stored}/{self.total} rows stored "
                f"({pct:5.1f}%)  lag {lag}  collectors {self.collectors}  {rate:,.0f} rows/s")


class Console:
    """Step headers and a progress line that redraws in place on a terminal."""

    def __init__(self, out: TextIO = sys.stdout, steps: int = 9) -> None:
        self.out, self.steps, self.step_no = out, steps, 0
        self.tty = out.isatty()
        self._last_plain = float("-inf")
        self._last_line = ""
        self._open = False  # a terminal's progress line is being redrawn: end it first

    def _end_line(self) -> None:
        if self._open:
            self.out.write("\n")
            self._open = False

    def step(self, text: str) -> None:
        self._end_line()
        self.step_no += 1
        self.out.write(f"\n[{self.step_no}/{self.steps}] {text}\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self._end_line()
        self.out.write(f"{text}\n")
        self.out.flush()

    def info(self, text: str) -> None:
        self._end_line()
        self.out.write(f"      {text}\n")
        self.out.flush()

    def start_progress(self) -> None:
        """A new progress display (a pass's): its first line is shown at once, and its
        elapsed time starts again, so the previous display's does not hold it back."""
        self._last_plain, self._last_line = float("-inf"), ""

    def progress(self, progress: Progress, *, final: bool = False) -> None:
        if self.tty:
            self.out.write("\r      " + progress.line() + ("\n" if final else ""))
            self._open = not final
        elif (final or progress.elapsed - self._last_plain >= 2.0) and (
                progress.line() != self._last_line):
            # Not a terminal (CI, a pipe): one line every few seconds instead of redraws.
            self._last_plain, self._last_line = progress.elapsed, progress.line()
            self.out.write("      " + progress.line() + "\n")
        self.out.flush()

    def block(self, text: str) -> None:
        self._end_line()
        for row in text.rstrip("\n").splitlines():
            self.out.write(f"      {row}\n")
        self.out.flush()


def pace(rate_per_streamer: int) -> str:
    """How a pass was paced, in the pipeline's own terms."""
    if rate_per_streamer > 0:
        return f"spec.streamer.ratePerSecond {rate_per_streamer:,} rows/s per streamer"
    return "spec.streamer.ratePerSecond 0: as fast as the pipeline goes"


@dataclass(frozen=True)
class Summary:
    label: str  # "paced" or "unpaced"
    rate_per_streamer: int  # the pass's spec.streamer.ratePerSecond (0: unpaced)
    rows_in_sample: int
    rows_rejected: int
    rows_stored: int
    duplicates: int
    missing: int
    unexpected: int
    dead_letters: int
    seconds: float  # from the streamers' start to the last row stored (its commit)
    streamers: int
    collectors_peak: int
    gpus: int
    failover: str | None = None  # --failover: which broker was killed, which took over
    takeover_seconds: float | None = None

    @property
    def throughput(self) -> float:
        return self.rows_stored / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicates == 0 and self.unexpected == 0

    @property
    def rate_text(self) -> str:
        if self.seconds <= 0:  # nothing stored after the streamers started: nothing to time
            return "- rows/s"
        return f"{self.throughput:,.0f} rows/s"

    def as_dict(self) -> dict[str, float | int | bool | str | None]:
        return {**asdict(self), "throughput": self.throughput, "ok": self.ok}

    def text(self) -> str:
        rows = [
            ("rows in the sample", f"{self.rows_in_sample:,} ({self.rows_rejected:,} rejected "
                                   "by the streamers' validation)"),
            ("rows stored", f"{self.rows_stored:,} (read back through the query API, "
                            f"{self.gpus} GPUs)"),
            ("missing", f"{self.missing:,}"),
            ("duplicates", f"{self.duplicates:,}"),
            ("not in the sample", f"{self.unexpected:,}"),
            ("dead letters", f"{self.dead_letters:,}"),
            ("time", f"{self.seconds:.1f} s (from the streamers' start to the last row "
                     "stored)"),
            ("throughput", f"{self.rate_text} ({self.label}: "
                           f"{pace(self.rate_per_streamer)})"),
            ("streamers / collectors", f"{self.streamers} / {self.collectors_peak} (peak)"),
        ]
        if self.failover is not None and self.takeover_seconds is not None:
            rows.append(("failover", f"{self.failover}: took over in "
                                     f"{self.takeover_seconds:.2f} s"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@dataclass(frozen=True)
class Report:
    """Every pass's summary: the demo's verdict and its throughput, paced and unpaced."""
    passes: tuple[Summary, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.passes)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "passes": [p.as_dict() for p in self.passes]}

    def text(self) -> str:
        lines = [(p.label, f"{p.rows_stored:,} rows", f"{p.seconds:.1f} s",
                  p.rate_text, f"({pace(p.rate_per_streamer)})")
                 for p in self.passes]
        widths = [max(len(line[i]) for line in lines) for i in range(4)]
        out = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d:>{widths[3]}}  {e}"
               for a, b, c, d, e in lines]
        verdict = "yes" if self.ok else "NO (see the summaries above)"
        return "\n".join([*out, f"every row stored exactly once: {verdict}"])
