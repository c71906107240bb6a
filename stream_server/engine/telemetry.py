"""Latency distributions of live streams, kept as cumulative histograms for /metrics.

The engine reports delays through LiveTranscriber's LatencyObserver hook; a transport renders
them. Nothing here knows HTTP or Prometheus' text format.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)
"""Upper bounds (seconds); 3 s is the commit-latency goal of the load sweep."""


@dataclass
class Histogram:
    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    """Per bound, observations <= it (not cumulative); one extra slot for +Inf."""
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it), ending with (inf, count)."""
        running, out = 0, []
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            running += n
            out.append((bound, running))
        return out


class LatencyStats:
    """Shared by every live stream: partial and commit delays, wall seconds after the audio
    concerned arrived. Implements engine.stream.LatencyObserver."""

    def __init__(self) -> None:
        self.partial_latency = Histogram()
        self.commit_latency = Histogram()

    def partial(self, delay: float) -> None:
        self.partial_latency.observe(max(0.0, delay))

    def committed(self, delays: Sequence[float]) -> None:
        for delay in delays:
            self.commit_latency.observe(max(0.0, delay))


class MovingAverage:
    """An exponentially weighted average; `value` is None until the first sample."""

    def __init__(self, smoothing: float = 0.2):
        self.smoothing = smoothing
        self.value: float | None = None
        self.samples = 0

    def observe(self, sample: float) -> None:
        self.value = sample if self.value is None else self.value + self.smoothing * (sample - self.value)
        self.samples += 1


class LagAlarm:
    """Whether a stream's decoding is behind: raised by a result that comes `behind_s` or more
    after the audio it covers arrived, cleared by one within half of that (so that it does not
    flicker around one value)."""

    def __init__(self, behind_s: float):
        self.behind_s = behind_s
        self.behind = False

    def observe(self, lag: float) -> bool:
        """Take one result's lag; True if that changed `behind`."""
        was = self.behind
        if lag >= self.behind_s:
            self.behind = True
        elif lag <= self.behind_s / 2:
            self.behind = False
        return self.behind != was
