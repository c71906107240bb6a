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
idle server's 278, creeping 2-4 MB a round after the second (main before: 398-606 and climbing).

That creep was malloc's per-thread arenas, not Python objects (tracemalloc read 35.9 MB after
every round): each thread that allocates (the decode slots, FFmpeg's decoder threads, ONNX
Runtime's) may take an arena of its own, up to 8 per core, and each keeps its own fragments.
`serve` caps them at MALLOC_ARENAS before the model loads: over 8 rounds RSS read 225-243 MB
against 215 idle, the other anonymous memory 77-79 MB throughout (uncapped, the same day:
343-366 against 316, climbing), and concurrent decodes cost the same (scripts/bench_slots.py,
two at once: 0.60 s either way)."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web

from stream_server.engine.admission import Admission
from stream_server.transports.appkeys import ADMISSION

MALLOC_ARENAS = 2
"""glibc malloc arenas the process may have (M_ARENA_MAX); the MALLOC_ARENA_MAX environment
variable, where set, is left to rule."""
M_ARENA_MAX = -8
"""mallopt's parameter number for the arena cap (glibc's malloc.h)."""
COLLECT_EVERY_S = 5.0
"""Seconds between full collections: an ended stream's memory waits at most this long."""
log = logging.getLogger(__name__)


def collect() -> int:
    """Objects freed."""
    started = time.thread_time()
    freed = gc.collect()
    log.debug("full collection: %d objects freed, %.1f ms of CPU", freed, (time.thread_time() - started) * 1000)
    return freed


def _libc_function(name: str) -> Callable[..., int] | None:
    """A glibc malloc function, or None on a C library without it (musl, macOS)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except AttributeError:
        return None


def cap_malloc_arenas(env: Mapping[str, str]) -> bool:
    """Cap malloc's arenas at MALLOC_ARENAS, before the threads that would take more start;
    whether it was done (not where MALLOC_ARENA_MAX is set, nor without glibc)."""
    mallopt = _libc_function("mallopt")
    if "MALLOC_ARENA_MAX" in env or mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, MALLOC_ARENAS))


class Trims:
    """malloc_trim(0) after a collection when no live stream runs, if streams ran since the
    last trim or the collection freed anything (a dropped connection's garbage forms seconds
    after its stream ended): what the streams freed goes back to the system between bursts
    (glibc only)."""

    def __init__(self, admission: Admission) -> None:
        self._admission, self._trim = admission, _libc_function("malloc_trim")
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
