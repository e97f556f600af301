"""Progress output for long work: a live bar on a terminal, a line every few seconds in a log."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """``with Progress("download", total) as p: p.update(n)``; total may be None."""

    def __init__(self, label: str, total: float | None, *, unit: str = "bytes",
                 stream: TextIO | None = None, every: float = 5.0):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.done = 0.0
        self.started = self.last = time.monotonic()

    def _amount(self, n: float) -> str:
        return human_bytes(n) if self.unit == "bytes" else f"{n:,.0f} {self.unit}"

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            pct = 100 * self.done / self.total
            eta = (self.total - self.done) / rate if rate > 0 else 0
            bar = "#" * int(pct / 5)
            return (f"{self.label}: [{bar:<20}] {pct:5.1f}% {self._amount(self.done)} of "
                    f"{self._amount(self.total)}, {self._amount(rate)}/s, eta {eta:,.0f}s")
        return f"{self.label}: {self._amount(self.done)}, {self._amount(rate)}/s"

    def update(self, n: float) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._emit()

    def advance_to(self, done: float, total: float | None = None) -> None:
        """Callback form: ``done`` so far, of ``total`` when known."""
        if total is not None:
            self.total = total
        self.update(done - self.done)

    def _emit(self, end: str = "") -> None:
        if self.tty:
            self.stream.write("\r" + self._line() + end)
        else:
            self.stream.write(self._line() + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._emit(end="\n")
