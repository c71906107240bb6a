"""How fast a stream's audio arrives: seconds of audio per wall second, over a sliding window,
as it was when each piece arrived (a queue may hand the audio on later)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class ArrivalRate:
    def __init__(self, window_s: float, now: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._now = now
        self._total = 0.0
        self._marks: deque[tuple[float, float]] = deque()
        """(wall time, audio seconds arrived by then), oldest first; the first one at or before
        the window's start once the stream is older than the window."""

        self._arrived_at: deque[tuple[float, float]] = deque()
        """(audio seconds arrived, the rate then), per piece not yet asked about."""

    def add(self, seconds: float) -> None:
        self._total += seconds
        self._marks.append((self._now(), self._total))
        self._forget()
        self._arrived_at.append((self._total, self.rate()))

    def rate_at(self, position: float) -> float:
        """The rate as it was when the audio at `position` (seconds into the stream) arrived;
        the positions asked about may only grow."""
        while len(self._arrived_at) > 1 and self._arrived_at[0][0] < position:
            self._arrived_at.popleft()
        return self._arrived_at[0][1] if self._arrived_at else 0.0

    def rate(self) -> float:
        """Audio seconds that arrived in the last `window_s` wall seconds, per second (a stream
        younger than the window is measured as if nothing came before it)."""
        self._forget()
        cutoff = self._now() - self.window_s
        before = self._marks[0][1] if self._marks and self._marks[0][0] <= cutoff else 0.0
        return (self._total - before) / self.window_s

    def _forget(self) -> None:
        cutoff = self._now() - self.window_s
        while len(self._marks) > 1 and self._marks[1][0] <= cutoff:
            self._marks.popleft()
