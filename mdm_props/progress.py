"""Progress on stderr for anything slower than a few seconds: one small bar shared by every subcommand.

``with Progress(total, "verify") as bar: ... bar.update(1, note)`` prints ``verify  12/48  25%  3.1 s  note``.
On a terminal the line is redrawn in place (at most every 0.1 s); elsewhere (CI, a pipe) one line is
written per tenth of the work or every 10 s, whichever comes first, so logs stay short. ``quiet=True``
prints nothing. The callback style that the runners take, ``progress(k, n)``, is :meth:`Progress.callback`.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .validation import require_int

__all__ = ["Progress"]


class Progress:
    """A progress bar over ``total`` units of work (see the module docstring)."""

    def __init__(self, total: int, label: str, *, quiet: bool = False, stream: TextIO | None = None):
        self.total = require_int("total", total, minimum=0)
        self.label = label
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.done = 0
        self.start = time.perf_counter()
        self._last_print = -1e9
        self._last_tenth = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def line(self, note: str = "") -> str:
        pct = f"{100 * self.done / self.total:3.0f}%" if self.total else "   -"
        text = f"{self.label}  {self.done}/{self.total}  {pct}  {self.elapsed():.1f} s"
        return f"{text}  {note}" if note else text

    def update(self, n: int = 1, note: str = "") -> None:
        """``n`` more units done (``note``: a short word on the last one)."""
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        if self.quiet:
            return
        now = time.perf_counter()
        if self._tty:
            if now - self._last_print >= 0.1 or self.done == self.total:
                self.stream.write("\r" + self.line(note) + "\033[K")
                self.stream.flush()
                self._last_print = now
            return
        tenth = 10 * self.done // self.total if self.total else 0
        if tenth != self._last_tenth or now - self._last_print >= 10.0:
            self.stream.write(self.line(note) + "\n")
            self.stream.flush()
            self._last_tenth, self._last_print = tenth, now

    def set(self, done: int, note: str = "") -> None:
        """Set the count of units done to ``done``."""
        self.update(done - self.done, note)

    def callback(self, k: int, n: int, *_ignored) -> None:
        """The runners' ``progress(k, n, ...)`` callback: ``k`` of ``n`` done."""
        if n != self.total:
            self.total = n
        self.set(k)

    def close(self) -> None:
        """End the bar (a terminal line gets its newline)."""
        if not self.quiet and self._tty and self._last_print > -1e9:
            self.stream.write("\n")
            self.stream.flush()
