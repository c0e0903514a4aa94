"""Progress bars for long commands (import, export to a file, reembed, backup).

A bar is drawn on stderr with tqdm (count, total, rate, time left) only when stderr is a
terminal; otherwise nothing is printed, so logs and pipes stay clean. ``Progress`` is safe to
update from a worker thread (``reembed`` reports from one).
"""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

# For a terminal that reports no size (a fresh pseudo-terminal says 0x0, and tqdm then hides
# its bar as if it were below the bottom row).
FALLBACK_SIZE = (80, 24)


def _size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.columns, size.lines


def wanted(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stderr) is a terminal, where a bar can redraw itself."""
    stream = stream if stream is not None else sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


class Progress:
    """A bar for ``description``, counted in ``unit`` (``"B"``: bytes, scaled to KiB/MiB).

    ``total`` may be set later with ``set(done, total)``; ``advance(n)`` adds to the count.
    Quiet (every method a no-op) when stderr is not a terminal or ``enabled`` is false.
    """

    def __init__(self, description: str, *, unit: str = "memories", total: int | None = None,
                 enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = wanted(self._stream) if enabled is None else enabled
        self._lock = threading.Lock()
        self._description = description
        self._unit = unit
        self._total = total
        self._bar: Any = None  # drawn at the first update, once the total may be known

    def _draw(self) -> Any:
        if self._bar is None and self._enabled:
            scale = self._unit == "B"
            columns, lines = _size(self._stream)
            sized = bool(columns and lines)
            self._bar = tqdm(total=self._total, desc=self._description,
                             unit=self._unit if scale else f" {self._unit}", unit_scale=scale,
                             unit_divisor=1024 if scale else 1000, file=self._stream,
                             ncols=columns if sized else FALLBACK_SIZE[0],
                             nrows=lines if sized else FALLBACK_SIZE[1],
                             dynamic_ncols=sized, leave=True, mininterval=0.1)
        return self._bar

    @property
    def enabled(self) -> bool:
        return self._enabled

    def advance(self, count: int = 1) -> None:
        """Add ``count`` to the number done."""
        if self._enabled:
            with self._lock:
                self._draw().update(count)

    def set(self, done: int, total: int | None = None) -> None:
        """Set the number done (and the total, when known)."""
        if self._enabled:
            with self._lock:
                if total is not None:
                    self._total = total
                bar = self._draw()
                if total is not None and bar.total != total:
                    bar.total = total
                bar.update(done - bar.n)

    def close(self) -> None:
        """Draw the final state and stop. Idempotent."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
