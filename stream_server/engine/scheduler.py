"""The decode scheduler: every model call waits here for one of a few worker slots.

Live decodes go first, the one whose undecoded audio has waited longest first (deadline
order); file transcriptions take the capacity the live streams leave. A stream never has two
decodes queued: its engine awaits one before asking again, so a late stream decodes a longer,
newer window instead of falling further behind.

With packing on, a live window that a slot takes shares its model call with the other queued
windows that fit beside it (engine/packing.py): under load, several streams cost one call.
Nothing waits for company: a window that finds a free slot runs alone. Utterance finals keep
their prompt and run alone until the server is behind (the window a slot takes has waited
`PackOptions.finals_after_s`): then every queued window shares calls, finals included, so that
an overloaded server serves every stream each round, a little less accurately, instead of
letting every stream's lag grow.

File work never takes the last slot (with two or more): a file's decode is one model call that
may run for minutes, and two of them on two slots would leave a live stream no decode at all.
With packing on, live partials do not take it either (`PackOptions.finals_slot`): an
utterance's final then starts at its pause instead of waiting for another stream's partial to
end, and the partials that wait meanwhile share the next call.
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

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Transcription
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.engine.packing import PackOptions, Transcribe, Window, companions, decode_packed
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
    window: Window | None = field(default=None, compare=False)
    """Set on a live window that may share its call; `fn` is then its model's transcribe."""
    final: bool = field(default=False, compare=False)
    """A live utterance's final: alone with its prompt unless the server is behind."""
    queued_at: float = field(default=0.0, compare=False)


class DecodeScheduler:
    def __init__(self, executor: Executor, slots: int, packing: PackOptions | None = None):
        self._executor = executor
        self.slots = slots
        self.packing = packing
        """How live windows share calls; None: every window runs alone."""
        self._queue: list[_Job] = []
        self._busy = 0
        self._busy_batch = 0
        self._busy_partial = 0
        """Slots running a live partial's call (its lead window is not a final)."""
        self.batch_slots = max(1, slots - 1)
        """The slots file work may hold at once: one stays for live streams."""
        self.partial_slots = max(1, slots - 1) if packing is not None and packing.finals_slot else slots
        """The slots live partials may hold at once: with `PackOptions.finals_slot`, one stays
        for utterance finals."""
        self._order = itertools.count()
        self.decode_seconds = 0.0
        """Wall seconds spent in model calls, summed over slots."""
        self.decodes = 0
        self.live_decode_seconds = 0.0
        """The part of `decode_seconds` spent on LIVE work."""
        self.final_decode_seconds = 0.0
        """The part of that spent on utterance finals (a packed call's time shared evenly by its
        windows): what admission control measures. Partials are elastic: one stream alone
        decodes them as often as a slot is free, under load they share calls and come less often,
        so their cost says nothing of how many streams fit; a final each utterance needs."""
        self.realtime_factor = MovingAverage()
        """Recent decode seconds per second of audio decoded (calls that say how much audio they
        decode), slot time only, not the wait: what routing's `speed` preference compares."""
        self.packed_decodes = 0
        """Model calls that decoded several live windows at once."""
        self.packed_windows = 0
        """Live windows decoded in those calls."""

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
        when = time.monotonic() if deadline is None else deadline
        return await self._submit(_Job(priority, when, next(self._order), fn, args, self._future(), audio_seconds))

    async def run_window(
        self, transcribe: Transcribe, audio: np.ndarray, options: TranscribeOptions, *, deadline: float, final: bool = False
    ) -> Transcription:
        """A live window's decode, which may share its call with other queued windows of the
        same model and options (when packing is on; a `final` only when the server is behind)."""
        window = Window(audio, options) if self.packing is not None else None
        job = _Job(LIVE, deadline, next(self._order), transcribe, (audio, options), self._future(), len(audio) / SAMPLE_RATE, window, final)
        return await self._submit(job)

    def _future(self) -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, job: _Job) -> Any:
        job.queued_at = time.monotonic()
        heapq.heappush(self._queue, job)
        self._dispatch()
        return await job.future

    def _dispatch(self) -> None:
        while self._busy < self.slots:
            job = self._next_job()
            if job is None:
                return
            self._busy += 1
            self._busy_batch += job.priority == BATCH
            self._busy_partial += _is_partial(job)
            asyncio.ensure_future(self._execute([job, *self._companions(job)]))

    def _next_job(self) -> _Job | None:
        """Take the most urgent queued job that may start now, dropping those whose stream went
        away."""
        self._queue = [job for job in self._queue if not job.future.cancelled()]
        job = min((job for job in self._queue if self._may_start(job)), default=None)
        if job is not None:
            self._queue.remove(job)
        heapq.heapify(self._queue)
        return job

    def _may_start(self, job: _Job) -> bool:
        """File work never takes the last slot, and live partials not the one left to finals."""
        if job.priority == BATCH:
            return self._busy_batch < self.batch_slots
        return not _is_partial(job) or self._busy_partial < self.partial_slots

    def _companions(self, lead: _Job) -> list[_Job]:
        """Take the queued windows that share the lead window's call off the queue."""
        if lead.window is None or lead.window.key is None or self.packing is None:
            return []
        after = self.packing.finals_after_s
        behind = after is not None and time.monotonic() - lead.queued_at >= after
        if lead.final and not behind:
            return []
        candidates = [
            job
            for job in sorted(self._queue)
            if job.window is not None
            and job.fn == lead.fn
            and job.window.key == lead.window.key
            and (behind or not job.final)
            and not job.future.cancelled()
        ]
        chosen = [candidates[i] for i in companions(lead.window.seconds, [j.window.seconds for j in candidates], self.packing)]
        if chosen:
            taken = {id(job) for job in chosen}
            self._queue = [job for job in self._queue if id(job) not in taken]
            heapq.heapify(self._queue)
        return chosen

    async def _execute(self, jobs: list[_Job]) -> None:
        """One model call for `jobs`: the lead alone, or the lead's window packed with its
        companions'. Its slot time is the whole call's, whatever it held."""
        lead = jobs[0]
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            if len(jobs) == 1:
                results = [await loop.run_in_executor(self._executor, lead.fn, *lead.args)]
            else:
                windows = [job.window for job in jobs]
                results = await loop.run_in_executor(self._executor, decode_packed, lead.fn, windows, self.packing)
        except Exception as exc:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
        else:
            audio_seconds = sum(job.audio_seconds for job in jobs)
            if audio_seconds > 0:
                self.realtime_factor.observe((time.monotonic() - started) / audio_seconds)
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(result)
        finally:
            elapsed = time.monotonic() - started
            self.decode_seconds += elapsed
            if lead.priority == LIVE:
                self.live_decode_seconds += elapsed
                self.final_decode_seconds += elapsed * sum(job.final for job in jobs) / len(jobs)
            self.decodes += 1
            if len(jobs) > 1:
                self.packed_decodes += 1
                self.packed_windows += len(jobs)
            self._busy -= 1
            self._busy_batch -= lead.priority == BATCH
            self._busy_partial -= _is_partial(lead)
            self._dispatch()


def _is_partial(job: _Job) -> bool:
    return job.window is not None and not job.final
