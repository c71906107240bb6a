"""The decode scheduler: every model call waits here for one of a few worker slots.

Live decodes go first, the one whose undecoded audio has waited longest first (deadline
order); file transcriptions take the capacity the live streams leave. A stream never has two
decodes queued: its engine awaits one before asking again, so a late stream decodes a longer,
newer window instead of falling further behind.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stream_server.engine.telemetry import MovingAverage

T = TypeVar("T")

LIVE = 0
BATCH = 1


@dataclass(order=True)
class _Job:
    priority: int
    deadline: float
    order: int
    fn: Callable[..., Any] = field(compare=False)
    args: tuple = field(compare=False)
    future: asyncio.Future = field(compare=False)
    audio_seconds: float = field(default=0.0, compare=False)


class DecodeScheduler:
    def __init__(self, executor: Executor, slots: int):
        self._executor = executor
        self.slots = slots
        self._queue: list[_Job] = []
        self._busy = 0
        self._order = itertools.count()
        self.decode_seconds = 0.0
        """Wall seconds spent in model calls, summed over slots."""
        self.decodes = 0
        self.live_decode_seconds = 0.0
        """The part of `decode_seconds` spent on LIVE work: what admission control measures."""
        self.realtime_factor = MovingAverage()
        """Recent decode seconds per second of audio decoded (calls that say how much audio they
        decode), slot time only, not the wait: what routing's `speed` preference compares."""

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> int:
        return self._busy

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        priority: int = LIVE,
        deadline: float | None = None,
        audio_seconds: float = 0.0,
    ) -> T:
        """Run `fn(*args)` on a worker thread when a slot is free and nothing is more urgent.
        `audio_seconds`, the audio the call decodes, feeds `realtime_factor`."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        job = _Job(
            priority, time.monotonic() if deadline is None else deadline, next(self._order), fn, args, future, audio_seconds
        )
        heapq.heappush(self._queue, job)
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._busy < self.slots and self._queue:
            job = heapq.heappop(self._queue)
            if job.future.cancelled():  # its stream went away while it waited
                continue
            self._busy += 1
            asyncio.ensure_future(self._execute(job))

    async def _execute(self, job: _Job) -> None:
        started = time.monotonic()
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, job.fn, *job.args)
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
        else:
            if job.audio_seconds > 0:
                self.realtime_factor.observe((time.monotonic() - started) / job.audio_seconds)
            if not job.future.done():
                job.future.set_result(result)
        finally:
            elapsed = time.monotonic() - started
            self.decode_seconds += elapsed
            if job.priority == LIVE:
                self.live_decode_seconds += elapsed
            self.decodes += 1
            self._busy -= 1
            self._dispatch()
