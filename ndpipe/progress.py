"""Progress of long runs on stderr, shared by fetch (downloads), import and sort.

stdout carries data only, so every line here goes to stderr. On a terminal one line is redrawn
in place (`\\r`), at most a few times a second; otherwise (a log file, a CI job) a plain line is
written now and then, so the log stays short: at most one line every NDPIPE_PROGRESS_INTERVAL
seconds (30 by default), and when the size of the work is known, only when another tenth of it
is done. A run that ends within the interval writes no progress line at all.
"""

from __future__ import annotations

import math
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, TextIO

from ndpipe.services import settings

DEFAULT_LINE_INTERVAL = 30.0
# Seconds between redraws on a terminal: often enough to look alive, rarely enough to cost nothing.
REDRAW_INTERVAL = 0.2
# Records between two looks at the clock in per-record loops.
CHECK_EVERY = 1024


def clear_line() -> None:
    """Wipe the redrawn line off the terminal before another message goes to stderr; the
    next update draws it again below that message."""
    if Progress.drawn is not None:
        Progress.drawn.clear()


def progress_interval() -> float:
    """Seconds between plain progress lines: NDPIPE_PROGRESS_INTERVAL, or 30."""
    return settings.seconds("NDPIPE_PROGRESS_INTERVAL", DEFAULT_LINE_INTERVAL, 86400)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def size(count: float) -> str:
    """Bytes in decimal units: `950 B`, `64 kB`, `12.3 MB`."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit in ("B", "kB") else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class Progress:
    """One progress line of a command: redrawn on a terminal, occasional plain lines otherwise.

    `update(text, fraction)` may be called as often as is convenient; it writes only when the
    rules in the module docstring allow. `fraction` (0 to 1), when the size of the work is
    known, limits plain lines to one per tenth. `close()` draws the last state on a terminal
    and ends the line; it writes nothing in plain mode, where a summary follows.
    """

    drawn: Progress | None = None  # the line now on the terminal, for clear_line

    def __init__(
        self,
        label: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.interval = progress_interval() if interval is None and enabled else interval or 0.0
        self.clock = clock
        self.started = clock()
        self.last_write = -math.inf if self.live else self.started
        self.tenth = -1
        self.text = ""
        self.written = ""

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def update(self, text: str, fraction: float | None = None) -> None:
        if not self.enabled:
            return
        self.text = text
        now = self.clock()
        if self.live:
            if now - self.last_write >= REDRAW_INTERVAL:
                self._draw()
                self.last_write = now
            return
        if now - self.last_write < self.interval or text == self.written:
            return
        if fraction is not None:
            tenth = int(min(max(fraction, 0.0), 1.0) * 10)
            if tenth <= self.tenth:
                return
            self.tenth = tenth
        self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()
        self.written = text
        self.last_write = now

    def _draw(self) -> None:
        self.stream.write(f"\r{self.label}: {self.text}\x1b[K")
        self.stream.flush()
        self.written = self.text
        Progress.drawn = self

    def clear(self) -> None:
        if Progress.drawn is self:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.last_write = -math.inf
            Progress.drawn = None

    def close(self) -> None:
        if self.live and self.text:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.text = ""
            Progress.drawn = None


class DownloadProgress:
    """An export file's download: bytes received of the total, and the users read so far.

    `response` is an httpx response hook: it learns the size from Content-Length (or from
    Content-Range when a download resumes) and reads the bytes received from the response, so
    the per-record loop only counts users and calls `update` every CHECK_EVERY of them.
    """

    def __init__(self, label: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.progress = Progress(label, enabled=enabled, stream=stream)
        self.current: Any = None
        self.offset = 0  # where the current response starts in the file
        self.total: int | None = None

    def response(self, response: Any) -> None:
        status = response.status_code
        if status not in (200, 206):
            return
        self.current, self.offset = response, 0
        length = response.headers.get("content-length")
        self.total = int(length) if length and length.isdigit() else None
        if status == 206:
            # bytes START-END/SIZE
            span, _, whole = (response.headers.get("content-range") or "").partition("/")
            start = span.split()[-1].partition("-")[0] if span.split() else ""
            self.offset = int(start) if start.isdigit() else 0
            self.total = int(whole) if whole.isdigit() else None

    def received(self) -> int:
        if self.current is None:
            return 0
        return self.offset + int(getattr(self.current, "num_bytes_downloaded", 0))

    def update(self, users: int) -> None:
        if self.progress.enabled:
            self.progress.update(*self._state(users))

    def _state(self, users: int) -> tuple[str, float | None]:
        received = self.received()
        fraction = None
        text = f"downloading, {size(received)}"
        if self.total:
            fraction = min(received / self.total, 1.0)
            text += f" of {size(self.total)} ({fraction:.0%})"
        return f"{text}, {users:,} user{'' if users == 1 else 's'}", fraction

    def close(self, users: int) -> None:
        """End the line on a terminal, showing the final count; a summary line follows."""
        if self.progress.live:
            self.progress.text = self._state(users)[0]
        self.progress.close()


class InputGauge:
    """How far a command is through its input, when that is regular files (stdin may be one).

    The sizes are taken when the gauge is made; `opened(stream)` is told each input as it is
    opened, in order, and `fraction()` is the share of all the bytes read so far, or None when
    some input is not a regular file (a pipe, a terminal), whose size nobody knows.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        self.sizes: list[int] | None = []
        for path in paths:
            try:
                info = os.fstat(0) if path == "-" else os.stat(path)
            except (OSError, ValueError):
                self.sizes = None
                break
            if not stat.S_ISREG(info.st_mode):
                self.sizes = None
                break
            self.sizes.append(info.st_size)
        self.total = sum(self.sizes) if self.sizes else 0
        self.done = 0  # bytes of the inputs before the current one
        self.index = -1
        self.stream: BinaryIO | None = None

    def opened(self, stream: BinaryIO) -> None:
        if self.sizes is None:
            return
        if self.index >= 0:
            self.done += self.sizes[self.index]
        self.index += 1
        self.stream = stream

    def fraction(self) -> float | None:
        if not self.total or self.sizes is None or self.stream is None:
            return None
        if self.stream.closed:  # read to its end (its descriptor may now be another file's)
            position = self.sizes[self.index]
        else:
            try:
                # The descriptor's offset: what was read, whatever buffers sit above it.
                position = os.lseek(self.stream.fileno(), 0, os.SEEK_CUR)
            except (OSError, ValueError):
                return None
        return min((self.done + position) / self.total, 1.0)
