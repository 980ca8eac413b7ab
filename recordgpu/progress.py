"""A tiny progress bar for long CLI work: drawn on a terminal, silent in pipes, logs and CI.

``Progress`` writes one self-redrawing line (``\\r``) to a stream, at most ``max_rate`` times a second, and
only when that stream is a terminal and ``CI`` is not set. ``RECORDGPU_PROGRESS=1`` / ``=0`` forces it on /
off. Library code never prints; it reports through :mod:`logging`, and the command-line tools decide whether
to show a bar::

    with Progress(total=len(items), label="preview", unit="img") as bar:
        for item in items:
            work(item)
            bar.update()

    for item in progress(items, label="preview"):   # the same, as an iterator wrapper
        work(item)
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from typing import IO, Iterable, Iterator, TypeVar

__all__ = ["Progress", "progress", "should_show"]

T = TypeVar("T")
_BAR_WIDTH = 30


def should_show(stream: IO[str] | None) -> bool:
    """True when a progress bar on ``stream`` would be seen by a person.

    ``RECORDGPU_PROGRESS`` (``1``/``0``) decides if set; otherwise the stream must be a terminal, ``CI``
    must be unset (CI runners sometimes fake a TTY) and ``TERM`` must not be ``dumb``.
    """
    forced = os.environ.get("RECORDGPU_PROGRESS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return stream is not None
    if forced in ("0", "false", "no", "off"):
        return False
    if stream is None or os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or fake streams
        return False


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """One progress line. ``total`` None gives a counter without a bar or ETA.

    ``enabled`` None decides with :func:`should_show` on ``stream`` (default ``sys.stderr``). A disabled
    bar still counts (``count``), so callers can log a summary from it.
    """

    def __init__(self, total: int | None = None, label: str = "", *, unit: str = "it",
                 stream: IO[str] | None = None, enabled: bool | None = None, max_rate: float = 10.0) -> None:
        self.total = None if total is None else max(int(total), 0)
        self.label = label
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = should_show(self.stream) if enabled is None else bool(enabled)
        self.count = 0
        self._interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self._start = time.monotonic()
        self._last_draw = float("-inf")
        self._width = 0
        self._drawn = -1  # count shown by the last draw
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items and redraw if enough time has passed."""
        self.count += n
        if self.enabled and not self._closed:
            now = time.monotonic()
            if now - self._last_draw >= self._interval or (self.total is not None and self.count >= self.total):
                self._draw(now)

    def text(self, now: float | None = None) -> str:
        """The line as it would be drawn now (without the carriage return)."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.count / elapsed
        head = f"{self.label} " if self.label else ""
        if self.total:
            frac = min(self.count / self.total, 1.0)
            filled = int(frac * _BAR_WIDTH)
            eta = (self.total - self.count) / rate if rate > 0 and self.count < self.total else 0.0
            return (f"{head}[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {frac * 100:3.0f}% "
                    f"{self.count}/{self.total} {rate:,.1f} {self.unit}/s "
                    f"{_clock(elapsed)}<{_clock(eta)}")
        return f"{head}{self.count} {self.unit} {rate:,.1f} {self.unit}/s {_clock(elapsed)}"

    def _draw(self, now: float) -> None:
        self._last_draw, self._drawn = now, self.count
        line = self.text(now)
        cols = shutil.get_terminal_size((80, 24)).columns
        if len(line) >= cols:
            line = line[:max(cols - 1, 1)]
        pad = " " * max(self._width - len(line), 0)  # wipe what a longer previous line left behind
        self._width = len(line)
        try:
            self.stream.write("\r" + line + pad)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing, keep counting
            self.enabled = False

    def close(self) -> None:
        """Draw the final state and end the line (idempotent)."""
        if self._closed:
            return
        if self.enabled:
            if self._drawn != self.count:
                self._draw(time.monotonic())
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self._closed = True

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(items: Iterable[T], total: int | None = None, label: str = "", **kwargs) -> Iterator[T]:
    """Yield ``items`` while showing a :class:`Progress` (``total`` defaults to ``len(items)`` if it has one)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, label, **kwargs) as bar:
        for item in items:
            yield item
            bar.update()
