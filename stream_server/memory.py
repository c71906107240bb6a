"""Memory that traffic frees handed back: ended live streams' cycles collected within seconds,
and malloc's free pages returned to the system once no stream runs.

A stream leaves reference cycles behind when it ends: its transcriber and decode worker refer
to each other, and a dropped connection's exception keeps the frames that read its body, with
them the stream's FFmpeg decoder (and its resampler's threads) and its audio. Only a full
collection frees those, and CPython runs one rarely: after ten collections of the middle
generation, and only once the objects that reached the oldest generation since the last one
number a quarter of those already there. In the disconnect storm a full collection came once
in several rounds of 100 streams, and each round allocated on top of the last one's garbage
(BENCHMARKS.md, "Memory after the disconnect storm: ended streams' cycles collected").

So while the server runs, the objects it started with are frozen (gc.freeze: no longer
scanned), and a full collection runs every COLLECT_EVERY_S: it scans only what the traffic
holds at that moment. Not on a stream's end: what a dropped connection leaves is garbage only
once aiohttp has torn it down, seconds later.

glibc's mmap threshold is left to rise as it does: fixed at 256 KiB it kept the storm's RSS
150-200 MB lower, but every large buffer of a decode was then mapped and faulted in afresh, and a
live window's call took 1.15 s instead of 0.83 s (BENCHMARKS.md, thirteenth session).

What is freed into malloc's arenas stays resident until malloc_trim hands the free pages back:
that is done after a collection when no live stream runs (and some ran since the last trim, or
the collection freed something): over 8 rounds of the storm RSS read 321-346 MB against the
idle server's 278, creeping 2-4 MB a round after the second (main before: 398-606 and climbing)."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from stream_server.engine.admission import Admission
from stream_server.transports.appkeys import ADMISSION

COLLECT_EVERY_S = 5.0
"""Seconds between full collections: an ended stream's memory waits at most this long."""
log = logging.getLogger(__name__)


def collect() -> int:
    """Objects freed."""
    started = time.thread_time()
    freed = gc.collect()
    log.debug("full collection: %d objects freed, %.1f ms of CPU", freed, (time.thread_time() - started) * 1000)
    return freed


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except AttributeError:
        return None


class Trims:
    """malloc_trim(0) after a collection when no live stream runs, if streams ran since the
    last trim or the collection freed anything (a dropped connection's garbage forms seconds
    after its stream ended): what the streams freed goes back to the system between bursts
    (glibc only)."""

    def __init__(self, admission: Admission) -> None:
        self._admission, self._trim = admission, _malloc_trim()
        self._admitted = admission.admitted
        self.count = 0

    async def after_collection(self, freed: int) -> None:
        if self._trim is None or self._admission.active or (self._admission.admitted == self._admitted and not freed):
            return
        self._admitted = self._admission.admitted
        await asyncio.get_running_loop().run_in_executor(None, self._trim, 0)  # it walks every arena
        self.count += 1


TRIMS = web.AppKey("trims", Trims)


async def collect_periodically(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context, after the one that sets ADMISSION: start-up objects frozen while the
    app runs, a full collection every COLLECT_EVERY_S, and a trim after it once streams ended."""
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    app[TRIMS] = trims = Trims(app[ADMISSION])

    async def collecting() -> None:
        while True:
            await asyncio.sleep(COLLECT_EVERY_S)
            await trims.after_collection(collect())

    task = asyncio.ensure_future(collecting())
    yield
    task.cancel()
    gc.unfreeze()
